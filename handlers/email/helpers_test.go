package email_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// hangGuard bounds every wait (a guard against hangs, not a timing check).
const hangGuard = time.Minute

// testTemplates are the templates of testConfig.
var testTemplates = map[string]email.Template{
	"welcome": {
		Subject: "Welcome, {{.name}}!\n",
		Text:    "Hello {{.name}},\nyour code is {{.code}}.\n",
		HTML:    "<p>Hello <b>{{.name}}</b>, your code is {{.code}}.</p>\n",
	},
	"plain": {Subject: "Plain", Text: "Just text, {{.name}}.\n"},
	"fancy": {Subject: "Fancy", HTML: "<p>Just HTML, {{.name}}.</p>\n"},
}

// testConfig points a handler at s, in clear (the server is on loopback).
func testConfig(s *mailServer) email.Config {
	return email.Config{
		Host:      s.Host,
		Port:      s.Port,
		TLS:       email.TLSNone,
		From:      "Acme <noreply@acme.test>",
		HeloName:  "relay.acme.test",
		Templates: testTemplates,
	}
}

func newHandler(t *testing.T, cfg email.Config) *email.Handler {
	t.Helper()
	h, err := email.New(cfg)
	if err != nil {
		t.Fatalf("email.New: %v", err)
	}
	return h
}

func welcome(to ...string) email.Message {
	return email.Message{To: to, Template: "welcome", Data: map[string]any{"name": "Ada", "code": "X-1"}}
}

// send runs the handler on one entry, as the relay would.
func send(ctx context.Context, h *email.Handler, key string, msg email.Message) error {
	return h.Handle(ctx, &relay.Entry[email.Message]{ID: 1, Topic: email.Topic, Key: key, Attempt: 1, MaxAttempts: 25, Payload: msg})
}

func isPermanent(err error) bool {
	var p *relay.PermanentError
	return errors.As(err, &p)
}

// events records a relay's events for tests to wait on.
type events struct {
	mu      sync.Mutex
	all     []relay.Event
	changed chan struct{}
}

func (r *events) Observe(e relay.Event) {
	r.mu.Lock()
	r.all = append(r.all, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// wait returns the first event of kind for entry id, waiting for it.
func (r *events) wait(t *testing.T, id int64, kind relay.EventKind) relay.Event {
	t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, e := range r.all {
			if e.EntryID == id && e.Kind == kind {
				r.mu.Unlock()
				return e
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("entry %d: no %s event within %s", id, kind, hangGuard)
			return relay.Event{}
		}
	}
}

// runRelay makes a database and runs a relay with the email handler built
// from cfg by Register, retrying at once.
func runRelay(t *testing.T, cfg email.Config) (*outboxtest.DB, *events) {
	t.Helper()
	db := outboxtest.New(t)
	ev := &events{changed: make(chan struct{})}
	hs := relay.NewHandlers()
	if err := email.Register(hs, cfg); err != nil {
		t.Fatalf("email.Register: %v", err)
	}
	r, err := relay.New(db.Pool, relay.Config{
		Handlers:          hs,
		PollInterval:      20 * time.Millisecond,
		RetentionInterval: -1,
		ShutdownTimeout:   time.Second,
		RetryPolicy:       relay.RetryPolicyFunc(func(int, error) time.Duration { return 10 * time.Millisecond }),
		Observer:          ev,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return db, ev
}
