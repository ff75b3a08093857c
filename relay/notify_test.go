package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// A producer that commits while another transaction of its queue is
// notifying skips its own notification (schema version 5), and here its
// commit is held up (by a test trigger that runs after the schema's) until
// long after the woken relay's claim found nothing of it. The relay keeps
// asking whether a producer of the queue is still committing, and claims
// the entry once that commit is visible, although the poll interval is an
// hour: the wake-up does not depend on how long the commit takes.
func TestEntryOfASkippedNotificationIsClaimedAfterTheWakeUp(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	// Deferred triggers fire in name order: this one runs after the
	// schema's outbox_entries_notify_commit, so the producer has already
	// skipped its notification and holds the commit lock when it blocks.
	if _, err := db.Pool.Exec(ctx, `
		CREATE FUNCTION test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER zz_test_hold_commit AFTER INSERT ON outbox_entries
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			WHEN (NEW.key = 'skipper') EXECUTE FUNCTION test_hold_commit()`); err != nil {
		t.Fatal(err)
	}
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.PollInterval = time.Hour
	startRelay(t, db.Pool, cfg)
	ev.wait(t, kindIs(relay.EventListenerUp))

	gate := connect(t, db.URL)
	if _, err := gate.Exec(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
		t.Fatal(err)
	}

	// The notifier: it holds the queue's notify lock until it commits,
	// as the schema's trigger makes a notifying transaction do.
	notifier := connect(t, db.URL)
	txA, err := notifier.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = txA.Rollback(ctx) }()
	resA, err := outbox.Enqueue(ctx, txA, ping{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txA.Exec(ctx, `SELECT pg_advisory_xact_lock(7310531, hashtext('default'))`); err != nil {
		t.Fatal(err)
	}

	// The skipper commits meanwhile: it skips its notification and blocks
	// in its commit on the gate.
	skipper := connect(t, db.URL)
	var skipperPID int
	if err := skipper.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&skipperPID); err != nil {
		t.Fatal(err)
	}
	type result struct {
		id  int64
		err error
	}
	committed := make(chan result, 1)
	go func() {
		tx, err := skipper.Begin(ctx)
		if err != nil {
			committed <- result{err: err}
			return
		}
		res, err := outbox.Enqueue(ctx, tx, ping{N: 2}, outbox.WithKey("skipper"))
		if err == nil {
			err = tx.Commit(ctx)
		}
		committed <- result{id: res.ID, err: err}
	}()
	waitUntil(t, "the skipper to block in its commit", func() bool {
		return scalar[bool](t, db.Pool, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE pid = $1 AND locktype = 'advisory' AND objid = 4242 AND NOT granted)`, skipperPID)
	})

	// The notifier commits: its notification wakes the relay, which runs
	// its entry but cannot see the skipper's, still committing.
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var committedAt time.Time
	if err := notifier.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&committedAt); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, entryKind(resA.ID, relay.EventDone))
	// Still claiming well after the wake-up (version 4's relay made its
	// last trailing claim 50 ms after it and then waited for the poll).
	waitUntil(t, "a claim long after the wake-up", func() bool {
		return scalar[bool](t, db.Pool, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
			  AND query LIKE '%picked AS%' AND state_change > $1::timestamptz + interval '200 milliseconds')`, committedAt)
	})

	if _, err := gate.Exec(ctx, `SELECT pg_advisory_unlock(4242)`); err != nil {
		t.Fatal(err)
	}
	res := <-committed
	if res.err != nil {
		t.Fatal(res.err)
	}
	ev.wait(t, entryKind(res.id, relay.EventDone))
}

// Many producers committing at once: some skip their notification, and
// every entry still runs promptly (the poll interval is an hour).
func TestConcurrentProducersAllWakeTheRelay(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.PollInterval = time.Hour
	startRelay(t, db.Pool, cfg)
	ev.wait(t, kindIs(relay.EventListenerUp))

	const producers, each = 8, 25
	errs := make(chan error, producers)
	ids := make(chan int64, producers*each)
	for p := range producers {
		go func() {
			for i := range each {
				res, err := outbox.Enqueue(ctx, db.Pool, ping{N: p*each + i})
				if err != nil {
					errs <- err
					return
				}
				ids <- res.ID
			}
			errs <- nil
		}()
	}
	for range producers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(ids)
	for id := range ids {
		ev.wait(t, entryKind(id, relay.EventDone))
	}
}

// connect opens a connection of its own, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
