package relay_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pglocal"
	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// faultDB is a migrated database on a private local cluster that a test
// may crash and restart.
func faultDB(t *testing.T) (*pglocal.Cluster, *pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	cluster, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("local cluster (the fault tests need PostgreSQL server binaries): %v", err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	pool, drop, err := scratchdb.Create(ctx, cluster.URL(), "txoutbox_fault")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	cfg := pool.Config()
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", cluster.Port(), cfg.ConnConfig.Database)
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (entry_id bigint NOT NULL, note text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return cluster, pool, url
}

// produce enqueues entries until stop is closed, tolerating an unreachable
// database. It returns the keys whose transaction certainly committed and
// those whose commit outcome is unknown (the connection broke during it).
func produce(t *testing.T, url string, stop <-chan struct{}) (committed, unknown *[]string, done <-chan struct{}) {
	t.Helper()
	var c, u []string
	fin := make(chan struct{})
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(fin)
		defer pool.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("p-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			tx, err := pool.Begin(ctx)
			if err == nil {
				_, err = outbox.Enqueue(ctx, tx, ping{N: i}, outbox.WithKey(key))
				if err == nil {
					if err = tx.Commit(ctx); err == nil {
						c = append(c, key)
					} else {
						u = append(u, key)
					}
				} else {
					_ = tx.Rollback(ctx)
				}
			}
			cancel()
			if err != nil {
				time.Sleep(20 * time.Millisecond) // the database is down: producer back-off
			}
		}
	}()
	return &c, &u, fin
}

// txRecorder is a transactional handler writing one effect per entry.
func txRecorder(h *relay.Handlers) {
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
		_, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, note) VALUES ($1, $2)`, e.ID, e.Key)
		return err
	})
}

// checkExactlyOnce waits for every entry to finish and checks each has
// exactly one effect, and that every committed key has an entry.
func checkExactlyOnce(t *testing.T, pool *pgxpool.Pool, committed []string) {
	t.Helper()
	ctx := context.Background()
	waitUntil(t, "every entry done", func() bool {
		return scalar[int64](t, pool, `SELECT count(*) FROM outbox_entries WHERE state <> 'done'`) == 0
	})
	entries := scalar[int64](t, pool, `SELECT count(*) FROM outbox_entries`)
	effects := scalar[int64](t, pool, `SELECT count(*) FROM effects`)
	distinct := scalar[int64](t, pool, `SELECT count(DISTINCT entry_id) FROM effects`)
	if effects != entries || distinct != entries {
		t.Fatalf("%d entries, %d effects (%d distinct): want exactly one effect per entry", entries, effects, distinct)
	}
	var missing int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM unnest($1::text[]) k WHERE NOT EXISTS
		(SELECT 1 FROM outbox_entries e WHERE e.topic = 'test.ping' AND e.key = k)`, committed).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Fatalf("%d committed entries are missing", missing)
	}
	t.Logf("%d entries (%d committed for certain), each handled exactly once", entries, len(committed))
}

// PostgreSQL crashes (-m immediate) and restarts three times under load:
// the relay reconnects, its LISTEN connection comes back, nothing
// committed is lost, and no transactional effect happens twice.
func TestPostgresRestartsUnderLoad(t *testing.T) {
	t.Parallel()
	cluster, pool, url := faultDB(t)
	ctx := context.Background()
	ev := newEvents()
	h := relay.NewHandlers()
	txRecorder(h)
	cfg := fastConfig(h, ev)
	cfg.LeaseDuration = time.Second
	cfg.RescueInterval = 100 * time.Millisecond
	startRelay(t, pool, cfg)
	ev.wait(t, kindIs(relay.EventListenerUp))

	stop := make(chan struct{})
	committed, _, produced := produce(t, url, stop)
	var restarts atomic.Int64
	for round := range 3 {
		before := scalar[int64](t, pool, `SELECT count(*) FROM effects`)
		waitUntil(t, "progress before the crash", func() bool {
			return scalar[int64](t, pool, `SELECT count(*) FROM effects`) > before+20
		})
		if err := cluster.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Start(ctx); err != nil {
			t.Fatalf("restart %d: %v", round, err)
		}
		restarts.Add(1)
		ups := restarts.Load() + 1
		ev.wait(t, func(e relay.Event) bool {
			if e.Kind != relay.EventListenerUp {
				return false
			}
			ups--
			return ups == 0
		})
	}
	close(stop)
	<-produced
	checkExactlyOnce(t, pool, *committed)
	if n := ev.count(relay.EventListenerUp); n < 4 {
		t.Fatalf("listener came up %d times over 3 restarts", n)
	}
}

// Every relay connection is terminated (pg_terminate_backend) again and
// again while entries flow: the relay recovers and completes everything
// exactly once.
func TestTerminatedConnections(t *testing.T) {
	t.Parallel()
	_, pool, url := faultDB(t)
	ctx := context.Background()
	ev := newEvents()
	h := relay.NewHandlers()
	txRecorder(h)
	rcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	rcfg.ConnConfig.RuntimeParams["application_name"] = "txoutbox-relay-under-test"
	relayPool, err := pgxpool.NewWithConfig(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relayPool.Close)
	cfg := fastConfig(h, ev)
	cfg.LeaseDuration = time.Second
	startRelay(t, relayPool, cfg)
	ev.wait(t, kindIs(relay.EventListenerUp))

	stop := make(chan struct{})
	committed, _, produced := produce(t, url, stop)
	var kills atomic.Int64
	for range 10 {
		before := scalar[int64](t, pool, `SELECT count(*) FROM effects`)
		waitUntil(t, "progress", func() bool { return scalar[int64](t, pool, `SELECT count(*) FROM effects`) > before+10 })
		n := scalar[int64](t, pool, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'txoutbox-relay-under-test' AND pid <> pg_backend_pid()`)
		kills.Add(n)
	}
	close(stop)
	<-produced
	checkExactlyOnce(t, pool, *committed)
	t.Logf("terminated %d relay connections in 10 rounds; listener reconnected %d times", kills.Load(), ev.count(relay.EventListenerUp)-1)
	if ev.count(relay.EventListenerUp) < 2 {
		t.Fatal("the listener never reconnected")
	}
	if errs := ev.count(relay.EventError); errs == 0 {
		t.Log("no relay operation failed: every termination hit an idle connection")
	}
}
