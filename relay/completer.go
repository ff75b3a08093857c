package relay

import (
	"context"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
)

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
			r.settleBatch(batch, applied)
			return
		}
		r.observe(Event{Kind: EventError, Count: len(batch), Err: err})
		r.log.Warn("txoutbox: writing outcomes failed; retrying", "count", len(batch), "error", err, "retry_in", wait)
		if final && time.Now().After(deadline) {
			r.log.Error("txoutbox: giving up on outcomes at shutdown; their leases will expire and the entries run again",
				"count", len(batch))
			for _, c := range batch {
				r.leases.remove(c.lease)
				c.signalWritten()
			}
			return
		}
		time.Sleep(wait)
		wait = min(wait*2, 5*time.Second)
	}
}

// completeBatch writes the outcomes and, under the same lock as renewals,
// releases their leases, so a renewal never sees a settled entry as lost.
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
		r.leases.remove(c.lease)
	}
	return applied, nil
}

// settleBatch reports each outcome, releases its lease and wakes queues
// that may have new work.
func (r *Relay) settleBatch(batch []completion, applied map[int64]bool) {
	for _, c := range batch {
		ev := c.event
		if !applied[c.out.ID] {
			ev.Kind = EventFenced
			r.log.Info("txoutbox: outcome rejected: the lease was lost and the entry belongs to another attempt",
				"topic", c.claimed.Topic, "entry", c.out.ID, "attempt", c.claimed.EffectiveAttempt())
		}
		r.observe(ev)
		c.signalWritten()
		if applied[c.out.ID] {
			r.wakeAfter(c.queue, c.claimed, c.out.Delay, c.out.State)
		}
	}
}

// signalWritten releases a worker waiting for this outcome.
func (c *completion) signalWritten() {
	if c.written != nil {
		close(c.written)
	}
}
