package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// "outcome_before_next" is a per-handler boolean; anything else is an error
// naming the handler's field.
func TestHandlerOutcomeBeforeNextSetting(t *testing.T) {
	t.Parallel()
	cfg, err := sidecar.LoadConfig(writeConfig(t, `{"handlers": [
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
		if h.OutcomeBeforeNext != want.set || len(h.HandlerOptions()) != want.opts {
			t.Errorf("handlers[%d]: outcome_before_next %v with %d options; want %v with %d",
				i, h.OutcomeBeforeNext, len(h.HandlerOptions()), want.set, want.opts)
		}
	}

	for _, tc := range []struct{ handlers, field string }{
		{`[{"kind": "webhook", "outcome_before_next": "yes"}]`, "handlers[0].outcome_before_next"},
		{`[{"kind": "pdf"}, {"kind": "webhook", "outcome_before_next": 1}]`, "handlers[1].outcome_before_next"},
		{`[{"kind": "webhook", "outcome_before_next": {}}]`, "handlers[0].outcome_before_next"},
		{`[{"kind": "webhook", "outcome_before_nxt": true}]`, "outcome_before_nxt"},
	} {
		_, err := sidecar.LoadConfig(writeConfig(t, `{"handlers": `+tc.handlers+`}`))
		var ce *sidecar.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: error %v; want a ConfigError for %s", tc.handlers, err, tc.field)
		}
	}
}

// The options of a handler with "outcome_before_next" make each worker wait
// for its outcome's commit: with one worker, every handler finds the entry
// before it done.
func TestHandlerOptionsWaitForOutcome(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	cfg, err := sidecar.LoadConfig(writeConfig(t, `{"handlers": [{"kind": "record", "outcome_before_next": true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var mu sync.Mutex
	var prev int64
	var notDone []string
	done := make(chan struct{}, n)
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[Record]) error {
		mu.Lock()
		before := prev
		prev = e.ID
		mu.Unlock()
		if before == 0 {
			return nil
		}
		var state string
		if err := db.Pool.QueryRow(ctx, `SELECT state FROM outbox_entries WHERE id = $1`, before).Scan(&state); err != nil {
			return err
		}
		if state != "done" {
			mu.Lock()
			notDone = append(notDone, fmt.Sprintf("%d:%s", before, state))
			mu.Unlock()
		}
		return nil
	}, cfg.Handlers[0].HandlerOptions()...)

	for i := range n {
		if _, err := outbox.Enqueue(context.Background(), db.Pool, Record{Note: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := relay.New(db.Pool, relay.Config{
		Handlers:          h,
		Queues:            map[string]relay.QueueConfig{"default": {MaxWorkers: 1}},
		PollInterval:      50 * time.Millisecond,
		RetentionInterval: -1,
		Logger:            slog.New(slog.DiscardHandler),
		Observer: relay.ObserverFunc(func(e relay.Event) {
			if e.Kind == relay.EventDone {
				done <- struct{}{}
			}
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	for range n {
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("entries not done within two minutes")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notDone) > 0 {
		t.Fatalf("%d handlers started before the previous entry's outcome was committed: %s", len(notDone), strings.Join(notDone, " "))
	}
}
