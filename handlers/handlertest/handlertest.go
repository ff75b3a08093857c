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
//
// Its building blocks serve a handler's own tests as well: [StartRelay]
// runs a relay with settings fit for tests until the test ends, and the
// [Recorder] it returns lets the test wait for what the relay did with an
// entry:
//
//	db := outboxtest.New(t)
//	h := relay.NewHandlers()
//	if err := mypkg.Register(h, cfg); err != nil {
//		t.Fatal(err)
//	}
//	rec := handlertest.StartRelay(t, db.Pool, h)
//	res, err := outbox.Enqueue(ctx, db.Pool, msg)
//	if err != nil {
//		t.Fatal(err)
//	}
//	rec.Wait(t, res.ID, relay.EventDone) // fails t if it never comes
package handlertest

import (
	"context"
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
		id := enqueue(t, h, db, "conformance-1")
		ev.Wait(t, id, relay.EventDone)
		if n := h.Effects("conformance-1"); n != 1 {
			t.Fatalf("%d effects after the first delivery; want 1", n)
		}
		// Retention removed the done entry; the same key comes again.
		if _, err := db.Pool.Exec(ctx, `DELETE FROM outbox_entries WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		again := enqueue(t, h, db, "conformance-1")
		ev.Wait(t, again, relay.EventSkipped)
		if n := h.Effects("conformance-1"); n != 1 {
			t.Fatalf("%d effects after re-delivery; want still 1", n)
		}
	})
	t.Run("RetryableFailureIsRetried", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.SetMode(Retryable)
		db, ev := start(t, h, time.Minute)
		id := enqueue(t, h, db, "conformance-2")
		ev.Wait(t, id, relay.EventRetry)
		h.SetMode(OK)
		ev.Wait(t, id, relay.EventDone)
		if n := h.Effects("conformance-2"); n != 1 {
			t.Fatalf("%d effects; want 1", n)
		}
	})
	t.Run("PermanentFailureIsDeadLettered", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.SetMode(Permanent)
		db, ev := start(t, h, time.Minute)
		id := enqueue(t, h, db, "conformance-3")
		dead := ev.Wait(t, id, relay.EventDead)
		if dead.Attempt != 1 {
			t.Fatalf("dead-lettered after attempt %d; a permanent failure must not be retried", dead.Attempt)
		}
		if n := ev.Count(id, relay.EventRetry); n != 0 {
			t.Fatalf("%d retries of a permanent failure", n)
		}
	})
	t.Run("CancellationIsHonoured", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.SetMode(Hang)
		// The timeout also bounds the healthy attempt afterwards (a PDF
		// render, an SMTP session, under -race on a loaded machine), so it
		// is not short: a hung attempt is hung however long it is given.
		db, ev := start(t, h, 2*time.Second)
		id := enqueue(t, h, db, "conformance-4")
		retry := ev.Wait(t, id, relay.EventRetry)
		if retry.Err == nil {
			t.Fatal("a hung attempt reported no error")
		}
		h.SetMode(OK)
		ev.Wait(t, id, relay.EventDone)
	})
}

// enqueue enqueues the harness's entry for key, failing t if it cannot,
// and returns the entry's id.
func enqueue(t *testing.T, h Harness, db *outboxtest.DB, key string) int64 {
	t.Helper()
	id, err := h.Enqueue(context.Background(), db.Pool, key)
	if err != nil {
		t.Fatalf("Enqueue(%q): %v", key, err)
	}
	return id
}

// start makes a database and runs a relay with the harness's handler, the
// StartRelay settings and the given attempt timeout.
func start(t *testing.T, h Harness, timeout time.Duration) (*outboxtest.DB, *Recorder) {
	t.Helper()
	db := outboxtest.New(t)
	handlers := relay.NewHandlers()
	h.Register(handlers)
	rec := StartRelay(t, db.Pool, handlers, func(c *relay.Config) { c.HandlerTimeout = timeout })
	return db, rec
}
