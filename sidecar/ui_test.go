package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// recordHandler registers a handler that does nothing, so that the relay
// has one.
func recordHandler(h *relay.Handlers) error {
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[Record]) error { return nil })
	return nil
}

func TestUIConfigErrorsExitTwo(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none", "UI_TOKEN": "t0ken"}
	for _, tc := range []struct{ config, field string }{
		{`{"ui": {"enabled": true}}`, "ui"},
		{`{"ui": {"enabled": true, "username": "ops"}}`, "ui.password_env"},
		{`{"ui": {"enabled": true, "password_env": "UI_PASSWORD"}}`, "ui.username"},
		{`{"ui": {"enabled": true, "username": "ops", "password_env": "UI_PASSWORD"}}`, "ui.password_env"}, // not set
		{`{"ui": {"enabled": true, "token_env": "NOT_SET"}}`, "ui.token_env"},
		{`{"listen": "off", "ui": {"enabled": true, "token_env": "UI_TOKEN"}}`, "ui.enabled"},
		{`{"ui": {"enabled": true, "token_env": "UI_TOKEN", "window": "soon"}}`, "ui.window"},
		{`{"ui": {"enabled": true, "token_env": "UI_TOKEN", "window": "10s"}}`, "ui"},
		{`{"ui": {"enabled": true, "token_env": "UI_TOKEN", "colour": "blue"}}`, "colour"},
	} {
		var errOut bytes.Buffer
		code := sidecar.Main(context.Background(), []string{"relay", "--config", writeConfig(t, tc.config)}, sidecar.Options{
			Stdout: io.Discard, Stderr: &errOut,
			Getenv:   func(k string) string { return env[k] },
			Handlers: recordHandler,
		})
		if code != sidecar.ExitUsage || !strings.Contains(errOut.String(), "invalid config "+tc.field+":") {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming %s", tc.config, code, errOut.String(), tc.field)
		}
	}
}

// TestRelayServesTheDashboard: with "ui" enabled, the relay's HTTP server
// serves the dashboard under /ui/ behind Basic auth (or the bearer token),
// and refuses actions without the page's CSRF token.
func TestRelayServesTheDashboard(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	dead, err := outbox.Enqueue(t.Context(), db.Pool, outbox.Raw{TopicName: "test.record", Payload: []byte(`{"note":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(t.Context(), `UPDATE outbox_entries SET state = 'dead', last_error = 'boom', finished_at = now() WHERE id = $1`, dead.ID); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := writeConfig(t, `{"log": {"format": "text", "level": "warn"},
		"ui": {"enabled": true, "username": "ops", "password_env": "UI_PASSWORD", "token_env": "UI_TOKEN"}}`)
	env := map[string]string{"DATABASE_URL": db.URL, "UI_PASSWORD": "s3cret", "UI_TOKEN": "t0ken"}
	ctx, cancel := context.WithCancel(context.Background())
	var errOut bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- sidecar.Main(ctx, []string{"relay", "--config", cfg, "--listen", addr}, sidecar.Options{
			Stdout: io.Discard, Stderr: &errOut,
			Getenv:   func(k string) string { return env[k] },
			Handlers: recordHandler,
		})
	}()
	defer func() {
		cancel()
		if code := <-exited; code != sidecar.ExitOK {
			t.Errorf("relay exit %d; stderr:\n%s", code, errOut.String())
		}
	}()

	do := func(method, path string, body url.Values, auth func(*http.Request)) (int, string) {
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	basic := func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") }
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer t0ken") }
	poll(t, "the dashboard showing the dead entry", func() bool {
		code, body := do(http.MethodGet, "/ui/", nil, basic)
		return code == http.StatusOK && strings.Contains(body, fmt.Sprintf(`id="dead-%d"`, dead.ID))
	})
	if code, _ := do(http.MethodGet, "/ui/", nil, bearer); code != http.StatusOK {
		t.Errorf("GET /ui/ with the bearer token: %d", code)
	}
	if code, _ := do(http.MethodGet, "/ui/", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("GET /ui/ without credentials: %d, want 401", code)
	}
	if code, _ := do(http.MethodPost, "/ui/retry", url.Values{"id": {fmt.Sprint(dead.ID)}}, nil); code != http.StatusUnauthorized {
		t.Errorf("POST /ui/retry without credentials: %d, want 401", code)
	}
	if code, _ := do(http.MethodPost, "/ui/retry", url.Values{"id": {fmt.Sprint(dead.ID)}}, basic); code != http.StatusForbidden {
		t.Errorf("POST /ui/retry without the page's token: %d, want 403", code)
	}
	if code, _ := do(http.MethodGet, "/healthz", nil, nil); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	var state string
	if err := db.Pool.QueryRow(t.Context(), `SELECT state FROM outbox_entries WHERE id = $1`, dead.ID).Scan(&state); err != nil || state != "dead" {
		t.Errorf("entry state %q (%v) after refused actions, want dead", state, err)
	}
}
