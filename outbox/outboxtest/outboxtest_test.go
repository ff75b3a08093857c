package outboxtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// TestParallelDatabasesAreIsolated gives 50 parallel tests a database each
// and checks that each sees only its own writes and has the schema.
func TestParallelDatabasesAreIsolated(t *testing.T) {
	const n = 50

	start := time.Now()
	shared := outboxtest.New(t)
	firstCost := time.Since(start)
	exec(t, shared.Pool, `INSERT INTO outbox_entries (topic, key) VALUES ('isolation', 'outer')`)

	var (
		mu    sync.Mutex
		names = map[string]bool{}
		costs []time.Duration
	)
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprintf("db%02d", i), func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				db := outboxtest.New(t)
				cost := time.Since(start)
				mu.Lock()
				names[db.Name] = true
				costs = append(costs, cost)
				mu.Unlock()

				ctx := context.Background()
				var current string
				var entries, keys *string
				err := db.Pool.QueryRow(ctx, `SELECT current_database(),
					to_regclass('public.outbox_entries')::text, to_regclass('public.outbox_processed_keys')::text`).
					Scan(&current, &entries, &keys)
				if err != nil {
					t.Fatal(err)
				}
				if current != db.Name {
					t.Errorf("connected to %s, want %s", current, db.Name)
				}
				if entries == nil || keys == nil {
					t.Errorf("schema missing: outbox_entries=%v outbox_processed_keys=%v", entries, keys)
				}
				if got := outboxtest.Count(t, db.Pool, ""); got != 0 {
					t.Fatalf("fresh database has %d entries, want 0 (another test's writes are visible)", got)
				}
				exec(t, db.Pool, `INSERT INTO outbox_entries (topic, key) VALUES ('isolation', $1)`, t.Name())
				es := outboxtest.Entries(t, db.Pool, "isolation")
				if len(es) != 1 || es[0].Key != t.Name() {
					t.Fatalf("entries = %+v, want only this test's", es)
				}
			})
		}
	})

	if len(names) != n || names[shared.Name] {
		t.Errorf("got %d distinct databases (shared one among them: %v), want %d others", len(names), names[shared.Name], n)
	}
	es := outboxtest.Entries(t, shared.Pool, "")
	if len(es) != 1 || es[0].Key != "outer" {
		t.Errorf("shared database entries = %+v, want only its own", es)
	}
	slices.Sort(costs)
	var sum time.Duration
	for _, c := range costs {
		sum += c
	}
	if len(costs) > 0 {
		t.Logf("database creation: first %v (may include ensuring the template); next %d: median %v, mean %v, max %v",
			firstCost.Round(time.Microsecond), len(costs), costs[len(costs)/2].Round(time.Microsecond),
			(sum / time.Duration(len(costs))).Round(time.Microsecond), costs[len(costs)-1].Round(time.Microsecond))
	}
}

func TestDatabaseDroppedAfterCleanup(t *testing.T) {
	t.Parallel()
	var name, url string
	t.Run("inner", func(t *testing.T) {
		db := outboxtest.New(t)
		name, url = db.Name, db.URL
		if !databaseExists(t, name) {
			t.Fatalf("database %s does not exist during the test", name)
		}
	})
	if databaseExists(t, name) {
		t.Errorf("database %s still exists after the test ended", name)
	}
	if conn, err := pgx.Connect(context.Background(), url); err == nil {
		conn.Close(context.Background())
		t.Errorf("connected to dropped database %s", name)
	}
}

// TestURLReachesSameDatabase checks that URL (for other processes) and SQL
// (for database/sql code) reach the database behind Pool.
func TestURLReachesSameDatabase(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()

	if !strings.Contains(db.URL, db.Name) {
		t.Errorf("URL %q does not name database %s", db.URL, db.Name)
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec(t, conn, `INSERT INTO outbox_entries (topic) VALUES ('via.url')`)

	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_entries (topic) VALUES ('via.sql')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	if got := outboxtest.Count(t, db.Pool, ""); got != 2 {
		t.Errorf("pool sees %d entries, want 2", got)
	}
}

func TestNewWithOptionsRunsAppMigrationsOnTemplate(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	opts := outboxtest.Options{
		TemplateKey: "outboxtest-selftest-app-v1",
		Migrate: func(ctx context.Context, db *sql.DB) error {
			calls.Add(1)
			_, err := db.ExecContext(ctx, `CREATE TABLE app_users (id bigint PRIMARY KEY, email text NOT NULL)`)
			return err
		},
		MaxConns: 2,
	}
	a := outboxtest.NewWithOptions(t, opts)
	b := outboxtest.NewWithOptions(t, opts)
	plain := outboxtest.New(t)

	has := func(db *outboxtest.DB, table string) bool {
		t.Helper()
		var name *string
		if err := db.Pool.QueryRow(context.Background(), "SELECT to_regclass($1)::text", table).Scan(&name); err != nil {
			t.Fatal(err)
		}
		return name != nil
	}
	for _, db := range []*outboxtest.DB{a, b} {
		if !has(db, "public.app_users") || !has(db, "public.outbox_entries") {
			t.Errorf("database %s lacks the app's or txoutbox's tables", db.Name)
		}
	}
	if has(plain, "public.app_users") {
		t.Errorf("database %s from the default template has the app's table", plain.Name)
	}
	if a.Pool.Config().MaxConns != 2 {
		t.Errorf("MaxConns = %d, want 2", a.Pool.Config().MaxConns)
	}
	// Zero calls when an earlier run already built this template.
	if c := calls.Load(); c > 1 {
		t.Errorf("Migrate ran %d times in one process, want at most once", c)
	}
}

func TestNewWithOptionsRequiresTemplateKey(t *testing.T) {
	t.Parallel()
	noop := func(context.Context, *sql.DB) error { return nil }
	f := runFake(t, func(tb testing.TB) {
		outboxtest.NewWithOptions(tb, outboxtest.Options{Migrate: noop})
	})
	requireFatal(t, f, "TemplateKey is required")
}
