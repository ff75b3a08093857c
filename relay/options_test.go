package relay_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// Every attempt of an entry sees the same key: the idempotency key handed
// to the outside world.
func TestKeyIsStableAcrossAttempts(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	var mu sync.Mutex
	var keys []string
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		mu.Lock()
		keys = append(keys, e.Key)
		mu.Unlock()
		if e.Attempt < 3 {
			return errors.New("again")
		}
		return nil
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{}) // no key given: the database makes one
	ev.wait(t, entryKind(id, relay.EventDone))
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Fatalf("keys across attempts: %q", keys)
	}
	if e := getEntry(t, db.Pool, id); e.Key != keys[0] {
		t.Fatalf("handler saw key %q, entry has %q", keys[0], e.Key)
	}
}

// A handler past its timeout gets its context cancelled with
// ErrHandlerTimeout, and the attempt fails like any other.
func TestHandlerTimeout(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}, relay.WithTimeout(20*time.Millisecond))
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{}, outbox.WithMaxAttempts(2))
	retry := ev.wait(t, entryKind(id, relay.EventRetry))
	if !errors.Is(retry.Err, relay.ErrHandlerTimeout) {
		t.Fatalf("retry with %v; want ErrHandlerTimeout", retry.Err)
	}
	ev.wait(t, entryKind(id, relay.EventDead))
}

// WithoutProcessedKeys neither records nor consults processed keys.
func TestWithoutProcessedKeys(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	var calls atomic.Int64
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { calls.Add(1); return nil }, relay.WithoutProcessedKeys())
	startRelay(t, db.Pool, fastConfig(h, ev))
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox_processed_keys (scope, key) VALUES ('test.ping', 'k1')`); err != nil {
		t.Fatal(err)
	}
	a := enqueue(t, db.Pool, ping{N: 1}, outbox.WithKey("k1"))
	b := enqueue(t, db.Pool, ping{N: 2}, outbox.WithKey("k2"))
	ev.wait(t, entryKind(a, relay.EventDone))
	ev.wait(t, entryKind(b, relay.EventDone))
	if calls.Load() != 2 {
		t.Fatalf("handler ran %d times; want 2 (processed keys ignored)", calls.Load())
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_processed_keys`); n != 1 {
		t.Fatalf("%d processed keys; want only the one inserted by the test", n)
	}
}

// With LISTEN disabled, polling alone delivers.
func TestPollingWithoutListen(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.DisableListen = true
	r := startRelay(t, db.Pool, cfg)
	id := enqueue(t, db.Pool, ping{})
	ev.wait(t, entryKind(id, relay.EventDone))
	if r.Listening() || ev.count(relay.EventListenerUp) != 0 {
		t.Fatal("listener ran although disabled")
	}
}

