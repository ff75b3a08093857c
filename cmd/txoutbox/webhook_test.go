package main_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Rows inserted with plain SQL, as a Rails or Django app would, are
// delivered by the binary to a webhook receiver, signed, each once, with
// the endpoint's headers: one from the file, one from the environment.
func TestBinaryDeliversPlainSQLRowsAsSignedWebhooks(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)

	var mu sync.Mutex
	seen := map[string]int{}
	var bad []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		if r.Header.Get("X-Tenant") != "shop" || r.Header.Get("X-Api-Key") != "k3y-from-env" {
			mu.Lock()
			bad = append(bad, id+": headers "+fmt.Sprint(r.Header))
			mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(" "+r.Header.Get("webhook-signature")+" ", " "+want+" ") {
			bad = append(bad, id)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		seen[id]++
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	config := writeFile(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"},
		"handlers": [{"kind": "webhook", "config": {
			"allow_private_networks": true,
			"endpoints": {"crm": {"url": "`+receiver.URL+`/hooks", "secrets_env": ["CRM_SECRET"],
				"headers": {"X-Tenant": "shop"}, "headers_env": {"X-Api-Key": "CRM_API_KEY"}}}}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "relay", "--config", config, "--listen", "off")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db.URL, "CRM_SECRET="+secret, "CRM_API_KEY=k3y-from-env")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	const n = 50
	// What a Rails or Django app would run inside its own transaction.
	if _, err := db.Pool.Exec(context.Background(), `
		INSERT INTO outbox_entries (topic, key, payload)
		SELECT 'webhook.deliver', 'user-created-' || g,
		       jsonb_build_object('endpoint', 'crm', 'type', 'user.created', 'data', jsonb_build_object('id', g))
		FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var done int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_entries WHERE state = 'done'`).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered; relay output:\n%s", done, n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("bad signatures for %v", bad)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct webhook ids, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 || !strings.HasPrefix(id, "user-created-") {
			t.Fatalf("webhook %s received %d times", id, c)
		}
	}
}

// A secret named in the file but missing from the environment is a
// configuration error naming the field.
func TestBinaryMissingSecretExitsTwo(t *testing.T) {
	t.Parallel()
	config := writeFile(t, `{"handlers": [{"kind": "webhook", "config": {
		"endpoints": {"crm": {"url": "https://crm.example.com/hooks", "secrets_env": ["NO_SUCH_SECRET_VAR"]}}}}]}`)
	code, out := run(t, []string{"DATABASE_URL=postgres://127.0.0.1:1/none"}, "relay", "--config", config, "--listen", "off")
	if code != 2 || !strings.Contains(out, "endpoints.crm.secrets_env[0]: environment variable NO_SUCH_SECRET_VAR is not set") {
		t.Fatalf("exit %d: %s", code, out)
	}
	bad := writeFile(t, `{"handlers": [{"kind": "webhook", "config": {
		"endpoints": {"crm": {"url": "ftp://crm.example.com", "secrets_env": ["HOME"]}}}}]}`)
	if code, out := run(t, []string{"DATABASE_URL=postgres://127.0.0.1:1/none"}, "relay", "--config", bad, "--listen", "off"); code != 2 || !strings.Contains(out, "crm") {
		t.Fatalf("bad URL: exit %d: %s", code, out)
	}
}

// Dead entries retried with the CLI go back to the relay and complete.
func TestBinaryDeadRetryCompletes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	var mu sync.Mutex
	gone := true
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if gone {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	config := writeFile(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"},
		"handlers": [{"kind": "webhook", "config": {"allow_private_networks": true,
			"endpoints": {"crm": {"url": "`+receiver.URL+`", "secrets_env": ["CRM_SECRET"]}}}}]}`)
	env := []string{"DATABASE_URL=" + db.URL, "CRM_SECRET=whsec_" + base64.StdEncoding.EncodeToString(key)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "relay", "--config", config, "--listen", "off")
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	for i := range 3 {
		if code, o := run(t, env, "enqueue", "webhook.deliver", fmt.Sprintf(`{"endpoint": "crm", "type": "t", "data": {"i": %d}}`, i)); code != 0 {
			t.Fatalf("enqueue: %d %s", code, o)
		}
	}
	waitCount := func(state string, n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			var c int
			if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_entries WHERE state = $1`, state).Scan(&c); err != nil {
				t.Fatal(err)
			}
			if c == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d entries %s, want %d; relay output:\n%s", c, state, n, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount("dead", 3)
	if code, o := run(t, env, "dead", "list"); code != 0 || !strings.Contains(o, "410") {
		t.Fatalf("dead list: %d %s", code, o)
	}
	mu.Lock()
	gone = false
	mu.Unlock()
	if code, o := run(t, env, "dead", "retry", "--topic", "webhook.deliver"); code != 0 || !strings.Contains(o, "retrying 3") {
		t.Fatalf("dead retry: %d %s", code, o)
	}
	waitCount("done", 3)
}
