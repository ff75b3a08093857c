package rabbitmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// hangGuard bounds every wait in these tests: a guard against hangs, never
// a timing assertion.
const hangGuard = 2 * time.Minute

// newPublisher builds a publisher closed at cleanup.
func newPublisher(t testing.TB, cfg rabbitmq.Config) *rabbitmq.Publisher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := rabbitmq.New(cfg)
	if err != nil {
		t.Fatalf("rabbitmq.New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// runRelay makes a database and runs a relay (handlertest.StartRelay)
// publishing topics with p.
func runRelay(t *testing.T, p *rabbitmq.Publisher, topics []string, opts ...func(*relay.Config)) (*outboxtest.DB, *handlertest.Recorder) {
	t.Helper()
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	if err := rabbitmq.Register(h, p, topics); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return db, handlertest.StartRelay(t, db.Pool, h, opts...)
}

// relayRun is a relay that the test stops (and may start again) itself.
type relayRun struct {
	stop func()
}

// startRelay runs a relay on pool publishing topics with p until stop is
// called (or the test ends).
func startRelay(t *testing.T, pool *pgxpool.Pool, p *rabbitmq.Publisher, topics []string, rec *handlertest.Recorder) *relayRun {
	t.Helper()
	h := relay.NewHandlers()
	if err := rabbitmq.Register(h, p, topics); err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(pool, relay.Config{
		Handlers:          h,
		PollInterval:      20 * time.Millisecond,
		RetentionInterval: -1,
		ShutdownTimeout:   5 * time.Second,
		RetryPolicy:       relay.RetryPolicyFunc(func(int, error) time.Duration { return 10 * time.Millisecond }),
		Observer:          rec,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	run := &relayRun{stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay.Run: %v", err)
			}
		})
	}}
	t.Cleanup(run.stop)
	return run
}

// enqueue writes one raw entry, failing t on an error.
func enqueue(t testing.TB, pool *pgxpool.Pool, topic, payload string, opts ...outbox.Option) int64 {
	t.Helper()
	res, err := outbox.Enqueue(context.Background(), pool, outbox.Raw{TopicName: topic, Payload: json.RawMessage(payload)}, opts...)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return res.ID
}

// waitFor polls cond until it holds, failing t after hangGuard.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getEntry reads an entry back.
func getEntry(t testing.TB, pool *pgxpool.Pool, id int64) *outbox.Entry {
	t.Helper()
	e, err := outbox.Get(context.Background(), pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newDB makes a database for t.
func newDB(t *testing.T) *outboxtest.DB {
	t.Helper()
	return outboxtest.New(t)
}
