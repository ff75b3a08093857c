package relay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// A relay stuck past its lease loses the entry to another relay: the stuck
// handler's context is cancelled with ErrLeaseLost, its late completion is
// rejected, and the entry completes once — for both handler forms.
func TestStuckHandlerIsFencedOff(t *testing.T) {
	t.Parallel()
	for _, tx := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "transactional"}[tx]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := outboxtest.New(t)
			createEffects(t, db.Pool)

			stuckStarted := make(chan struct{})
			stuckCause := make(chan error, 1)
			release := make(chan struct{})
			stuck := func(ctx context.Context, e *relay.Entry[ping]) error {
				close(stuckStarted)
				select {
				case <-ctx.Done():
					stuckCause <- context.Cause(ctx)
				case <-time.After(hangGuard):
				}
				if !tx {
					// A plain handler that ignores cancellation and reports
					// success after the entry already completed elsewhere.
					<-release
				}
				// A transactional handler's tx still holds the entry's
				// processed key, so B waits for it; it returns success
				// at once, too late.
				return nil
			}
			evA := newEvents()
			hA := relay.NewHandlers()
			if tx {
				relay.HandleTx(hA, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
					if _, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1, 'A')`, e.ID); err != nil {
						return err
					}
					return stuck(ctx, e)
				})
			} else {
				relay.Handle(hA, stuck)
			}
			cfgA := fastConfig(hA, evA)
			cfgA.Queues = map[string]relay.QueueConfig{"default": {MaxWorkers: 1}}
			cfgA.LeaseDuration = 2 * time.Second
			cfgA.HeartbeatInterval = 50 * time.Millisecond
			// A runs an hour behind: every lease it takes or renews has
			// already expired by the database's clock, as if A were paused
			// or partitioned. B's rescuer takes the entry back, and entries
			// it returns to pending are not yet due on A's clock, so only B
			// claims them again.
			cfgA.Now = func() time.Time { return time.Now().Add(-time.Hour) }
			startRelay(t, db.Pool, cfgA)

			id := enqueue(t, db.Pool, ping{N: 1}, outbox.WithRunAt(time.Now().Add(-2*time.Hour)))
			<-stuckStarted

			evB := newEvents()
			hB := relay.NewHandlers()
			if tx {
				relay.HandleTx(hB, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
					_, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1, 'B')`, e.ID)
					return err
				})
			} else {
				relay.Handle(hB, func(ctx context.Context, e *relay.Entry[ping]) error {
					_, err := db.Pool.Exec(ctx, `INSERT INTO effects VALUES ($1, 'B')`, e.ID)
					return err
				})
			}
			startRelay(t, db.Pool, fastConfig(hB, evB))

			if cause := <-stuckCause; !errors.Is(cause, relay.ErrLeaseLost) {
				t.Fatalf("stuck handler cancelled with %v; want ErrLeaseLost", cause)
			}
			if tx {
				evA.wait(t, entryKind(id, relay.EventFenced))
			}
			done := evB.wait(t, entryKind(id, relay.EventDone))
			if done.Attempt != 2 {
				t.Fatalf("B completed attempt %d, want 2; A saw %v; B saw %v", done.Attempt, evA.all, evB.all)
			}
			close(release)
			if !tx {
				evA.wait(t, entryKind(id, relay.EventFenced))
			}
			if n := evA.count(relay.EventDone); n != 0 {
				t.Fatalf("stuck relay reported %d completions", n)
			}
			e := getEntry(t, db.Pool, id)
			if e.State != outbox.StateDone || e.Attempt != 2 {
				t.Fatalf("entry %+v", e)
			}
			notes := scalar[string](t, db.Pool, `SELECT string_agg(note, ',' ORDER BY note) FROM effects`)
			if notes != "B" {
				t.Fatalf("effects %q; want only B's", notes)
			}
		})
	}
}

// Entries leased by a relay that died are taken back after the lease
// expires and run by another relay; the crashed attempt still counts.
func TestExpiredLeaseIsRescued(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	ev := newEvents()
	id := enqueue(t, db.Pool, ping{N: 1}, outbox.WithMaxAttempts(2))
	last := enqueue(t, db.Pool, ping{N: 2}, outbox.WithMaxAttempts(1))
	// A relay claimed both and was killed: running, lease expired.
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_entries
		SET state = 'running', attempt = 1, lease_owner = 'killed-relay', lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	startRelay(t, db.Pool, fastConfig(h, ev))

	done := ev.wait(t, entryKind(id, relay.EventDone))
	if done.Attempt != 2 {
		t.Fatalf("rescued entry ran as attempt %d, want 2", done.Attempt)
	}
	// The other one had no attempt left: dead, with the reason.
	ev.wait(t, entryKind(last, relay.EventDead))
	e := getEntry(t, db.Pool, last)
	if e.State != outbox.StateDead || e.LastError == nil || !strings.Contains(*e.LastError, "killed-relay") {
		t.Fatalf("entry without attempts left: %+v", e)
	}
}

