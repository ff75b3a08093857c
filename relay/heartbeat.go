package relay

import (
	"context"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
)

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
	go func() {
		defer close(expiryDone)
		// Local expiry: cancel the handlers whose lease passed its local
		// deadline without a renewal.
		r.everyHeartbeat(stop, func() { r.expireLocal(r.expiryHorizon()) })
	}()
	defer func() { <-expiryDone }()
	r.everyHeartbeat(stop, r.renew)
}

// everyHeartbeat calls fn every HeartbeatInterval until stop.
func (r *Relay) everyHeartbeat(stop <-chan struct{}, fn func()) {
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		fn()
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

// expiryHorizon is the instant against which local lease deadlines are
// checked: one HeartbeatInterval ahead, the time until the next check. A
// lease that would pass its deadline before then is given up now, so its
// handler is cancelled before the database lets another relay take the
// entry, not up to a heartbeat after.
func (r *Relay) expiryHorizon() time.Time {
	return time.Now().Add(r.cfg.HeartbeatInterval)
}
