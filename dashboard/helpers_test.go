package dashboard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/txoutbox/txoutbox/dashboard"
	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// invoice is the payload of the entries the tests dead-letter and retry.
type invoice struct {
	Number string `json:"number"`
}

func (invoice) Topic() string { return "invoice.render" }

// receipt is a second topic, handled successfully.
type receipt struct {
	N int `json:"n"`
}

func (receipt) Topic() string { return "receipt.send" }

const (
	testUser     = "ops"
	testPassword = "correct horse battery staple"
)

// fixture is a database with a relay whose invoice handler fails
// permanently while broken is set, and a dashboard served under /ui/.
type fixture struct {
	db     *outboxtest.DB
	rec    *handlertest.Recorder
	broken *atomic.Bool
	srv    *httptest.Server
}

func newFixture(t *testing.T, cfg dashboard.Config) *fixture {
	t.Helper()
	f := &fixture{db: outboxtest.New(t), broken: &atomic.Bool{}}
	f.broken.Store(true)
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[invoice]) error {
		if f.broken.Load() {
			return relay.Permanent(errors.New("render invoice " + e.Payload.Number + ": template \"invoice.html\" not found"))
		}
		e.SetResult(map[string]string{"location": "invoices/" + e.Payload.Number + ".pdf"})
		return nil
	})
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[receipt]) error { return nil })
	f.rec = handlertest.StartRelay(t, f.db.Pool, h)
	if cfg.Auth == nil {
		cfg.Auth = dashboard.BasicAuth(testUser, testPassword)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	dash, err := dashboard.New(f.db.Pool, cfg)
	if err != nil {
		t.Fatalf("dashboard.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui", dash))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// deadInvoice enqueues an invoice and waits until the relay dead-letters it.
func (f *fixture) deadInvoice(t *testing.T, number string) int64 {
	t.Helper()
	res, err := outbox.Enqueue(t.Context(), f.db.Pool, invoice{Number: number})
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	f.rec.Wait(t, res.ID, relay.EventDead)
	return res.ID
}

func testLogger() *slog.Logger {
	if os.Getenv("TXOUTBOX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// client is a browser-like client: a cookie jar, credentials, and no
// redirect following, so tests see the 303s.
type client struct {
	t      *testing.T
	base   string
	http   *http.Client
	user   string
	pass   string
	header http.Header
}

func (f *fixture) client(t *testing.T) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{
		t: t, base: f.srv.URL + "/ui/", user: testUser, pass: testPassword, header: http.Header{},
		http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, string(b)
}

func (c *client) get(path string) (*http.Response, string) { return c.do(http.MethodGet, path, nil) }

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	return c.do(http.MethodPost, path, form)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token loads the overview and returns the CSRF token of its forms.
func (c *client) token() string {
	c.t.Helper()
	resp, body := c.get("")
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET /ui/: %s\n%s", resp.Status, body)
	}
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token in the overview:\n%s", body)
	}
	return m[1]
}

func state(t *testing.T, f *fixture, id int64) outbox.State {
	t.Helper()
	e, err := outbox.Get(t.Context(), f.db.Pool, id)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return e.State
}