// Shutdown waits for running handlers; those still running at the deadline
// are cancelled with ErrShutdown and handed back without counting.
func TestShutdownHandsBackWithoutBurningAttempt(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	started := make(chan int, 2)
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		started <- e.Payload.N
		if e.Payload.N == 1 {
			return nil // finishes within the deadline
		}
		<-ctx.Done() // runs until cancelled
		return context.Cause(ctx)
	})
	cfg := fastConfig(h, ev)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	stop := runRelay(t, db.Pool, cfg)
	quick := enqueue(t, db.Pool, ping{N: 1})
	slow := enqueue(t, db.Pool, ping{N: 2})
	ev.wait(t, entryKind(quick, relay.EventDone))
	ev.wait(t, entryKind(slow, relay.EventStarted))
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	back := ev.wait(t, entryKind(slow, relay.EventHandedBack))
	if !errors.Is(back.Err, relay.ErrShutdown) {
		t.Fatalf("handed back with %v", back.Err)
	}
	e := getEntry(t, db.Pool, slow)
	if e.State != outbox.StatePending || e.Attempt != 0 || e.LeaseOwner != nil {
		t.Fatalf("handed-back entry %+v; want pending with no attempt counted", e)
	}
	if fence := scalar[int32](t, db.Pool, `SELECT attempt FROM outbox_entries WHERE id = $1`, slow); fence != 1 {
		t.Fatalf("fencing token %d, want 1 (it never goes back)", fence)
	}
}

// Entries claimed but not started when the relay stops — one waiting for a
// transactional handler's connection, others waiting for a worker — are
// handed back through the completer without counting the attempt, like the
// one whose handler shutdown cancelled.
func TestShutdownHandsBackEntriesNotStarted(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	pool := smallPool(t, db.URL, 4) // one queue and the relay's own three: one transactional handler at once
	ev := newEvents()
	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
		<-ctx.Done() // holds the only connection until shutdown cancels it
		return context.Cause(ctx)
	})
	cfg := fastConfig(h, ev)
	cfg.Queues = map[string]relay.QueueConfig{outbox.DefaultQueue: {MaxWorkers: 2}}
	cfg.ClaimBatchSize = 2 // two workers and two entries claimed ahead
	cfg.ShutdownTimeout = 200 * time.Millisecond
	stop := runRelay(t, pool, cfg)
	first := enqueue(t, db.Pool, ping{N: 0})
	ev.wait(t, entryKind(first, relay.EventStarted))
	ids := []int64{first}
	for i := 1; i <= 3; i++ {
		ids = append(ids, enqueue(t, db.Pool, ping{N: i}))
	}
	waitUntil(t, "every entry claimed", func() bool {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'running'`) == 4
	})
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	for _, id := range ids {
		ev.wait(t, entryKind(id, relay.EventHandedBack))
		e := getEntry(t, db.Pool, id)
		if e.State != outbox.StatePending || e.Attempt != 0 || e.LeaseOwner != nil {
			t.Errorf("handed-back entry %+v; want pending with no attempt counted", e)
		}
	}
	for _, kind := range []relay.EventKind{relay.EventDone, relay.EventRetry, relay.EventFenced, relay.EventLeaseLost} {
		if n := ev.count(kind); n != 0 {
			t.Errorf("%d %s events; want none", n, kind)
		}
	}
}

// Delayed entries wait for their time on the relay's clock.
func TestDelayedEntryWaitsForItsTime(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	clock := newFakeClock()
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.Now = clock.Now
	startRelay(t, db.Pool, cfg)

	later := enqueue(t, db.Pool, ping{N: 1}, outbox.WithRunAt(clock.Now().Add(time.Hour)))
	now := enqueue(t, db.Pool, ping{N: 2})
	ev.wait(t, entryKind(now, relay.EventDone))
	// A claim that came after the delayed entry existed did not take it.
	after := enqueue(t, db.Pool, ping{N: 3})
	ev.wait(t, entryKind(after, relay.EventDone))
	if e := getEntry(t, db.Pool, later); e.State != outbox.StatePending || e.Attempt != 0 {
		t.Fatalf("delayed entry started early: %+v", e)
	}
	clock.Advance(time.Hour)
	ev.wait(t, entryKind(later, relay.EventDone))
}

// Retention deletes done entries, dead entries and processed keys past their
// retention, in bounded batches, and nothing younger.
func TestRetention(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	clock := newFakeClock()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, nil)
	cfg.Now = clock.Now
	cfg.DoneRetention = time.Hour
	cfg.DeadRetention = 2 * time.Hour
	cfg.ProcessedKeyRetention = 3 * time.Hour
	cfg.RetentionBatchSize = 7
	r, err := relay.New(db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	items := make([]outbox.Item, 60)
	for i := range items {
		items[i] = outbox.NewItem(ping{N: i})
	}
	if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
		t.Fatal(err)
	}
	// 20 done 90 minutes ago, 20 dead 90 minutes ago, 20 pending; 20 keys
	// 90 minutes old and 20 four hours old.
	now := clock.Now()
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_entries SET state = CASE WHEN id % 3 = 0 THEN 'done' WHEN id % 3 = 1 THEN 'dead' ELSE 'pending' END,
			finished_at = CASE WHEN id % 3 <> 2 THEN $1::timestamptz - interval '90 minutes' END`, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_processed_keys (scope, key, processed_at)
			SELECT 'test.ping', 'k' || g, $1::timestamptz - CASE WHEN g <= 20 THEN interval '90 minutes' ELSE interval '4 hours' END
			FROM generate_series(1, 40) g`, now); err != nil {
		t.Fatal(err)
	}
	deleted, err := r.Retention(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 40 {
		t.Fatalf("deleted %d rows, want 20 done + 20 keys", deleted)
	}
	left := scalar[string](t, db.Pool, `SELECT string_agg(state || ':' || n, ',' ORDER BY state) FROM (SELECT state, count(*) n FROM outbox_entries GROUP BY state) s`)
	if left != "dead:20,pending:20" {
		t.Fatalf("left %s", left)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_processed_keys`); n != 20 {
		t.Fatalf("%d processed keys left, want 20", n)
	}
	clock.Advance(time.Hour)
	if deleted, err = r.Retention(ctx); err != nil || deleted != 20 {
		t.Fatalf("second run deleted %d (%v); want the 20 dead entries", deleted, err)
	}
}
