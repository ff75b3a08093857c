package relay_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// A claim that committed but whose result never reached the relay (the
// connection broke after the commit) leaves entries leased to a relay that
// does not know it holds them. The relay hands them back before its next
// claim, without counting the attempt: each entry later runs once, as
// attempt 1, instead of waiting for its lease to expire and being rescued
// with an attempt used.
func TestLostClaimResultCostsNoAttempt(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	var mu sync.Mutex
	attempts := map[int64][]int{}
	h := relay.NewHandlers()
	relay.Handle(h, func(_ context.Context, e *relay.Entry[ping]) error {
		mu.Lock()
		attempts[e.ID] = append(attempts[e.ID], e.Attempt)
		mu.Unlock()
		return nil
	})
	cfg := fastConfig(h, ev)
	cfg.ID = "lost-claim-relay"
	cfg.LeaseDuration = outboxtestLongLease
	cfg.HeartbeatInterval = outboxtestLongLease / 3
	r, err := relay.New(db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int32
	relay.LoseClaimResults(r, func() bool { return lost.Add(1) == 1 }) // the first claim only

	res, err := outbox.EnqueueBatch(context.Background(), db.Pool, []outbox.Item{
		outbox.NewItem(ping{N: 1}), outbox.NewItem(ping{N: 2}), outbox.NewItem(ping{N: 3}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for _, e := range res {
		ev.wait(t, entryKind(e.ID, relay.EventDone))
	}
	if lost.Load() < 2 {
		t.Fatalf("the relay claimed %d times; the test needs a lost claim and a later one", lost.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range res {
		if got := attempts[e.ID]; len(got) != 1 || got[0] != 1 {
			t.Errorf("entry %d ran as attempts %v; want [1]", e.ID, got)
		}
		if got := getEntry(t, db.Pool, e.ID); got.Attempt != 1 {
			t.Errorf("entry %d ended with %d counted attempts; want 1", e.ID, got.Attempt)
		}
	}
}

// outboxtestLongLease is a lease far longer than the test: an entry of a
// lost claim would wait for it (and for the rescuer) without the hand-back.
const outboxtestLongLease = 10 * hangGuard

// Rows written with plain SQL whose payload or headers are over the
// relay's limits are dead-lettered by the claim's measurements, without
// being fetched, and a valid entry committed with them runs as attempt 1
// (the reproduction, scaled down: ten 60 MB rows stalled every
// claim of the queue, and the valid entry died of a lease nobody held).
func TestOversizedRowsAreDeadLetteredWithoutStallingTheQueue(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	ev := newEvents()
	var ran atomic.Int32
	h := relay.NewHandlers()
	relay.Handle(h, func(_ context.Context, e *relay.Entry[ping]) error {
		ran.Add(1)
		if e.Attempt != 1 {
			t.Errorf("valid entry ran as attempt %d", e.Attempt)
		}
		return nil
	})
	cfg := fastConfig(h, ev)
	cfg.MaxPayloadBytes = 4 << 10
	cfg.MaxClaimBytes = 1 << 10
	startRelay(t, db.Pool, cfg)

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var valid int64
	if err := tx.QueryRow(ctx, `INSERT INTO outbox_entries (topic, key, payload, max_attempts)
		VALUES ('test.ping', 'innocent', '{"n": 1}', 1) RETURNING id`).Scan(&valid); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `INSERT INTO outbox_entries (topic, key, payload, headers)
		SELECT 'test.ping', 'huge-' || g,
			CASE WHEN g <= 5 THEN jsonb_build_object('n', g, 'pad', repeat('a', 200000)) ELSE '{"n": 0}' END,
			CASE WHEN g > 5 THEN jsonb_build_object('pad', repeat('h', 20000)) ELSE '{}' END
		FROM generate_series(1, 8) g RETURNING id`)
	if err != nil {
		t.Fatal(err)
	}
	var huge []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		huge = append(huge, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	ev.wait(t, entryKind(valid, relay.EventDone))
	for i, id := range huge {
		dead := ev.wait(t, entryKind(id, relay.EventDead))
		if !errors.Is(dead.Err, relay.ErrPayloadTooLarge) {
			t.Errorf("entry %d dead with %v; want ErrPayloadTooLarge", id, dead.Err)
		}
		want := "not fetched"
		if i >= 5 {
			want = "headers of"
		}
		if e := getEntry(t, db.Pool, id); e.Attempt != 1 || e.LastError == nil || !strings.Contains(*e.LastError, want) {
			t.Errorf("entry %d: attempt %d, last error %v; want attempt 1 and %q", id, e.Attempt, e.LastError, want)
		}
	}
	if ran.Load() != 1 {
		t.Errorf("the handler ran %d times; want once (the valid entry)", ran.Load())
	}
}

// Transactional handlers hold a pool connection each for as long as they
// run. With more of them than the pool has connections to spare, the relay
// runs only as many at once as leave a connection for its claims, outcome
// writes and lease renewals: the leases of the running and waiting entries
// keep being renewed, and none is lost, however long the handlers take.
func TestTransactionalHandlersLeaveConnectionsForRenewals(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	pool := smallPool(t, db.URL, 4) // one queue and the relay's own three: one transactional handler at once

	release := make(chan struct{})
	ev := newEvents()
	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	cfg := fastConfig(h, ev)
	// Leases short enough that starved renewals lose them within the test,
	// long enough that a busy CPU alone does not.
	cfg.LeaseDuration = 3 * time.Second
	cfg.HeartbeatInterval = time.Second
	startRelay(t, pool, cfg)
	var ids []int64
	for i := range 6 {
		ids = append(ids, enqueue(t, db.Pool, ping{N: i}))
	}
	waitUntil(t, "every entry claimed", func() bool {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'running'`) == 6
	})
	first := scalar[time.Time](t, db.Pool, `SELECT max(lease_until) FROM outbox_entries`)
	// Renewed past the lease they were claimed with, twice over.
	waitUntil(t, "every lease renewed", func() bool {
		if n := ev.count(relay.EventLeaseLost); n > 0 {
			t.Fatalf("%d leases lost while the handlers held the pool", n)
		}
		return scalar[bool](t, db.Pool, `SELECT coalesce(bool_and(lease_until > $1::timestamptz + interval '2 seconds'), false)
			FROM outbox_entries WHERE state = 'running'`, first)
	})
	close(release)
	for _, id := range ids {
		ev.wait(t, entryKind(id, relay.EventDone))
		if e := getEntry(t, db.Pool, id); e.Attempt != 1 {
			t.Errorf("entry %d done on attempt %d; want 1", id, e.Attempt)
		}
	}
	if n := ev.count(relay.EventLeaseLost); n != 0 {
		t.Errorf("%d leases lost", n)
	}
}

// A claim cut short by MaxClaimBytes leaves entries it picked for the next
// claim, which follows at once: the queue does not wait for the poll.
func TestClaimsCutByTheByteBudgetGoOn(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[padded]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.PollInterval = time.Hour
	cfg.MaxClaimBytes = 1 << 10 // one or two entries a claim
	startRelay(t, db.Pool, cfg)
	ev.wait(t, kindIs(relay.EventListenerUp))
	items := make([]outbox.Item, 20)
	for i := range items {
		items[i] = outbox.NewItem(padded{N: i, Pad: strings.Repeat("x", 600)})
	}
	res, err := outbox.EnqueueBatch(context.Background(), db.Pool, items)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res {
		ev.wait(t, entryKind(e.ID, relay.EventDone))
	}
}

type padded struct {
	N   int    `json:"n"`
	Pad string `json:"pad"`
}

func (padded) Topic() string { return "test.padded" }

// Waiting for a pool connection (the transactional handlers' slots) is not
// part of an attempt: an entry that waits longer than its handler timeout
// still runs as attempt 1, and is not reported started until it runs.
func TestWaitingForATransactionalSlotCostsNoAttempt(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	pool := smallPool(t, db.URL, 4) // one queue and the relay's own three: one slot
	release := make(chan struct{})
	var running atomic.Int32
	ev := newEvents()
	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
		if n := running.Add(1); n > 1 {
			t.Errorf("%d transactional handlers at once; the pool leaves room for one", n)
		}
		defer running.Add(-1)
		if e.Payload.N == 0 {
			<-release
		}
		return nil
	})
	const timeout = time.Second // long enough for a healthy attempt on a loaded machine
	cfg := fastConfig(h, ev)
	cfg.HandlerTimeout = timeout
	startRelay(t, pool, cfg)
	first := enqueue(t, db.Pool, ping{N: 0})
	ev.wait(t, entryKind(first, relay.EventStarted))
	var rest []int64
	for i := 1; i <= 3; i++ {
		rest = append(rest, enqueue(t, db.Pool, ping{N: i}))
	}
	waitUntil(t, "the others claimed", func() bool {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'running'`) == 4
	})
	// The premise: the others wait well past their handler timeout.
	claimed := time.Now()
	waitUntil(t, "three handler timeouts to pass", func() bool { return time.Since(claimed) > 3*timeout })
	for _, id := range rest {
		if ev.has(entryKind(id, relay.EventStarted)) {
			t.Errorf("entry %d reported started while it waited for a connection", id)
		}
	}
	close(release)
	for _, id := range append([]int64{first}, rest...) {
		ev.wait(t, entryKind(id, relay.EventDone))
		if e := getEntry(t, db.Pool, id); e.Attempt != 1 {
			t.Errorf("entry %d done on attempt %d; want 1", id, e.Attempt)
		}
	}
}

// smallPool is a pool of maxConns connections on url, closed when the test
// ends.
func smallPool(t *testing.T, url string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
