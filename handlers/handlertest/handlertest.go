// Package handlertest is the conformance suite that every built-in handler
// passes, and that third-party handlers can run too. It drives a handler
// through a real relay and a real database (outbox/outboxtest) against the
// handler's own receiver (an HTTP server, an SMTP server, a directory) and
// checks what the design promises of every effect:
//
//   - re-delivery of an entry whose key is processed makes no second effect;
//   - a retryable failure is retried and a permanent one dead-lettered;
//   - cancellation (the attempt's timeout) is honoured: the handler returns
//     and the attempt fails instead of hanging.
package handlertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// Mode is how the receiver behind the handler answers.
type Mode int

const (
	// OK: the receiver accepts the effect.
	OK Mode = iota
	// Retryable: the receiver fails in a way the handler must retry (an
	// HTTP 503, an SMTP 451, a full disk that may clear).
	Retryable
	// Permanent: the receiver fails in a way no retry can fix (an HTTP 400,
	// an SMTP 550, an unknown template).
	Permanent
	// Hang: the receiver accepts the connection and never answers.
	Hang
)

// Harness connects the suite to one handler. Build a fresh one per call of
// the Setup function given to Run.
type Harness struct {
	// Register registers the handler under test on h, pointed at this
	// harness's receiver.
	Register func(h *relay.Handlers)

	// Enqueue writes one entry for the handler whose effect is identified
	// by key (pass it with outbox.WithKey), and returns the entry's id.
	Enqueue func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error)

	// Effects reports how many effects the receiver has seen for key.
	Effects func(key string) int

	// SetMode changes how the receiver answers from now on.
	SetMode func(Mode)
}

// Setup builds a Harness for one subtest, with its receiver started and its
// cleanup registered on t.
type Setup func(t *testing.T) Harness

// Run runs the conformance suite against the handler that setup builds.
func Run(t *testing.T, setup Setup) {
	t.Run("RedeliveryOfProcessedKeyMakesNoSecondEffect", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		db, ev := start(t, h, time.Minute)
		ctx := context.Background()
		id, err := h.Enqueue(ctx, db.Pool, "conformance-1")
		if err != nil {
			t.Fatal(err)
		}
		ev.wait(t, id, relay.EventDone)
		if n := h.Effects("conformance-1"); n != 1 {
			t.Fatalf("%d effects after the first delivery; want 1", n)
		}
		// Retention removed the done entry; the same key comes again.
		if _, err := db.Pool.Exec(ctx, `DELETE FROM outbox_entries WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		again, err := h.Enqueue(ctx, db.Pool, "conformance-1")
		if err != nil {
			t.Fatal(err)
		}
		ev.wait(t, again, relay.EventSkipped)
		if n := h.Effects("conformance-1"); n != 1 {
			t.Fatalf("%d effects after re-delivery; want still 1", n)
		}
	})
	t.Run("RetryableFailureIsRetried", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.SetMode(Retryable)
		db, ev := start(t, h, time.Minute)
		id, err := h.Enqueue(context.Background(), db.Pool, "conformance-2")
		if err != nil {
			t.Fatal(err)
		}
		ev.wait(t, id, relay.EventRetry)
		h.SetMode(OK)
		ev.wait(t, id, relay.EventDone)
		if n := h.Effects("conformance-2"); n != 1 {
			t.Fatalf("%d effects; want 1", n)
		}
	})
	t.Run("PermanentFailureIsDeadLettered", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.SetMode(Permanent)
		db, ev := start(t, h, time.Minute)
		id, err := h.Enqueue(context.Background(), db.Pool, "conformance-3")
		if err != nil {
			t.Fatal(err)
		}
		dead := ev.wait(t, id, relay.EventDead)
		if dead.Attempt != 1 {
			t.Fatalf("dead-lettered after attempt %d; a permanent failure must not be retried", dead.Attempt)
		}
		if n := ev.count(id, relay.EventRetry); n != 0 {
			t.Fatalf("%d retries of a permanent failure", n)
		}
	})
	t.Run("CancellationIsHonoured", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.SetMode(Hang)
		db, ev := start(t, h, 200*time.Millisecond)
		id, err := h.Enqueue(context.Background(), db.Pool, "conformance-4")
		if err != nil {
			t.Fatal(err)
		}
		retry := ev.wait(t, id, relay.EventRetry)
		if retry.Err == nil {
			t.Fatal("a hung attempt reported no error")
		}
		h.SetMode(OK)
		ev.wait(t, id, relay.EventDone)
	})
}

// start makes a database and runs a relay with the harness's handler, a
// zero retry delay and the given attempt timeout.
func start(t *testing.T, h Harness, timeout time.Duration) (*outboxtest.DB, *recorder) {
	t.Helper()
	db := outboxtest.New(t)
	rec := &recorder{changed: make(chan struct{})}
	handlers := relay.NewHandlers()
	h.Register(handlers)
	r, err := relay.New(db.Pool, relay.Config{
		Handlers:          handlers,
		PollInterval:      20 * time.Millisecond,
		HandlerTimeout:    timeout,
		RetentionInterval: -1,
		ShutdownTimeout:   time.Second,
		RetryPolicy:       relay.RetryPolicyFunc(func(int, error) time.Duration { return 10 * time.Millisecond }),
		Observer:          rec,
		Logger:            discard(),
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return db, rec
}

// hangGuard bounds every wait (a guard against hangs, not a timing check).
const hangGuard = time.Minute

type recorder struct {
	mu      sync.Mutex
	all     []relay.Event
	changed chan struct{}
}

func (r *recorder) Observe(e relay.Event) {
	r.mu.Lock()
	r.all = append(r.all, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) count(id int64, kind relay.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.all {
		if e.EntryID == id && e.Kind == kind {
			n++
		}
	}
	return n
}

func (r *recorder) wait(t *testing.T, id int64, kind relay.EventKind) relay.Event {
	t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	seen := 0
	for {
		r.mu.Lock()
		for ; seen < len(r.all); seen++ {
			if e := r.all[seen]; e.EntryID == id && e.Kind == kind {
				r.mu.Unlock()
				return e
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("entry %d: no %s event within %s", id, kind, hangGuard)
			return relay.Event{}
		}
	}
}
