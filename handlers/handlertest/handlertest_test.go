package handlertest_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

type note struct {
	Text string `json:"text"`
}

func (note) Topic() string { return "test.note" }

// receiver is a toy effect target: it counts deliveries per key and fails
// or hangs as told.
type receiver struct {
	mu      sync.Mutex
	mode    handlertest.Mode
	effects map[string]int
}

func (r *receiver) deliver(ctx context.Context, key string) error {
	r.mu.Lock()
	mode := r.mode
	r.mu.Unlock()
	switch mode {
	case handlertest.Retryable:
		return errors.New("busy, try later")
	case handlertest.Permanent:
		return relay.Permanent(errors.New("rejected"))
	case handlertest.Hang:
		<-ctx.Done()
		return ctx.Err()
	}
	r.mu.Lock()
	r.effects[key]++
	r.mu.Unlock()
	return nil
}

// The suite itself, run against a handler that does what it asks.
func TestConformanceSuite(t *testing.T) {
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		r := &receiver{effects: map[string]int{}}
		return handlertest.Harness{
			Register: func(h *relay.Handlers) {
				relay.Handle(h, func(ctx context.Context, e *relay.Entry[note]) error {
					return r.deliver(ctx, e.Key)
				})
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, note{Text: "hi"}, outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int {
				r.mu.Lock()
				defer r.mu.Unlock()
				return r.effects[key]
			},
			SetMode: func(m handlertest.Mode) {
				r.mu.Lock()
				r.mode = m
				r.mu.Unlock()
			},
		}
	})
}

// StartRelay runs a relay whose Recorder sees every event; an Observer
// given as an option sees them too.
func TestStartRelayRecordsEvents(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	var (
		mu       sync.Mutex
		attempts int
	)
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[note]) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	})
	extra := handlertest.NewRecorder()
	rec := handlertest.StartRelay(t, db.Pool, h, func(c *relay.Config) { c.Observer = extra })
	res, err := outbox.Enqueue(context.Background(), db.Pool, note{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if retry := rec.Wait(t, res.ID, relay.EventRetry); retry.Attempt != 1 || retry.Err == nil {
		t.Fatalf("retry event %+v; want attempt 1 with its error", retry)
	}
	if done := rec.Wait(t, res.ID, relay.EventDone); done.Attempt != 2 {
		t.Fatalf("done after attempt %d; want 2", done.Attempt)
	}
	if n := rec.Count(res.ID, relay.EventRetry); n != 1 {
		t.Fatalf("%d retry events; want 1", n)
	}
	if n := rec.Count(res.ID, relay.EventDead); n != 0 {
		t.Fatalf("%d dead events; want 0", n)
	}
	// The option's Observer sees each event before the Recorder does.
	if n := extra.Count(res.ID, relay.EventRetry) + extra.Count(res.ID, relay.EventDone); n != 2 {
		t.Fatalf("the option's Observer saw %d retry and done events; want 2", n)
	}
}

// A zero Recorder works, and Wait wakes for an event that comes later.
func TestRecorderWaitsForLaterEvents(t *testing.T) {
	t.Parallel()
	var rec handlertest.Recorder
	rec.Observe(relay.Event{Kind: relay.EventDone, EntryID: 1})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		rec.Observe(relay.Event{Kind: relay.EventRetry, EntryID: 2, Attempt: 1})
		rec.Observe(relay.Event{Kind: relay.EventRetry, EntryID: 2, Attempt: 2})
	}()
	if e := rec.Wait(t, 2, relay.EventRetry); e.Attempt != 1 {
		t.Fatalf("first retry of entry 2 has attempt %d; want 1", e.Attempt)
	}
	if e := rec.Wait(t, 1, relay.EventDone); e.EntryID != 1 {
		t.Fatalf("got %+v", e)
	}
	<-sent
	if n := rec.Count(2, relay.EventRetry); n != 2 {
		t.Fatalf("Count(2, retry) = %d; want 2", n)
	}
	events := rec.Events()
	if len(events) != 3 || events[0].Kind != relay.EventDone {
		t.Fatalf("events %+v; want the done of entry 1, then two retries", events)
	}
	events[0].EntryID = 99 // a copy: the Recorder keeps its own
	if n := rec.Count(1, relay.EventDone); n != 1 {
		t.Fatalf("Count(1, done) = %d after editing Events' result; want 1", n)
	}
}
