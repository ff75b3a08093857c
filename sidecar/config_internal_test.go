package sidecar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/relay"
)

// writeTestConfig writes body as a configuration file and returns its path.
func writeTestConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// requireConfigError checks that err is a *ConfigError for field whose
// reason says want.
func requireConfigError(t *testing.T, what string, err error, field, want string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) || ce.Field != field || !strings.Contains(ce.Reason, want) {
		t.Errorf("%s: error %v; want a ConfigError for %s saying %q", what, err, field, want)
	}
}

// The HTTP endpoints listen on loopback unless the file says otherwise:
// /metrics and /readyz answer without credentials.
func TestDefaultListenIsLoopback(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", writeTestConfig(t, `{}`), writeTestConfig(t, `{"listen": ""}`)} {
		cfg, err := loadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Listen != "127.0.0.1:9090" {
			t.Errorf("config %q: listen %q, want 127.0.0.1:9090", path, cfg.Listen)
		}
	}
	cfg, err := loadConfig(writeTestConfig(t, `{"listen": "0.0.0.0:9090"}`))
	if err != nil || cfg.Listen != "0.0.0.0:9090" {
		t.Errorf("listen set in the file: %+v, %v", cfg, err)
	}
}

// "outcome_before_next" is a per-handler boolean; anything else is an error
// naming the handler's field.
func TestHandlerOutcomeBeforeNextSetting(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(writeTestConfig(t, `{"handlers": [
		{"kind": "webhook", "timeout": "2s", "outcome_before_next": true},
		{"kind": "pdf", "outcome_before_next": false},
		{"kind": "email"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		set  bool
		opts int
	}{{true, 2}, {false, 0}, {false, 0}} {
		h := cfg.Handlers[i]
		if h.OutcomeBeforeNext != want.set || len(h.handlerOptions()) != want.opts {
			t.Errorf("handlers[%d]: outcome_before_next %v with %d options; want %v with %d",
				i, h.OutcomeBeforeNext, len(h.handlerOptions()), want.set, want.opts)
		}
	}

	for _, tc := range []struct{ handlers, field string }{
		{`[{"kind": "webhook", "outcome_before_next": "yes"}]`, "handlers[0].outcome_before_next"},
		{`[{"kind": "pdf"}, {"kind": "webhook", "outcome_before_next": 1}]`, "handlers[1].outcome_before_next"},
		{`[{"kind": "webhook", "outcome_before_next": {}}]`, "handlers[0].outcome_before_next"},
		{`[{"kind": "webhook", "outcome_before_nxt": true}]`, "outcome_before_nxt"},
	} {
		_, err := loadConfig(writeTestConfig(t, `{"handlers": `+tc.handlers+`}`))
		requireConfigError(t, tc.handlers, err, tc.field, "")
	}
}

// Every bad value of the file is a *ConfigError naming the field as the
// file spells it, with the handler's or schedule's index, never a silent
// default.
func TestLoadConfigNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ config, field, says string }{
		{`{"relay": {"poll_interval": "soon"}}`, "relay.poll_interval", `want a duration string such as "30s", got string "soon"`},
		{`{"relay": {"poll_interval": 5}}`, "relay.poll_interval", "got number 5"},
		{`{"relay": {"lease_duration": null}}`, "relay.lease_duration", "got null"},
		{`{"relay": {"claim_batch_size": "10"}}`, "relay.claim_batch_size", "want a whole number"},
		{`{"relay": {"claim_batch_size": 1.5}}`, "relay.claim_batch_size", "want a whole number"},
		{`{"relay": {"queues": {"bulk": {"max_workers": -3}}}}`, "relay.queues.bulk.max_workers", "negative (-3)"},
		{`{"handlers": [{"kind": "pdf"}, {"kind": "webhook", "timeout": "-1s"}]}`, "handlers[1].timeout", "negative (-1s)"},
		{`{"handlers": [{"kind": "pdf"}, {"kind": "webhook", "timeout": "later"}]}`, "handlers[1].timeout", `got string "later"`},
		{`{"handlers": [{"kind": "pdf"}, {}]}`, "handlers[1].kind", "missing"},
		{`{"schedules": [{"name": "a"}, {"name": "b", "priority": "high"}]}`, "schedules[1].priority", "want a whole number"},
		{`{"ui": {"window": "-"}}`, "ui.window", "want a duration"},
		{`{"ui": {"window": "-1m"}}`, "ui.window", "negative (-1m0s)"},
		{`{"log": {"level": "loud"}}`, "log.level", "loud"},
		{`{"colour": "blue"}`, "colour", "unknown field"},
		{`{"listen": ":9090"} {"again": 1}`, "", "unexpected data"},
		{`{"listen": `, "", "unexpected EOF"},
	} {
		_, err := loadConfig(writeTestConfig(t, tc.config))
		requireConfigError(t, tc.config, err, tc.field, tc.says)
	}
	_, err := loadConfig(filepath.Join(t.TempDir(), "missing.json"))
	requireConfigError(t, "missing file", err, "", "no such file")
}

// A schedule's interval must be positive.
func TestScheduleEveryMustBePositive(t *testing.T) {
	t.Parallel()
	for _, every := range []string{"0s", "-1h"} {
		_, err := scheduleConfig{Name: "d", Every: every, Topic: "t"}.spec("schedules[0]")
		requireConfigError(t, every, err, "schedules[0].every", "must be positive")
	}
	if _, err := (scheduleConfig{Name: "d", Every: "1h"}).spec("schedules[0]"); err != nil {
		t.Errorf("every 1h: %v", err)
	}
}

// noop is a message with a handler that does nothing.
type noop struct{}

func (noop) Topic() string { return "test.noop" }

func noopHandlers() *relay.Handlers {
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[noop]) error { return nil })
	return h
}

// Relay errors name the file's field, not relay.Config's.
func TestRelayErrorNamesTheFileField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rc    relaySettings
		field string
	}{
		{relaySettings{LeaseDuration: Duration(time.Millisecond)}, "relay.lease_duration"},
		{relaySettings{PollInterval: Duration(-time.Second)}, "relay.poll_interval"},
		{relaySettings{ClaimBatchSize: -1}, "relay.claim_batch_size"},
		{relaySettings{RetentionBatchSize: -1}, "relay.retention_batch_size"},
		{relaySettings{ShutdownTimeout: Duration(-time.Second)}, "relay.shutdown_timeout"},
		{relaySettings{DoneRetention: Duration(-time.Hour)}, "relay.done_retention"},
		{relaySettings{MaxPayloadBytes: -1}, "relay.max_payload_bytes"},
		{relaySettings{HeartbeatInterval: Duration(-time.Second)}, "relay.heartbeat_interval"},
		{relaySettings{Queues: map[string]queueConfig{"q": {MaxWorkers: 20000}}}, "relay.queues"},
	} {
		rc := tc.rc.toRelay()
		rc.Handlers = noopHandlers()
		err := rc.Validate()
		if err == nil {
			t.Errorf("%s: relay accepted %+v", tc.field, tc.rc)
			continue
		}
		err = relayError(err)
		requireConfigError(t, tc.field, err, tc.field, "")
	}
}
