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

// heartbeatLoop renews held leases every HeartbeatInterval until stop. A
// lease the database no longer grants cancels its handler at once; when the
// database is unreachable, handlers are cancelled as their local deadline
// passes, before another relay can take the entry over.
func (r *Relay) heartbeatLoop(stop <-chan struct{}) {
	// Local expiry has a loop of its own: a renewal waits for writeMu, and
	// a completion write that hangs (the database unreachable without an
	// error, up to its 30s timeout) must not keep handlers running past
	// their lease while another relay takes their entries over.
	expiryDone := make(chan struct{})
	go func() { defer close(expiryDone); r.expiryLoop(stop) }()
	defer func() { <-expiryDone }()
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		r.renew()
	}
}

// expiryLoop cancels, every HeartbeatInterval, the handlers whose lease
// passed its local deadline without a renewal, until stop.
func (r *Relay) expiryLoop(stop <-chan struct{}) {
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		r.expireLocal(r.expiryHorizon())
	}
}

// expireLocal cancels the handlers of leases whose local deadline passed
// (the last renewals failed or could not run): they are lost whatever a
// renewal would bring.
func (r *Relay) expireLocal(horizon time.Time) {
	for _, le := range r.leases.expire(horizon) {
		r.observe(Event{Kind: EventLeaseLost, EntryID: le.id, Err: ErrLeaseLost})
		r.log.Warn("txoutbox: lease expired without renewal; handler cancelled", "entry", le.id)
	}
}

func (r *Relay) renew() {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	// Only what has already passed its deadline: the leases about to be
	// renewed must not be given up for running out before the next check.
	r.expireLocal(time.Now())
	held := r.leases.renewable()
	if len(held) == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HeartbeatInterval)
	defer cancel()
	renewed, err := store.Renew(ctx, r.pool, r.now(), r.cfg.LeaseDuration, held)
	var lost []*leaseEntry
	if err != nil {
		r.observe(Event{Kind: EventError, Count: len(held), Err: err})
		r.log.Warn("txoutbox: renewing leases failed", "count", len(held), "error", err)
		lost = r.leases.expire(r.expiryHorizon())
	} else {
		lost = r.leases.settle(held, renewed, start.Add(r.cfg.LeaseDuration))
	}
	for _, le := range lost {
		r.observe(Event{Kind: EventLeaseLost, EntryID: le.id, Err: ErrLeaseLost})
		r.log.Warn("txoutbox: lease lost; handler cancelled", "entry", le.id)
	}
}

// signalWritten releases a worker waiting for this outcome.
func (c *completion) signalWritten() {
	if c.written != nil {
		close(c.written)
	}
}

// expiryHorizon is the instant against which local lease deadlines are
// checked: one HeartbeatInterval ahead, the time until the next check. A
// lease that would pass its deadline before then is given up now, so its
// handler is cancelled before the database lets another relay take the
// entry, not up to a heartbeat after.
func (r *Relay) expiryHorizon() time.Time {
	return time.Now().Add(r.cfg.HeartbeatInterval)
}
