package relay_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Payload types used across the relay tests.

type ping struct {
	N int `json:"n"`
}

func (ping) Topic() string { return "test.ping" }

type pong struct {
	N int `json:"n"`
}

func (pong) Topic() string { return "test.pong" }

type ordered struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

func (ordered) Topic() string { return "test.ordered" }

// events records observer events and lets tests wait for them.
type events struct {
	mu      sync.Mutex
	all     []relay.Event
	changed chan struct{} // closed and replaced on every event
}

func newEvents() *events { return &events{changed: make(chan struct{})} }

func (e *events) Observe(ev relay.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

func (e *events) count(kind relay.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// has reports whether an event that matches pred was recorded.
func (e *events) has(pred func(relay.Event) bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if pred(ev) {
			return true
		}
	}
	return false
}

// wait returns the first recorded event that matches pred, waiting for it
// if need be; it fails t after a generous bound (a hang guard, not a timing
// assertion).
func (e *events) wait(t testing.TB, pred func(relay.Event) bool) relay.Event {
	t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	seen := 0
	for {
		e.mu.Lock()
		for ; seen < len(e.all); seen++ {
			if pred(e.all[seen]) {
				ev := e.all[seen]
				e.mu.Unlock()
				return ev
			}
		}
		changed := e.changed
		e.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no matching relay event within the hang guard")
			return relay.Event{}
		}
	}
}

func kindIs(k relay.EventKind) func(relay.Event) bool {
	return func(e relay.Event) bool { return e.Kind == k }
}

func entryKind(id int64, k relay.EventKind) func(relay.Event) bool {
	return func(e relay.Event) bool { return e.EntryID == id && e.Kind == k }
}

// fastConfig is a Config with intervals short enough for tests.
func fastConfig(h *relay.Handlers, obs relay.Observer) relay.Config {
	return relay.Config{
		Handlers:          h,
		PollInterval:      50 * time.Millisecond,
		LeaseDuration:     5 * time.Second,
		RescueInterval:    100 * time.Millisecond,
		RetentionInterval: -1,
		ShutdownTimeout:   5 * time.Second,
		RetryPolicy:       relay.RetryPolicyFunc(func(int, error) time.Duration { return 0 }),
		Observer:          obs,
		Logger:            testLogger(),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("TXOUTBOX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startRelay runs a relay until the test ends and returns it.
func startRelay(t testing.TB, pool *pgxpool.Pool, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(pool, cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return r
}

// runRelay runs a relay until stop is called, which waits for Run to return.
func runRelay(t testing.TB, pool *pgxpool.Pool, cfg relay.Config) (stop func() error) {
	t.Helper()
	r, err := relay.New(pool, cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func enqueue(t testing.TB, pool *pgxpool.Pool, msg outbox.Message, opts ...outbox.Option) int64 {
	t.Helper()
	res, err := outbox.Enqueue(context.Background(), pool, msg, opts...)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return res.ID
}

func getEntry(t testing.TB, pool *pgxpool.Pool, id int64) *outbox.Entry {
	t.Helper()
	e, err := outbox.Get(context.Background(), pool, id)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return e
}

func scalar[T any](t testing.TB, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// logBuffer collects a relay's log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}
