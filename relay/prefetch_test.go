package relay_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// An entry claimed ahead, waiting behind a slow handler, whose lease is
// lost meanwhile (another relay took it) is not run by this relay: its
// handler first sees it on a later claim.
func TestEntryClaimedAheadIsNotRunAfterItsLeaseIsLost(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	ev := newEvents()
	release := make(chan struct{})
	var mu sync.Mutex
	firstAttempt := map[int]int{} // payload N -> attempt of its first run
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		mu.Lock()
		if _, ok := firstAttempt[e.Payload.N]; !ok {
			firstAttempt[e.Payload.N] = e.Attempt
		}
		mu.Unlock()
		if e.Payload.N == 1 {
			<-release
		}
		return nil
	})
	cfg := fastConfig(h, ev)
	cfg.Queues = map[string]relay.QueueConfig{"default": {MaxWorkers: 1}}
	cfg.LeaseDuration = 3 * time.Second
	cfg.HeartbeatInterval = 50 * time.Millisecond

	slow := enqueue(t, db.Pool, ping{N: 1})
	ahead := enqueue(t, db.Pool, ping{N: 2})
	startRelay(t, db.Pool, cfg)
	ev.wait(t, entryKind(slow, relay.EventStarted))
	waitUntil(t, "the second entry claimed ahead", func() bool {
		return scalar[int64](t, db.Pool, `SELECT attempt FROM outbox_entries WHERE id = $1`, ahead) == 1
	})
	// Another relay takes it over, with a lease already expired, so that
	// the rescuer soon hands it back to pending.
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_entries SET attempt = attempt + 1, lease_owner = 'other',
		lease_until = now() WHERE id = $1`, ahead); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, entryKind(ahead, relay.EventLeaseLost))
	close(release)
	ev.wait(t, entryKind(ahead, relay.EventDone))
	mu.Lock()
	defer mu.Unlock()
	if got := firstAttempt[2]; got < 3 {
		t.Fatalf("the entry first ran as attempt %d, under the lease it had lost; want attempt 3 or later (after the takeover and a new claim)", got)
	}
}

// A relay that ran once and stopped runs entries again when Run is called
// a second time (it does not keep handing them back).
func TestRelayRunsAgainAfterAStop(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	r, err := relay.New(db.Pool, fastConfig(h, ev))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx1) }()
	first := enqueue(t, db.Pool, ping{N: 1})
	ev.wait(t, entryKind(first, relay.EventDone))
	cancel1()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- r.Run(ctx2) }()
	t.Cleanup(func() { cancel2(); <-done })
	second := enqueue(t, db.Pool, ping{N: 2}, outbox.WithKey("second"))
	ev.wait(t, entryKind(second, relay.EventDone))
	if n := ev.count(relay.EventHandedBack); n != 0 {
		t.Fatalf("%d entries handed back by the second run", n)
	}
}
