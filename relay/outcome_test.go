package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// With WithOutcomeBeforeNext and one worker, an entry's outcome is committed
// before the next entry's handler starts: a handler that reads the previous
// entry's row through another connection always finds it done. Without the
// option the worker moves on while the batched completer is still writing,
// and some handlers find their predecessor still running.
func TestOutcomeBeforeNext(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	const n = 30

	var mu sync.Mutex
	var prev int64 // the entry handled last; one worker, so no overlap
	var handled int
	var notDone []string // "id:state" of predecessors found not done
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		mu.Lock()
		before := prev
		mu.Unlock()
		if before != 0 {
			var state string
			if err := db.Pool.QueryRow(ctx, `SELECT state FROM outbox_entries WHERE id = $1`, before).Scan(&state); err != nil {
				return err
			}
			if state != "done" {
				mu.Lock()
				notDone = append(notDone, fmt.Sprintf("%d:%s", before, state))
				mu.Unlock()
			}
		}
		mu.Lock()
		prev = e.ID
		handled++
		mu.Unlock()
		return nil
	}, relay.WithOutcomeBeforeNext())

	// Enqueue before the relay starts, so that every claim finds work.
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = enqueue(t, db.Pool, ping{N: i})
	}
	cfg := fastConfig(h, ev)
	cfg.Queues = map[string]relay.QueueConfig{"default": {MaxWorkers: 1}}
	startRelay(t, db.Pool, cfg)
	for _, id := range ids {
		ev.wait(t, entryKind(id, relay.EventDone))
	}

	mu.Lock()
	defer mu.Unlock()
	if handled != n {
		t.Fatalf("handler ran %d times; want %d", handled, n)
	}
	if len(notDone) > 0 {
		t.Fatalf("%d of %d handlers started before the previous entry's outcome was committed (predecessors %s)",
			len(notDone), n-1, strings.Join(notDone, " "))
	}
}

// A worker waiting for its outcome does not hold up shutdown: the handler
// returns while the outcome's write is blocked, the relay is stopped, the
// write goes through, and Run returns with the entry done.
func TestOutcomeBeforeNextShutdown(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	ev := newEvents()

	started := make(chan int64, 1)
	proceed := make(chan struct{})
	h := relay.NewHandlers()
	relay.Handle(h, func(_ context.Context, e *relay.Entry[ping]) error {
		started <- e.ID
		<-proceed
		return nil
	}, relay.WithOutcomeBeforeNext())

	cfg := fastConfig(h, ev)
	cfg.Queues = map[string]relay.QueueConfig{"default": {MaxWorkers: 1}}
	// No renewal during the test: the only write the lock below can block
	// is the outcome's.
	cfg.LeaseDuration = time.Minute
	stopping := make(chan struct{})
	cfg.Logger = slog.New(newOnMessage(cfg.Logger.Handler(), "txoutbox: relay stopping", stopping))
	r, err := relay.New(db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	id := enqueue(t, db.Pool, ping{})
	select {
	case got := <-started:
		if got != id {
			t.Fatalf("handler got entry %d; want %d", got, id)
		}
	case <-time.After(hangGuard):
		t.Fatal("handler not called within the hang guard")
	}
	// Lock the entry's row (the claim has committed it running), so the
	// completer's write waits for the lock while the worker waits for the
	// write; then let the handler return.
	locker, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = locker.Rollback(ctx) }()
	var lockerPID int32
	if err := locker.QueryRow(ctx, `SELECT pg_backend_pid() FROM outbox_entries WHERE id = $1 FOR UPDATE`, id).Scan(&lockerPID); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	waitBlockedBy(t, db.Pool, lockerPID)

	cancel()
	select {
	case <-stopping:
	case <-time.After(hangGuard):
		t.Fatal("relay not stopping within the hang guard")
	}
	if err := locker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Run did not return within the hang guard")
	}
	if e := getEntry(t, db.Pool, id); e.State != "done" {
		t.Fatalf("entry %s after shutdown; want done", e.State)
	}
	if n := ev.count(relay.EventDone); n != 1 {
		t.Fatalf("%d done events; want 1", n)
	}
}

// onMessage is a slog.Handler that closes ch at the first record with
// message msg, and passes every record on to the handler it wraps.
type onMessage struct {
	slog.Handler
	msg  string
	ch   chan struct{}
	once *sync.Once
}

func newOnMessage(next slog.Handler, msg string, ch chan struct{}) *onMessage {
	return &onMessage{Handler: next, msg: msg, ch: ch, once: new(sync.Once)}
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }

func (h *onMessage) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	if !h.Handler.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, rec)
}

func (h *onMessage) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithAttrs(attrs)
	return &c
}

func (h *onMessage) WithGroup(name string) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithGroup(name)
	return &c
}

// waitBlockedBy waits until some backend waits for a lock held by the
// backend pid: the completer's write, here.
func waitBlockedBy(t testing.TB, pool *pgxpool.Pool, pid int32) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		var blocked bool
		err := pool.QueryRow(context.Background(),
			`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)))`, pid).Scan(&blocked)
		if err != nil {
			t.Fatal(err)
		}
		if blocked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no backend blocked on the lock within the hang guard")
		}
	}
}
