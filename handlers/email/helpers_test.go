package email_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/handlers/handlertest"
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

// runRelay makes a database and runs a relay (handlertest.StartRelay) with
// the email handler built from cfg by Register.
func runRelay(t *testing.T, cfg email.Config) (*outboxtest.DB, *handlertest.Recorder) {
	t.Helper()
	db := outboxtest.New(t)
	hs := relay.NewHandlers()
	if err := email.Register(hs, cfg); err != nil {
		t.Fatalf("email.Register: %v", err)
	}
	return db, handlertest.StartRelay(t, db.Pool, hs)
}
