package relay_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// attemptTracer records what a relay.Tracer is told.
type attemptTracer struct {
	mu       sync.Mutex
	started  []outbox.Entry
	outcomes map[int64][]string // entry id -> outcome of each attempt
	sawCtx   map[int64]bool     // the handler got the tracer's context
}

type tracerKey struct{}

func (a *attemptTracer) StartAttempt(ctx context.Context, e *outbox.Entry) (context.Context, func(string, error)) {
	a.mu.Lock()
	a.started = append(a.started, *e)
	a.mu.Unlock()
	return context.WithValue(ctx, tracerKey{}, e.ID), func(outcome string, err error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.outcomes == nil {
			a.outcomes = map[int64][]string{}
		}
		a.outcomes[e.ID] = append(a.outcomes[e.ID], outcome)
	}
}

func (a *attemptTracer) handlerSaw(ctx context.Context) {
	id, ok := ctx.Value(tracerKey{}).(int64)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sawCtx == nil {
		a.sawCtx = map[int64]bool{}
	}
	a.sawCtx[id] = true
}

// TestTracerSeesEveryAttemptAndOutcome: the Tracer wraps each handler
// attempt — plain and transactional — with the entry's headers, its
// context reaches the handler, and each attempt ends once with its outcome.
func TestTracerSeesEveryAttemptAndOutcome(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	tr := &attemptTracer{}
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		tr.handlerSaw(ctx)
		switch {
		case e.Payload.N == 1 && e.Attempt == 1:
			return errors.New("transient")
		case e.Payload.N == 2:
			return relay.Permanent(errors.New("bad address"))
		}
		return nil
	})
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[pong]) error {
		tr.handlerSaw(ctx)
		return nil
	})
	cfg := fastConfig(h, ev)
	cfg.Tracer = tr
	startRelay(t, db.Pool, cfg)

	retried := enqueue(t, db.Pool, ping{N: 1}, outbox.WithHeaders(map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}))
	dead := enqueue(t, db.Pool, ping{N: 2})
	tx := enqueue(t, db.Pool, pong{N: 3})
	ev.wait(t, entryKind(retried, relay.EventDone))
	ev.wait(t, entryKind(dead, relay.EventDead))
	ev.wait(t, entryKind(tx, relay.EventDone))

	tr.mu.Lock()
	defer tr.mu.Unlock()
	for id, want := range map[int64][]string{retried: {"retry", "done"}, dead: {"dead"}, tx: {"done"}} {
		got := tr.outcomes[id]
		if len(got) != len(want) {
			t.Errorf("entry %d outcomes %v, want %v", id, got, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("entry %d outcomes %v, want %v", id, got, want)
			}
		}
		if !tr.sawCtx[id] {
			t.Errorf("entry %d: the handler did not get the tracer's context", id)
		}
	}
	for _, e := range tr.started {
		if e.ID == retried && e.Headers["traceparent"] == "" {
			t.Errorf("attempt of entry %d: headers %v, want the stored traceparent", e.ID, e.Headers)
		}
		if e.State != outbox.StateRunning || e.Topic == "" || e.Attempt < 1 || e.MaxAttempts != outbox.DefaultMaxAttempts {
			t.Errorf("attempt snapshot %+v", e)
		}
	}
}