// Queues are separate lanes: a relay serves only its queues, and a full
// bulk queue does not hold up an urgent one. Within a queue, higher
// priority runs first.
func TestQueuesAndPriorities(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	release := make(chan struct{})
	var order []int
	var mu sync.Mutex
	var bulkRunning, bulkMax atomic.Int64
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		if e.Queue == "bulk" {
			n := bulkRunning.Add(1)
			for {
				m := bulkMax.Load()
				if n <= m || bulkMax.CompareAndSwap(m, n) {
					break
				}
			}
			<-release
			bulkRunning.Add(-1)
			return nil
		}
		mu.Lock()
		order = append(order, e.Payload.N)
		mu.Unlock()
		return nil
	})
	// Urgent entries of different priorities, written before the relay
	// starts so that one claim sees them all.
	low := enqueue(t, db.Pool, ping{N: 1}, outbox.WithQueue("urgent"), outbox.WithPriority(-5))
	enqueue(t, db.Pool, ping{N: 2}, outbox.WithQueue("urgent"))
	enqueue(t, db.Pool, ping{N: 3}, outbox.WithQueue("urgent"), outbox.WithPriority(10))
	for i := range 4 {
		enqueue(t, db.Pool, ping{N: 100 + i}, outbox.WithQueue("bulk"))
	}
	other := enqueue(t, db.Pool, ping{N: 9}, outbox.WithQueue("reports"))

	cfg := fastConfig(h, ev)
	cfg.Queues = map[string]relay.QueueConfig{"bulk": {MaxWorkers: 2}, "urgent": {MaxWorkers: 1}}
	startRelay(t, db.Pool, cfg)
	ev.wait(t, entryKind(low, relay.EventDone))
	mu.Lock()
	got := append([]int(nil), order...)
	mu.Unlock()
	if len(got) != 3 || got[0] != 3 || got[1] != 2 || got[2] != 1 {
		t.Fatalf("urgent entries ran in order %v; want by priority [3 2 1]", got)
	}
	// The bulk queue fills its two workers (its claim loop runs on its own
	// schedule) and never runs a third handler while they hang; the other
	// two entries are claimed ahead (the prefetch, at most its worker
	// count) and wait.
	waitUntil(t, "two bulk handlers running", func() bool { return bulkRunning.Load() == 2 })
	other2 := enqueue(t, db.Pool, ping{N: 4}, outbox.WithQueue("urgent"))
	ev.wait(t, entryKind(other2, relay.EventDone)) // a later claim round, bulk still blocked
	if n := bulkMax.Load(); n != 2 {
		t.Fatalf("up to %d bulk handlers ran at once; want 2 (its worker limit)", n)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE queue = 'bulk' AND state = 'running'`); n > 4 {
		t.Fatalf("%d bulk entries claimed; want at most 4 (2 workers and 2 prefetched)", n)
	}
	close(release)
	if e := getEntry(t, db.Pool, other); e.State != outbox.StatePending {
		t.Fatalf("entry of an unserved queue is %s", e.State)
	}
}

// OrderingBlockOnDead holds later entries of a key while an earlier one is
// dead; the default lets them run.
func TestOrderingDeadPolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []relay.OrderingDeadPolicy{relay.OrderingSkipDead, relay.OrderingBlockOnDead} {
		name := map[relay.OrderingDeadPolicy]string{relay.OrderingSkipDead: "skip", relay.OrderingBlockOnDead: "block"}[policy]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := outboxtest.New(t)
			ev := newEvents()
			h := relay.NewHandlers()
			relay.Handle(h, func(ctx context.Context, e *relay.Entry[ordered]) error {
				if e.Payload.Seq == 1 {
					return relay.Permanent(errors.New("poison"))
				}
				return nil
			})
			cfg := fastConfig(h, ev)
			cfg.OrderingDeadPolicy = policy
			startRelay(t, db.Pool, cfg)
			first := enqueue(t, db.Pool, ordered{Key: "k", Seq: 1}, outbox.WithOrderingKey("k"))
			second := enqueue(t, db.Pool, ordered{Key: "k", Seq: 2}, outbox.WithOrderingKey("k"))
			ev.wait(t, entryKind(first, relay.EventDead))
			if policy == relay.OrderingSkipDead {
				ev.wait(t, entryKind(second, relay.EventDone))
				return
			}
			// Blocked: an unrelated entry goes through, the second does not.
			probe := enqueue(t, db.Pool, ordered{Key: "other", Seq: 2}, outbox.WithOrderingKey("other"))
			ev.wait(t, entryKind(probe, relay.EventDone))
			if e := getEntry(t, db.Pool, second); e.State != outbox.StatePending || e.Attempt != 0 {
				t.Fatalf("entry behind a dead one ran: %+v", e)
			}
			// Discarding the dead entry releases the key.
			if n, err := outbox.Discard(context.Background(), db.Pool, outbox.Selection{IDs: []int64{first}}); err != nil || n != 1 {
				t.Fatalf("discard: %d, %v", n, err)
			}
			ev.wait(t, entryKind(second, relay.EventDone))
		})
	}
}
