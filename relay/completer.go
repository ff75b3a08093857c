package relay

import (
	"context"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
)

// completion is a claimed entry's outcome: on its way to the completer, or
// already decided in a transactional handler's transaction (settleTx), or
// empty but for the lease when the entry never ran (settle).
type completion struct {
	out     store.Outcome
	lease   *leaseEntry
	queue   *queue
	claimed *store.Claimed
	event   Event // emitted once the outcome is written (settle)
	// written, when not nil, is closed once the outcome was written (or
	// given up on): the worker waits for it (WithOutcomeBeforeNext).
	written chan struct{}
}

// submit hands an outcome to the completer; if the completer has already
// stopped (a handler that outlived shutdown), the outcome is settled as not
// written and the lease will expire.
func (r *Relay) submit(c completion) {
	select {
	case r.completions <- c:
	case <-r.completerDone:
		r.settle(&c, outcomeNotWritten)
	}
}

// completerLoop writes outcomes in batches: it takes whatever has queued up
// (up to CompleteBatchSize) in one statement, so the batch grows with load
// and a lone outcome is written at once.
func (r *Relay) completerLoop(stop <-chan struct{}) {
	defer close(r.completerDone)
	batch := make([]completion, 0, r.cfg.CompleteBatchSize)
	for {
		var first completion
		select {
		case first = <-r.completions:
		case <-stop:
			// Drain what is left, then stop.
			for {
				batch = batch[:0]
				r.fill(&batch)
				if len(batch) == 0 {
					return
				}
				r.flush(batch, true)
			}
		}
		batch = append(batch[:0], first)
		r.fill(&batch)
		r.flush(batch, false)
	}
}

func (r *Relay) fill(batch *[]completion) {
	for len(*batch) < r.cfg.CompleteBatchSize {
		select {
		case c := <-r.completions:
			*batch = append(*batch, c)
		default:
			return
		}
	}
}

// flush writes one batch, retrying with backoff while the database is
// unreachable. Leases stay registered (and renewed) until the write
// succeeds. In the final flush at shutdown it gives up after a bounded time;
// the leases then expire and the entries are rescued.
func (r *Relay) flush(batch []completion, final bool) {
	wait := 50 * time.Millisecond
	deadline := time.Now().Add(r.cfg.LeaseDuration)
	for {
		applied, err := r.completeBatch(batch)
		if err == nil {
			r.observe(Event{Kind: EventOutcomesWritten, Count: len(batch)})
			for i := range batch {
				how := outcomeApplied
				if !applied[batch[i].out.ID] {
					how = outcomeFenced
				}
				r.settle(&batch[i], how)
			}
			return
		}
		r.observe(Event{Kind: EventError, Count: len(batch), Err: err})
		r.log.Warn("txoutbox: writing outcomes failed; retrying", "count", len(batch), "error", err, "retry_in", wait)
		if final && time.Now().After(deadline) {
			r.log.Error("txoutbox: giving up on outcomes at shutdown; their leases will expire and the entries run again",
				"count", len(batch))
			for i := range batch {
				r.settle(&batch[i], outcomeNotWritten)
			}
			return
		}
		time.Sleep(wait)
		wait = min(wait*2, 5*time.Second)
	}
}

// completeBatch writes the outcomes and, under the same lock as renewals,
// marks their leases finishing, so a renewal never sees a written entry as
// lost before settle removes its lease.
func (r *Relay) completeBatch(batch []completion) (map[int64]bool, error) {
	outs := make([]store.Outcome, len(batch))
	for i, c := range batch {
		outs[i] = c.out
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	applied, err := store.Complete(ctx, r.pool, r.now(), outs)
	if err != nil {
		return nil, err
	}
	for _, c := range batch {
		r.leases.setFinishing(c.lease)
	}
	return applied, nil
}

// outcomeWrite says what became of an attempt's outcome; settle acts on it.
type outcomeWrite int

const (
	// outcomeApplied: the outcome was written and changed the entry, by
	// the completer or in a transactional handler's transaction.
	outcomeApplied outcomeWrite = iota + 1
	// outcomeFenced: the write was rejected, because the lease was lost
	// and the entry belongs to another attempt; nothing changed.
	outcomeFenced
	// outcomeNotWritten: nothing was or will be written: the lease was
	// lost before the handler ran, or the outcome was given up at
	// shutdown. The lease expires and the entry runs again; the loss was
	// reported when it happened (EventLeaseLost, EventError).
	outcomeNotWritten
)

// settle is the one exit of a claimed entry. Every path ends here once it
// is known whether its outcome was written: a batched outcome (done, retry,
// dead, skipped, handed back), a transactional attempt that committed its
// own completion or was fenced off inside its transaction, a lease lost
// before the handler ran, and an outcome given up at shutdown. It drops
// the lease, reports the outcome, releases a worker waiting for it
// (WithOutcomeBeforeNext) and wakes the queue when the outcome may make
// work runnable soon. Outcome notifications (outbox.ProgressChannel) are
// sent by the statements that write them. The worker's slot is not freed
// here but by the worker when it moves on (work): with batched outcomes
// that is before the write.
func (r *Relay) settle(c *completion, how outcomeWrite) {
	r.leases.remove(c.lease)
	switch how {
	case outcomeApplied:
		r.observe(c.event)
	case outcomeFenced:
		ev := c.event
		ev.Kind = EventFenced
		r.log.Info("txoutbox: outcome rejected: the lease was lost and the entry belongs to another attempt",
			"topic", c.claimed.Topic, "entry", c.out.ID, "attempt", c.claimed.EffectiveAttempt())
		r.observe(ev)
	}
	c.signalWritten()
	if how == outcomeApplied {
		r.wakeAfter(c.queue, c.claimed, c.out.Delay, c.out.State)
	}
}

// signalWritten releases a worker waiting for this outcome.
func (c *completion) signalWritten() {
	if c.written != nil {
		close(c.written)
	}
}

// wakeAfter nudges the entry's queue when its outcome may make more work
// runnable soon: the next entry of its ordering key, or a near retry.
func (r *Relay) wakeAfter(q *queue, c *store.Claimed, delay time.Duration, state string) {
	if q == nil {
		return
	}
	switch {
	case state == store.StatePending && delay < r.cfg.PollInterval:
		if delay <= 0 {
			q.signal(q.wake)
			return
		}
		time.AfterFunc(delay, func() { q.signal(q.wake) })
	case c.OrderingKey != nil:
		q.signal(q.wake)
	}
}
