package webhook_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// hangGuard bounds every wait in these tests: a guard against hangs, never
// a timing assertion.
const hangGuard = time.Minute

// newSecret returns a fresh "whsec_" secret of 32 random bytes.
func newSecret(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}

// received is one request as the receiver saw it.
type received struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a real HTTP server on loopback that records every request
// and answers with respond (204 when nil). n is the request's index, from 0.
type receiver struct {
	srv     *httptest.Server
	stop    chan struct{} // closed at cleanup: releases hanging handlers
	respond func(w http.ResponseWriter, r *http.Request, n int)

	mu   sync.Mutex
	reqs []received
}

func newReceiver(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	t.Helper()
	rc := &receiver{stop: make(chan struct{}), respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	t.Cleanup(func() { close(rc.stop) }) // runs before Close
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.reqs = append(rc.reqs, received{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	rc.mu.Unlock()
	if rc.respond == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.respond(w, r, n)
}

// hang blocks until the client gives up or the test ends.
func (rc *receiver) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-rc.stop:
	}
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// newHandler builds a handler and closes its idle connections at cleanup.
func newHandler(t testing.TB, cfg webhook.Config) *webhook.Handler {
	t.Helper()
	h, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	t.Cleanup(h.CloseIdleConnections)
	return h
}

// oneEndpoint is a config with the endpoint "recv" at url, loopback allowed.
func oneEndpoint(url string, secrets ...string) webhook.Config {
	return webhook.Config{
		Endpoints:            map[string]webhook.Endpoint{"recv": {URL: url, Secrets: secrets}},
		AllowPrivateNetworks: true, // the receiver runs on 127.0.0.1
	}
}

// entry is what the relay would hand the handler.
func entry(key string, ev webhook.Event) *relay.Entry[webhook.Event] {
	return &relay.Entry[webhook.Event]{
		ID: 1, Topic: webhook.Topic, Key: key, Attempt: 1, MaxAttempts: 25,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC),
		Payload:   ev,
	}
}

func isPermanent(err error) bool {
	var p *relay.PermanentError
	return errors.As(err, &p)
}

// verify checks a request's signature independently of the package, from
// the Standard Webhooks spec: the key is the base64 after "whsec_"; the
// signed content is "<webhook-id>.<webhook-timestamp>.<body>"; the header
// holds space-separated "v1,<base64 HMAC-SHA256>" entries, any of which
// may match; the timestamp must be within tolerance of now.
func verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %v", ts, err)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %s is %s away from now", ts, d)
	}
	if !strings.HasPrefix(secret, "whsec_") {
		return errors.New("secret without whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, s := range strings.Split(sigs, " ") {
		version, enc, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(enc)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// runRelay makes a database and runs a relay (handlertest.StartRelay) with
// the webhook handler built from cfg by Register; opts edit the relay's
// configuration.
func runRelay(t *testing.T, cfg webhook.Config, opts ...func(*relay.Config)) (*outboxtest.DB, *handlertest.Recorder) {
	t.Helper()
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	if err := webhook.Register(h, cfg); err != nil {
		t.Fatalf("webhook.Register: %v", err)
	}
	return db, handlertest.StartRelay(t, db.Pool, h, opts...)
}
