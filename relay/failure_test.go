package relay_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// fakeClock is an injected clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	// Ahead of the database clock, so entries inserted with now() are due.
	return &fakeClock{now: time.Now().Add(time.Hour).Truncate(time.Millisecond).UTC()}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Fail, fail, succeed: three attempts, each retry scheduled by the policy.
func TestRetriesFollowPolicy(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	clock := newFakeClock()
	ev := newEvents()
	var calls atomic.Int64
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		if n := calls.Add(1); n != int64(e.Attempt) {
			t.Errorf("call %d saw attempt %d", n, e.Attempt)
		}
		if e.Attempt < 3 {
			return errors.New("flaky")
		}
		return nil
	}, relay.WithRetryPolicy(relay.RetryPolicyFunc(func(attempt int, err error) time.Duration {
		return time.Duration(attempt) * time.Minute
	})))
	cfg := fastConfig(h, ev)
	cfg.Now = clock.Now
	startRelay(t, db.Pool, cfg)
	id := enqueue(t, db.Pool, ping{N: 1})

	start := clock.Now()
	for _, step := range []struct {
		attempt int
		delay   time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}} {
		retry := ev.wait(t, func(e relay.Event) bool {
			return e.EntryID == id && e.Kind == relay.EventRetry && e.Attempt == step.attempt
		})
		if retry.Attempt != step.attempt || retry.RetryIn != step.delay {
			t.Fatalf("retry after attempt %d in %s; want attempt %d in %s", retry.Attempt, retry.RetryIn, step.attempt, step.delay)
		}
		e := getEntry(t, db.Pool, id)
		if e.State != outbox.StatePending || !e.RunAt.Equal(clock.Now().Add(step.delay)) || e.LastError == nil || *e.LastError != "flaky" {
			t.Fatalf("after attempt %d: state %s run_at %s last_error %v; want pending at %s", step.attempt, e.State, e.RunAt, e.LastError, clock.Now().Add(step.delay))
		}
		clock.Advance(step.delay)
	}
	done := ev.wait(t, entryKind(id, relay.EventDone))
	if done.Attempt != 3 || calls.Load() != 3 {
		t.Fatalf("done on attempt %d after %d calls; want 3", done.Attempt, calls.Load())
	}
	if got := clock.Now().Sub(start); got != 3*time.Minute {
		t.Fatalf("clock advanced %s", got)
	}
	e := getEntry(t, db.Pool, id)
	if e.State != outbox.StateDone || e.Attempt != 3 {
		t.Fatalf("final entry %+v", e)
	}
}

func TestRetryAfterHintWins(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	clock := newFakeClock()
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		return relay.RetryAfter(7*time.Minute, errors.New("429 too many requests"))
	})
	cfg := fastConfig(h, ev)
	cfg.Now = clock.Now
	startRelay(t, db.Pool, cfg)
	id := enqueue(t, db.Pool, ping{})
	retry := ev.wait(t, entryKind(id, relay.EventRetry))
	if retry.RetryIn != 7*time.Minute {
		t.Fatalf("retry in %s, want 7m", retry.RetryIn)
	}
	if e := getEntry(t, db.Pool, id); !e.RunAt.Equal(clock.Now().Add(7 * time.Minute)) {
		t.Fatalf("run_at %s", e.RunAt)
	}
}

func TestPermanentDeadLettersAtOnceAndReplayRecovers(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	var fixed atomic.Bool
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		if !fixed.Load() {
			return relay.Permanent(errors.New("address rejected"))
		}
		return nil
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{}, outbox.WithMaxAttempts(5))
	dead := ev.wait(t, entryKind(id, relay.EventDead))
	var perm *relay.PermanentError
	if dead.Attempt != 1 || !errors.As(dead.Err, &perm) {
		t.Fatalf("dead after attempt %d with %v; want attempt 1, a *PermanentError", dead.Attempt, dead.Err)
	}
	e := getEntry(t, db.Pool, id)
	if e.State != outbox.StateDead || e.LastError == nil || !strings.Contains(*e.LastError, "address rejected") || e.FinishedAt == nil {
		t.Fatalf("dead entry %+v", e)
	}

	fixed.Store(true)
	n, err := outbox.Replay(context.Background(), db.Pool, outbox.Selection{IDs: []int64{id}})
	if err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	done := ev.wait(t, entryKind(id, relay.EventDone))
	if done.Attempt != 1 {
		t.Fatalf("replayed entry done on attempt %d; want a fresh count starting at 1", done.Attempt)
	}
	if fence := scalar[int32](t, db.Pool, `SELECT attempt FROM outbox_entries WHERE id = $1`, id); fence != 2 {
		t.Fatalf("fencing token %d after two claims; it must never go back", fence)
	}
}

func TestExhaustedAttemptsDeadLetter(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	var calls atomic.Int64
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		calls.Add(1)
		return errors.New("still down")
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{}, outbox.WithMaxAttempts(3))
	dead := ev.wait(t, entryKind(id, relay.EventDead))
	if dead.Attempt != 3 || calls.Load() != 3 {
		t.Fatalf("dead at attempt %d after %d calls; want 3", dead.Attempt, calls.Load())
	}
	e := getEntry(t, db.Pool, id)
	if e.State != outbox.StateDead || e.LastError == nil || *e.LastError != "attempt 3 of 3 failed: still down" {
		t.Fatalf("dead entry: state %s, last_error %v", e.State, e.LastError)
	}
	if got := ev.count(relay.EventRetry); got != 2 {
		t.Fatalf("%d retries, want 2", got)
	}
}

