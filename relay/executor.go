package relay

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// maxErrorLen bounds the error text stored in last_error.
const maxErrorLen = 4096

// errFenced reports that a transactional handler's completion found its
// lease gone; everything it wrote was rolled back.
var errFenced = errors.New("lease lost before completion; rolled back")

// job is one claimed entry for a worker: run it, or hand it back.
type job struct {
	claimed  *store.Claimed
	lease    *leaseEntry
	handBack bool
}

// work runs q's jobs until the channel closes, freeing a slot of q after
// each. Long-lived workers keep their grown stacks; a goroutine per entry
// paid for growing one each time.
func (r *Relay) work(q *queue) {
	for j := range q.jobs {
		switch {
		case j.handBack || r.stopping.Load(): // not started: give it back
			r.submit(handBackOf(q, j.claimed, j.lease))
		case j.lease.ctx.Err() != nil:
			// Lost while it waited for a worker (claimed ahead behind a
			// slow handler): another relay may be running it now.
			r.settle(&completion{lease: j.lease, queue: q, claimed: j.claimed}, outcomeNotWritten)
		default:
			r.execute(q, j.claimed, j.lease)
		}
		r.release(q)
	}
}

// execute runs one claimed entry and submits its outcome, or settles it
// when a transactional handler's transaction decided it.
func (r *Relay) execute(q *queue, c *store.Claimed, le *leaseEntry) {
	h := r.cfg.Handlers.byTopic[c.Topic]
	base := Event{Queue: c.Queue, Topic: c.Topic, EntryID: c.ID, Attempt: c.EffectiveAttempt()}

	if h == nil { // not possible: claims filter by registered topics
		r.submit(r.decide(nil, c, le, Permanent(fmt.Errorf("no handler for topic %q", c.Topic)), nil, base))
		return
	}
	// A generated key cannot repeat: nothing to look up or record.
	dedupe := !h.opts.noDedupe && !c.KeyGenerated
	if dedupe && c.Processed {
		e := base
		e.Kind = EventSkipped
		r.submit(completion{out: store.Outcome{ID: c.ID, Attempt: c.Attempt, State: store.StateDone}, lease: le, queue: q, claimed: c, event: e})
		return
	}
	if err := r.checkSize(c); err != nil {
		r.submit(r.decide(h, c, le, Permanent(err), nil, base))
		return
	}

	if h.tx {
		// A connection of the pool for the whole handler, taken only while
		// one is left over for the relay's own statements (txSlotsFor).
		// Waiting for it is not part of the attempt: not timed, not
		// started, and given back without counting if the relay stops.
		select {
		case r.txSlots <- struct{}{}:
			defer func() { <-r.txSlots }()
		case <-le.ctx.Done():
			if errors.Is(context.Cause(le.ctx), ErrShutdown) || r.stopping.Load() {
				r.submit(handBackOf(q, c, le))
				return
			}
			// The lease was lost while it waited: another relay may run
			// it now, and nothing ran here.
			r.settle(&completion{lease: le, queue: q, claimed: c}, outcomeNotWritten)
			return
		}
	}

	timeout := r.cfg.HandlerTimeout
	if h.opts.timeout > 0 {
		timeout = h.opts.timeout
	}
	ctx, cancel := context.WithTimeoutCause(le.ctx, timeout, ErrHandlerTimeout)
	defer cancel()

	started := base
	started.Kind = EventStarted
	r.observe(started)
	var end func(string, error)
	if r.cfg.Tracer != nil {
		ctx, end = r.cfg.Tracer.StartAttempt(ctx, attemptEntry(c))
	}
	start := time.Now()
	run := &attemptRun{claimed: c}
	var err error
	if h.tx {
		var finished bool
		finished, err = r.runTx(ctx, h, run, le, dedupe)
		base.Duration = time.Since(start)
		if finished || errors.Is(err, errFenced) {
			r.settleTx(q, c, le, err, base, end)
			return
		}
	} else {
		err = r.invoke(ctx, h, run)
		base.Duration = time.Since(start)
	}
	comp := r.decide(h, c, le, err, run.result, base)
	endAttempt(end, comp.event.Kind, err)
	if h.opts.syncDone {
		comp.written = make(chan struct{})
	}
	r.submit(comp)
	if comp.written != nil {
		select {
		case <-comp.written:
		case <-r.completerDone:
		}
	}
}

// settleTx settles a transactional attempt whose outcome its own
// transaction decided: the completion committed with the handler's writes
// (err nil, or errSkipped when the key was already processed), or it was
// fenced off and everything rolled back (errFenced). Nothing is left for
// the completer.
func (r *Relay) settleTx(q *queue, c *store.Claimed, le *leaseEntry, err error, ev Event, end func(string, error)) {
	comp := completion{
		out:     store.Outcome{ID: c.ID, Attempt: c.Attempt, State: store.StateDone},
		lease:   le,
		queue:   q,
		claimed: c,
		event:   ev,
	}
	how := outcomeApplied
	switch {
	case errors.Is(err, errFenced):
		comp.event.Kind, comp.event.Err = EventFenced, err
		how = outcomeFenced
	case errors.Is(err, errSkipped):
		comp.event.Kind = EventSkipped
	default:
		comp.event.Kind = EventDone
	}
	endAttempt(end, comp.event.Kind, comp.event.Err)
	r.settle(&comp, how)
}

// release frees q's worker slot.
func (r *Relay) release(q *queue) {
	<-q.slots
	q.signal(q.freed)
	r.inflight.Done()
}

