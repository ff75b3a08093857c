package faultsuite

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/handlers/webhook"
)

// receiver is a webhook endpoint that records every delivery it accepts,
// as a receiver deduplicating by webhook-id would see them.
type receiver struct {
	srv    *httptest.Server
	secret string
	key    []byte

	mu         sync.Mutex
	deliveries map[int][]delivery // by the n in the event's data
	total      int
	bad        []string // deliveries that failed verification
}

type delivery struct {
	id   string // webhook-id
	body string
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	key := []byte("faultsuite-receiver-secret-32byt")
	r := &receiver{
		secret:     webhook.SecretPrefix + base64.StdEncoding.EncodeToString(key),
		key:        key,
		deliveries: map[int][]delivery{},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // the sender went away mid-request: nothing was accepted
	}
	id := req.Header.Get(webhook.HeaderID)
	ts := req.Header.Get(webhook.HeaderTimestamp)
	var env struct {
		Data struct {
			N *int `json:"n"`
		} `json:"data"`
	}
	problem := ""
	switch {
	case !r.verify(id, ts, body, req.Header.Get(webhook.HeaderSignature)):
		problem = "bad signature"
	case json.Unmarshal(body, &env) != nil || env.Data.N == nil:
		problem = "body without data.n"
	}
	r.mu.Lock()
	if problem != "" {
		r.bad = append(r.bad, fmt.Sprintf("%s: id %q body %s", problem, id, body))
	} else {
		r.deliveries[*env.Data.N] = append(r.deliveries[*env.Data.N], delivery{id: id, body: string(body)})
		r.total++
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// verify checks the Standard Webhooks signature.
func (r *receiver) verify(id, ts string, body []byte, sigs string) bool {
	mac := hmac.New(sha256.New, r.key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}
