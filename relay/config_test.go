package relay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

type emptyTopic struct{}

func (emptyTopic) Topic() string { return "" }

type ptrTopic struct{ name *string }

func (p *ptrTopic) Topic() string { return *p.name }

func TestInvalidConfigIsATypedError(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	noop := func(context.Context, *relay.Entry[ping]) error { return nil }
	handlers := func() *relay.Handlers {
		h := relay.NewHandlers()
		relay.Handle(h, noop)
		return h
	}
	dup := handlers()
	relay.Handle(dup, noop)
	empty := relay.NewHandlers()
	relay.Handle(empty, func(context.Context, *relay.Entry[emptyTopic]) error { return nil })
	nilFn := relay.NewHandlers()
	relay.Handle[ping](nilFn, nil)
	panicky := relay.NewHandlers()
	relay.Handle(panicky, func(context.Context, *relay.Entry[*ptrTopic]) error { return nil })

	for _, tc := range []struct {
		name  string
		cfg   relay.Config
		field string
	}{
		{"no handlers", relay.Config{}, "Handlers"},
		{"empty registry", relay.Config{Handlers: relay.NewHandlers()}, "Handlers"},
		{"duplicate topic", relay.Config{Handlers: dup}, "handler"},
		{"empty topic", relay.Config{Handlers: empty}, "handler"},
		{"nil handler func", relay.Config{Handlers: nilFn}, "handler"},
		{"Topic panics on zero value", relay.Config{Handlers: panicky}, "handler"},
		{"negative poll", relay.Config{Handlers: handlers(), PollInterval: -time.Second}, "PollInterval"},
		{"tiny lease", relay.Config{Handlers: handlers(), LeaseDuration: 50 * time.Millisecond}, "LeaseDuration"},
		{"heartbeat not below lease", relay.Config{Handlers: handlers(), LeaseDuration: time.Second, HeartbeatInterval: time.Second}, "HeartbeatInterval"},
		{"heartbeat over a third of the lease", relay.Config{Handlers: handlers(), LeaseDuration: 900 * time.Millisecond, HeartbeatInterval: 301 * time.Millisecond}, "HeartbeatInterval"},
		{"too many workers", relay.Config{Handlers: handlers(), Queues: map[string]relay.QueueConfig{"default": {MaxWorkers: 20000}}}, "Queues"},
		{"no queues", relay.Config{Handlers: handlers(), Queues: map[string]relay.QueueConfig{}}, "Queues"},
		{"empty queue name", relay.Config{Handlers: handlers(), Queues: map[string]relay.QueueConfig{"": {}}}, "Queues"},
		{"claim batch too big", relay.Config{Handlers: handlers(), ClaimBatchSize: 5000}, "ClaimBatchSize"},
		{"keys kept shorter than done rows", relay.Config{Handlers: handlers(), DoneRetention: 48 * time.Hour, ProcessedKeyRetention: time.Hour}, "ProcessedKeyRetention"},
		{"unknown ordering policy", relay.Config{Handlers: handlers(), OrderingDeadPolicy: 9}, "OrderingDeadPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := relay.New(pool, tc.cfg)
			if !errors.Is(err, relay.ErrInvalidConfig) {
				t.Fatalf("New: %v; want ErrInvalidConfig", err)
			}
			var ce *relay.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("New: %v; want a *ConfigError for field %s", err, tc.field)
			}
		})
	}
	if _, err := relay.New(nil, relay.Config{Handlers: handlers()}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Fatalf("nil pool: %v", err)
	}
	if _, err := relay.New(pool, relay.Config{Handlers: handlers()}); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// A database that cannot be reached, or that lacks the schema, makes Run
