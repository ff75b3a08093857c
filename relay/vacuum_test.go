package relay_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// Past VacuumThreshold dead row versions, a relay vacuums outbox_entries
// itself, and the claim index loses the entries of claimed rows.
func TestRelayVacuumsPastTheThreshold(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.VacuumThreshold = 100
	startRelay(t, db.Pool, cfg)

	enqueueAndRunAll(t, db.Pool, ev, 300) // 600 dead row versions
	v := ev.wait(t, kindIs(relay.EventVacuumed))
	if v.Count < 100 || v.Duration <= 0 {
		t.Fatalf("vacuum event %+v; want at least 100 dead row versions and a duration", v)
	}
	if !scalar[bool](t, db.Pool, `SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'outbox_entries'`) {
		t.Fatal("pg_stat_user_tables shows no vacuum of outbox_entries")
	}
}

// A role that does not own the table is not allowed to vacuum it: the
// relay says so once and goes on relaying.
func TestRelayLeavesVacuumToAutovacuumWithoutOwnership(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	role := "txoutbox_relay_" + db.Name[len(db.Name)-8:]
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT USAGE ON SCHEMA public TO ` + role,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + role,
		`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ` + role,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = db.Pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.VacuumThreshold = 100
	logs := &logBuffer{}
	cfg.Logger = logs.logger()
	startRelay(t, pool, cfg)
	enqueueAndRunAll(t, db.Pool, ev, 300) // 600 dead row versions
	waitUntil(t, "the relay's note that it may not vacuum", func() bool {
		return logs.contains("may not VACUUM")
	})
	if n := ev.count(relay.EventVacuumed); n != 0 {
		t.Fatalf("%d vacuums by a role that does not own the table", n)
	}
}

// A transaction that holds an old snapshot keeps the dead row versions:
// the relay's VACUUM removes little, and the relay says so and backs off
// instead of vacuuming at every check.
func TestRelayVacuumBacksOffWhenRowsCannotBeRemoved(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	holder, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM outbox_entries`); err != nil { // takes the snapshot
		t.Fatal(err)
	}

	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.VacuumThreshold = 100
	logs := &logBuffer{}
	cfg.Logger = logs.logger()
	startRelay(t, db.Pool, cfg)
	enqueueAndRunAll(t, db.Pool, ev, 300) // 600 dead row versions
	waitUntil(t, "the relay's warning that the rows stayed", func() bool {
		return logs.contains("most dead row versions remain")
	})
	// Checks run every RescueInterval (100ms here); backing off, the relay
	// skips 1, 2, 4, ... of them after each VACUUM that removed little.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := ev.count(relay.EventVacuumed); n > 10 {
		t.Fatalf("%d vacuums in about 2.5s of 100ms checks; want the relay to back off", n)
	}
}

// enqueueAndRunAll enqueues n entries in one batch and waits until the
// relay observed by ev has run them all.
func enqueueAndRunAll(t *testing.T, pool *pgxpool.Pool, ev *events, n int) {
	t.Helper()
	items := make([]outbox.Item, n)
	for i := range items {
		items[i] = outbox.NewItem(ping{N: i})
	}
	res, err := outbox.EnqueueBatch(context.Background(), pool, items)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		ev.wait(t, entryKind(r.ID, relay.EventDone))
	}
}
