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
// notifying skips its own notification (schema version 4): here the other
// transaction is a session holding the queue's advisory lock, whose NOTIFY
// wakes the relay before the producer has committed. The relay's claim
// after the wake-up finds nothing; its trailing claim finds the entry,
// although the poll interval is an hour.
func TestEntryOfASkippedNotificationIsClaimedAfterTheWakeUp(t *testing.T) {
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

	holder, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(7310531, hashtext('default'))`); err != nil {
		t.Fatal(err)
	}

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	res, err := outbox.Enqueue(ctx, tx, ping{N: 1})
	if err != nil {
		t.Fatal(err)
	}

	// The "other producer" notifies; wait until the relay has claimed in
	// response (and found nothing: the entry is not committed yet).
	var notifiedAt time.Time
	if err := holder.QueryRow(ctx, `SELECT clock_timestamp() FROM pg_notify('txoutbox', 'default')`).Scan(&notifiedAt); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the relay's claim after the notification", func() bool {
		return scalar[bool](t, db.Pool, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle'
			  AND query LIKE '%picked AS%' AND state_change > $1)`, notifiedAt)
	})
	// The claim that answered the notification ran before this commit, so
	// only a later claim can find the entry: with the poll an hour away,
	// that is a trailing claim.
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, entryKind(res.ID, relay.EventDone))
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(7310531, hashtext('default'))`); err != nil {
		t.Fatal(err)
	}
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