// return a clear error at once instead of spinning.
func TestRunRefusesUnusableDatabase(t *testing.T) {
	t.Parallel()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?connect_timeout=2")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		r, err := relay.New(pool, relay.Config{Handlers: h, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "database not usable") {
			t.Fatalf("Run: %v", err)
		}
	})
	// Stopped while checking the database (a SIGTERM right after start):
	// nothing was claimed, so it is a clean stop, not a failure.
	t.Run("stopped while checking", func(t *testing.T) {
		t.Parallel()
		db := outboxtest.New(t)
		ctx := context.Background()
		// The check cannot finish: another transaction holds the table.
		lock, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = lock.Rollback(ctx) }()
		if _, err := lock.Exec(ctx, `LOCK TABLE outbox_entries IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		r, err := relay.New(db.Pool, relay.Config{Handlers: h, Logger: testLogger(), DisableListen: true})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		waitUntil(t, "Run's check to wait for the table lock", func() bool {
			var waiting bool
			err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
				WHERE relation = 'outbox_entries'::regclass AND NOT granted)`).Scan(&waiting)
			return err == nil && waiting
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run stopped while checking the database: %v, want nil", err)
		}
	})
	t.Run("not migrated", func(t *testing.T) {
		t.Parallel()
		db := outboxtest.New(t)
		if _, err := db.Pool.Exec(context.Background(), `DROP TABLE outbox_entries, outbox_processed_keys`); err != nil {
			t.Fatal(err)
		}
		r, err := relay.New(db.Pool, relay.Config{Handlers: h, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(context.Background()); !errors.Is(err, relay.ErrNotMigrated) {
			t.Fatalf("Run: %v; want ErrNotMigrated", err)
		}
	})
	t.Run("migrated only to version 2", func(t *testing.T) {
		t.Parallel()
		db := outboxtest.New(t)
		// What migration 3 adds, undone by hand (as its Down script does).
		if _, err := db.Pool.Exec(context.Background(), `ALTER TABLE outbox_entries DROP COLUMN key_generated`); err != nil {
			t.Fatal(err)
		}
		r, err := relay.New(db.Pool, relay.Config{Handlers: h, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(context.Background()); !errors.Is(err, relay.ErrNotMigrated) {
			t.Fatalf("Run: %v; want ErrNotMigrated", err)
		}
	})
	t.Run("migrated only to version 4", func(t *testing.T) {
		t.Parallel()
		db := outboxtest.New(t)
		// What migration 5 adds to the table, undone by hand (as its Down
		// script does): the relay needs version 5's wake-up trigger.
		if _, err := db.Pool.Exec(context.Background(), `ALTER TABLE outbox_entries DROP CONSTRAINT outbox_entries_headers_check`); err != nil {
			t.Fatal(err)
		}
		r, err := relay.New(db.Pool, relay.Config{Handlers: h, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		if !errors.Is(err, relay.ErrNotMigrated) || !strings.Contains(err.Error(), "older than version 5") {
			t.Fatalf("Run: %v; want ErrNotMigrated naming version 5", err)
		}
	})
	t.Run("already running", func(t *testing.T) {
		t.Parallel()
		db := outboxtest.New(t)
		ev := newEvents()
		r := startRelay(t, db.Pool, fastConfig(h, ev))
		ev.wait(t, kindIs(relay.EventListenerUp))
		if err := r.Run(context.Background()); !errors.Is(err, relay.ErrAlreadyRunning) {
			t.Fatalf("second Run: %v", err)
		}
	})
}

func TestExponentialRetry(t *testing.T) {
	t.Parallel()
	p := relay.ExponentialRetry{Initial: time.Second, Multiplier: 2, Max: 10 * time.Second, Jitter: -1}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := p.RetryDelay(i+1, nil); got != w {
			t.Fatalf("attempt %d: %s, want %s", i+1, got, w)
		}
	}
	jittered := relay.ExponentialRetry{} // defaults: 1s doubling, 25% jitter
	for range 100 {
		if d := jittered.RetryDelay(3, nil); d < 3*time.Second || d > 5*time.Second {
			t.Fatalf("attempt 3 with 25%% jitter: %s outside [3s, 5s]", d)
		}
	}
	if d := jittered.RetryDelay(1000, nil); d > time.Hour+15*time.Minute {
		t.Fatalf("attempt 1000: %s, want capped near 1h", d)
	}
}