// handBackOf is the outcome of an entry that did not run because the relay
// is stopping: back to pending, the attempt not counted.
func handBackOf(q *queue, c *store.Claimed, le *leaseEntry) completion {
	return completion{
		out:     store.Outcome{ID: c.ID, Attempt: c.Attempt, State: store.StatePending, Handback: true},
		lease:   le,
		queue:   q,
		claimed: c,
		event:   Event{Kind: EventHandedBack, Queue: c.Queue, Topic: c.Topic, EntryID: c.ID, Attempt: c.EffectiveAttempt()},
	}
}

// invoke calls the handler, turning a panic into a *PanicError.
func (r *Relay) invoke(ctx context.Context, h *handler, run *attemptRun) (err error) {
	defer func() {
		if v := recover(); v != nil {
			pe := &PanicError{Value: v, Stack: string(debug.Stack())}
			r.log.Error("txoutbox: handler panicked", "topic", h.topic, "entry", run.claimed.ID, "panic", v, "stack", pe.Stack)
			err = pe
		}
	}()
	return h.invoke(ctx, run)
}

// errSkipped reports that a transactional entry's key was already processed.
var errSkipped = errors.New("already processed")

// runTx runs a transactional handler. finished reports that the entry's
// completion committed with the handler's writes (err is then nil or
// errSkipped); otherwise err says why nothing was committed.
func (r *Relay) runTx(ctx context.Context, h *handler, run *attemptRun, le *leaseEntry, dedupe bool) (finished bool, err error) {
	c := run.claimed
	tx, err := r.pool.Begin(ctx) // the caller holds a slot of r.txSlots
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rbCtx) // no-op after a commit
	}()
	skipped := false
	if dedupe {
		fresh, err := store.MarkProcessed(ctx, tx, r.now(), c.Topic, c.Key, c.ID, nil)
		if err != nil {
			return false, err
		}
		skipped = !fresh
	}
	if !skipped {
		run.tx = tx
		if err := r.invoke(ctx, h, run); err != nil {
			return false, err
		}
		if run.result != nil && dedupe {
			if err := store.SetProcessedResult(ctx, tx, c.Topic, c.Key, run.result); err != nil {
				return false, err
			}
		}
	}
	// From here on the lease must not be renewed (the row is ours to
	// update) and the handler's cancellation must not abort the commit.
	r.leases.setFinishing(le)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	ok, err := store.CompleteOneTx(fctx, tx, r.now(), c.ID, c.Attempt, run.result)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, errFenced
	}
	if err := tx.Commit(fctx); err != nil {
		// If the commit did happen, the retry outcome is fenced off by the
		// state check; if not, the entry is retried. Either way it is safe.
		return false, fmt.Errorf("commit: %w", err)
	}
	if skipped {
		return true, errSkipped
	}
	return true, nil
}

// decide turns an attempt's error into an outcome.
func (r *Relay) decide(h *handler, c *store.Claimed, le *leaseEntry, err error, result []byte, ev Event) completion {
	out := store.Outcome{ID: c.ID, Attempt: c.Attempt}
	comp := completion{lease: le, claimed: c, queue: r.queues[c.Queue]}
	if err == nil {
		out.State = store.StateDone
		out.Result = result
		out.RecordKey = h != nil && !h.opts.noDedupe && !c.KeyGenerated
		ev.Kind = EventDone
		comp.out, comp.event = out, ev
		return comp
	}
	ev.Err = err
	msg := truncate(err.Error())
	out.Error = &msg
	if errors.Is(context.Cause(le.ctx), ErrShutdown) {
		out.State = store.StatePending
		out.Handback = true
		out.Error = nil
		ev.Kind = EventHandedBack
		comp.out, comp.event = out, ev
		return comp
	}
	var perm *PermanentError
	var dec *DecodeError
	attempt := c.EffectiveAttempt()
	switch {
	case errors.As(err, &perm), errors.As(err, &dec):
		out.State = store.StateDead
		ev.Kind = EventDead
	case attempt >= int(c.MaxAttempts):
		out.State = store.StateDead
		msg = truncate(fmt.Sprintf("attempt %d of %d failed: %s", attempt, c.MaxAttempts, err))
		out.Error = &msg
		ev.Kind = EventDead
	default:
		var after *RetryAfterError
		var delay time.Duration
		if errors.As(err, &after) {
			delay = after.After
		} else {
			policy := r.cfg.RetryPolicy
			if h != nil && h.opts.retry != nil {
				policy = h.opts.retry
			}
			delay = max(policy.RetryDelay(attempt, err), 0)
		}
		out.State = store.StatePending
		out.Delay = delay
		ev.Kind = EventRetry
		ev.RetryIn = delay
	}
	if ev.Kind == EventDead {
		r.log.Warn("txoutbox: entry dead-lettered", "topic", c.Topic, "entry", c.ID, "attempt", attempt, "error", msg)
	}
	comp.out, comp.event = out, ev
	return comp
}

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	return s[:maxErrorLen-3] + "..."
}

// checkSize reports an entry over the relay's payload limit or over
// outbox.MaxHeadersBytes of headers. The claim measured both in the
// database and fetched neither for such an entry.
func (r *Relay) checkSize(c *store.Claimed) error {
	if int(c.PayloadBytes) > r.cfg.MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, over the relay's limit of %d (not fetched)", ErrPayloadTooLarge, c.PayloadBytes, r.cfg.MaxPayloadBytes)
	}
	if int(c.HeadersBytes) > outbox.MaxHeadersBytes {
		return fmt.Errorf("%w: headers of %d bytes, over the limit of %d (not fetched)", ErrPayloadTooLarge, c.HeadersBytes, outbox.MaxHeadersBytes)
	}
	return nil
}
