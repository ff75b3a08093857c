package handlertest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/relay"
)

// WaitLimit bounds every [Recorder.Wait]: a guard against a test that
// would otherwise hang, never a timing assertion.
const WaitLimit = time.Minute

// The settings of StartRelay, before its options.
const (
	testPollInterval    = 20 * time.Millisecond
	testRetryDelay      = 10 * time.Millisecond
	testShutdownTimeout = time.Second
)

// StartRelay runs a relay on pool with the handlers h until the test ends,
// and returns a [Recorder] of its events. Its configuration suits tests:
//
//   - PollInterval 20ms, so that entries are claimed at once;
//   - every retry 10ms after the failure (RetryPolicy; a handler's own
//     policy, or its Retry-After, still wins);
//   - no retention (RetentionInterval -1), so that finished entries stay
//     for the test to read;
//   - ShutdownTimeout 1s and a Logger that discards everything;
//   - the Recorder as Observer.
//
// Each opt then edits the configuration; for example
// func(c *relay.Config) { c.RetryPolicy = nil } restores the relay's
// default retry policy. An opt that sets Observer adds to the Recorder:
// both see every event, that Observer first.
//
// StartRelay fails t at once if relay.New refuses the configuration. At
// t's cleanup it stops the relay, waits for Run to return and reports an
// error from Run with t.Errorf. Cleanups run last-registered first, so
// make the database (outboxtest.New) and the handler's receiver before
// calling StartRelay: the relay then stops before they go away.
func StartRelay(t testing.TB, pool *pgxpool.Pool, h *relay.Handlers, opts ...func(*relay.Config)) *Recorder {
	t.Helper()
	rec := NewRecorder()
	cfg := relay.Config{
		Handlers:          h,
		PollInterval:      testPollInterval,
		RetentionInterval: -1,
		ShutdownTimeout:   testShutdownTimeout,
		RetryPolicy:       relay.RetryPolicyFunc(func(int, error) time.Duration { return testRetryDelay }),
		Observer:          rec,
		Logger:            slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	if other := cfg.Observer; other == nil {
		cfg.Observer = rec
	} else if other != relay.Observer(rec) {
		cfg.Observer = relay.ObserverFunc(func(e relay.Event) {
			other.Observe(e)
			rec.Observe(e)
		})
	}
	r, err := relay.New(pool, cfg)
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
	return rec
}

// Recorder is a relay.Observer that keeps every event the relay reports,
// for a test to wait on and count. It is safe for concurrent use. The zero
// value is ready to use; so is [NewRecorder]'s result.
type Recorder struct {
	mu      sync.Mutex
	all     []relay.Event
	changed chan struct{} // closed and replaced at every event; nil until needed
}

// NewRecorder returns an empty Recorder. Pass it as relay.Config.Observer,
// or let [StartRelay] make one.
func NewRecorder() *Recorder { return &Recorder{} }

// Observe records e and wakes every Wait.
func (r *Recorder) Observe(e relay.Event) {
	r.mu.Lock()
	r.all = append(r.all, e)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	r.mu.Unlock()
}

// Events returns a copy of the events recorded so far, in the order the
// relay reported them.
func (r *Recorder) Events() []relay.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relay.Event(nil), r.all...)
}

// Count returns how many events of kind have been recorded so far for the
// entry with id entryID.
func (r *Recorder) Count(entryID int64, kind relay.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.all {
		if e.EntryID == entryID && e.Kind == kind {
			n++
		}
	}
	return n
}

// Wait returns the first event of kind recorded for the entry with id
// entryID, waiting for it if none has come yet. It fails t (t.Fatalf) when
// none comes within [WaitLimit]; call it from the test's goroutine.
func (r *Recorder) Wait(t testing.TB, entryID int64, kind relay.EventKind) relay.Event {
	t.Helper()
	deadline := time.NewTimer(WaitLimit)
	defer deadline.Stop()
	seen := 0
	for {
		r.mu.Lock()
		for ; seen < len(r.all); seen++ {
			if e := r.all[seen]; e.EntryID == entryID && e.Kind == kind {
				r.mu.Unlock()
				return e
			}
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("entry %d: no %s event within %s", entryID, kind, WaitLimit)
			return relay.Event{}
		}
	}
}