func TestPanickingHandlerIsRetriedAndRelayLivesOn(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		if e.Payload.N == 1 && e.Attempt == 1 {
			var items []int
			_ = items[e.Payload.N] // index out of range: a real runtime panic
		}
		return nil
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{N: 1})
	retry := ev.wait(t, entryKind(id, relay.EventRetry))
	var pe *relay.PanicError
	if !errors.As(retry.Err, &pe) || !strings.Contains(pe.Stack, "failure_test.go") {
		t.Fatalf("retry error %v; want a *PanicError with the stack", retry.Err)
	}
	ev.wait(t, entryKind(id, relay.EventDone))
	other := enqueue(t, db.Pool, ping{N: 2})
	ev.wait(t, entryKind(other, relay.EventDone))
}

// Unknown topics are never claimed: they wait, untouched, for a relay that
// handles them, and the relay reports them.
func TestUnknownTopicWaitsForItsHandler(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.RetentionInterval = 20 * time.Millisecond
	stop := runRelay(t, db.Pool, cfg)

	unknown := enqueue(t, db.Pool, pong{N: 1})
	known := enqueue(t, db.Pool, ping{N: 1})
	ev.wait(t, entryKind(known, relay.EventDone))
	u := ev.wait(t, func(e relay.Event) bool { return e.Kind == relay.EventUnhandled && e.Topic == "test.pong" })
	if u.Count != 1 || u.Queue != "default" {
		t.Fatalf("unhandled report %+v", u)
	}
	if e := getEntry(t, db.Pool, unknown); e.State != outbox.StatePending || e.Attempt != 0 {
		t.Fatalf("unknown-topic entry was touched: %+v", e)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The report samples each queue through the claim index: an entry of
	// a queue no handler serves is reported too, and the sample finds the
	// unknown topic behind many handled entries that are not yet due.
	for i := range 50 {
		if _, err := outbox.Enqueue(t.Context(), db.Pool, ping{N: i}, outbox.WithDelay(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	lost := enqueue(t, db.Pool, ping{N: 99}, outbox.WithQueue("nobody-serves"))
	ev3 := newEvents()
	cfg3 := fastConfig(h, ev3)
	cfg3.RetentionInterval = 20 * time.Millisecond
	stop3 := runRelay(t, db.Pool, cfg3)
	ev3.wait(t, func(e relay.Event) bool {
		return e.Kind == relay.EventUnhandled && e.Topic == "test.pong" && e.Queue == "default"
	})
	ev3.wait(t, func(e relay.Event) bool {
		return e.Kind == relay.EventUnhandled && e.Topic == "test.ping" && e.Queue == "nobody-serves" && e.Count == 1
	})
	if err := stop3(); err != nil {
		t.Fatal(err)
	}
	if e := getEntry(t, db.Pool, lost); e.State != outbox.StatePending {
		t.Fatalf("entry of an unserved queue was touched: %+v", e)
	}

	// A relay that knows the topic picks it up.
	ev2 := newEvents()
	h2 := relay.NewHandlers()
	relay.Handle(h2, func(context.Context, *relay.Entry[pong]) error { return nil })
	startRelay(t, db.Pool, fastConfig(h2, ev2))
	ev2.wait(t, entryKind(unknown, relay.EventDone))
}

// A payload that does not decode is dead-lettered with the reason, at once.
func TestUndecodablePayloadDeadLetters(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error {
		t.Error("handler called with an undecodable payload")
		return nil
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, outbox.Raw{TopicName: "test.ping", Payload: []byte(`{"n": "seven"}`)})
	dead := ev.wait(t, entryKind(id, relay.EventDead))
	var de *relay.DecodeError
	if !errors.As(dead.Err, &de) || de.Topic != "test.ping" {
		t.Fatalf("dead with %v; want a *DecodeError", dead.Err)
	}
	e := getEntry(t, db.Pool, id)
	if e.State != outbox.StateDead || e.Attempt != 1 || !strings.Contains(*e.LastError, "cannot decode payload") {
		t.Fatalf("entry %+v", e)
	}
	if string(e.Payload) != `{"n": "seven"}` {
		t.Fatalf("payload changed: %s", e.Payload)
	}
}

// A payload over the relay's limit (possible through plain SQL) is
// dead-lettered, not decoded.
func TestOversizedPayloadDeadLetters(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	cfg := fastConfig(h, ev)
	cfg.MaxPayloadBytes = 64
	startRelay(t, db.Pool, cfg)
	var id int64
	err := db.Pool.QueryRow(context.Background(),
		`INSERT INTO outbox_entries (topic, payload) VALUES ('test.ping', jsonb_build_object('n', 1, 'pad', repeat('x', 200))) RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	dead := ev.wait(t, entryKind(id, relay.EventDead))
	if !errors.Is(dead.Err, relay.ErrPayloadTooLarge) {
		t.Fatalf("dead with %v; want ErrPayloadTooLarge", dead.Err)
	}
	if e := getEntry(t, db.Pool, id); !strings.Contains(*e.LastError, "payload too large") {
		t.Fatalf("last_error %q", *e.LastError)
	}
}
