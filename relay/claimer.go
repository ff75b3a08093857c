package relay

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// claimLoop claims entries of q whenever it has room and is woken
// (notification, poll tick, freed slot after a full queue, local hint).
//
// Producers that commit while another transaction of the queue is
// notifying skip their own notification (schema version 5, docs/schema.md),
// and their entries may become visible only after the claim that answered
// the wake-up. So the loop never goes back to sleep on a claim that came
// back short unless that claim started after store.ClaimAfterCheck saw no
// producer of the queue committing: every skipped entry is then visible to
// it. While producers are committing, it asks again after a short pause
// (quietRecheckMin, doubling up to quietRecheckMax) until none is.
func (r *Relay) claimLoop(ctx context.Context, q *queue) {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	pause := time.Duration(0) // the last recheck pause; 0 after a quiet check
	failing := false
	// unknown: a claim failed after it may have committed; its entries
	// are leased to this relay, which does not know them. They are handed
	// back before the next claim, or when the loop ends.
	unknown := false
	defer func() {
		if unknown {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := store.HandBackUnknown(hctx, r.pool, q.name, r.cfg.ID, r.leases.ids()); err != nil {
				r.log.Warn("txoutbox: could not hand back the entries of a lost claim; they return when their lease expires",
					"queue", q.name, "error", err)
			}
		}
	}()
	// check: ask for committing producers before the next claim. Woken by
	// a notification or a timer, the first claim is likely to come back
	// short, so it asks first; after a freed slot it claims at once.
	check := true
	for {
		full, waiting := false, false
		for ctx.Err() == nil {
			n := min(cap(q.slots)-len(q.slots), r.cfg.ClaimBatchSize)
			if n <= 0 || (n < q.minClaim && len(q.slots) > 0) {
				// Every worker is busy and the prefetch is more than half
				// full: claim when a useful batch is free.
				full = true
				break
			}
			quiet, got, more, err := r.claimRound(ctx, q, n, check, &unknown)
			if err != nil {
				r.observe(Event{Kind: EventError, Queue: q.name, Err: err})
				if !failing {
					r.log.Warn("txoutbox: claim failed; retrying at the next poll", "queue", q.name, "error", err)
				}
				failing = true
				break
			}
			if failing {
				r.log.Info("txoutbox: claiming again", "queue", q.name)
				failing = false
			}
			if got > 0 || quiet {
				pause = 0
			}
			if got == n || more {
				check = false // more may be there: claim again at once
				continue
			}
			if quiet {
				break // every committed entry was visible to this claim
			}
			if check {
				waiting = true // a producer is committing: ask again shortly
				break
			}
			check = true
		}
		var freed chan struct{}
		if full {
			freed = q.freed
		}
		if waiting {
			pause = min(max(2*pause, quietRecheckMin), quietRecheckMax, r.cfg.PollInterval)
			recheck.Reset(pause)
		}
		check = true
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-recheck.C:
		case <-poll.C:
		case <-freed:
			check = false
		}
		recheck.Stop()
	}
}

// quietRecheckMin and quietRecheckMax bound the pause between two checks
// for producers that are still committing. The first pause is about a
// commit's disk flush: under steady load producers are committing most of
// the time, and asking every millisecond cost more than it found (their
// notifications wake the queue anyway). Only a transaction that holds its
// commit open (SET CONSTRAINTS ALL IMMEDIATE, then a long wait) keeps a
// queue at the longest pause.
const (
	quietRecheckMin = 5 * time.Millisecond
	quietRecheckMax = 50 * time.Millisecond
)

// claimRound hands back the entries of a lost claim if there are any, asks
// whether producers of q are committing (when check is set; quiet is false
// otherwise), then claims up to n entries. more reports a claim cut short
// by MaxClaimBytes: entries it picked are left for the next claim.
func (r *Relay) claimRound(ctx context.Context, q *queue, n int, check bool, unknown *bool) (quiet bool, got int, more bool, err error) {
	// Not cancelled by shutdown halfway, like the claim itself.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	if *unknown {
		handed, err := store.HandBackUnknown(cctx, r.pool, q.name, r.cfg.ID, r.leases.ids())
		if err != nil {
			return false, 0, false, err
		}
		*unknown = false
		if handed > 0 {
			r.log.Info("txoutbox: handed back the entries of a claim whose result was lost; their attempt does not count",
				"queue", q.name, "entries", handed)
		}
	}
	got, more, quiet, err = r.claim(ctx, q, n, check)
	if err != nil {
		// The claim may have committed before its result was lost.
		*unknown = true
		return false, 0, false, err
	}
	return quiet, got, more, nil
}

// errClaimResultLost is the error of a claim whose result a test dropped.
var errClaimResultLost = errors.New("claim result lost (test)")

// claimTimeout bounds one claim round's statements.
const claimTimeout = 30 * time.Second

// claim claims up to n entries and starts a handler for each. It returns
// how many it claimed, and whether MaxClaimBytes cut the claim short. With
// check, the claim is preceded, in the same round trip, by the question
// whether producers of q are committing, and quiet is the answer.
func (r *Relay) claim(ctx context.Context, q *queue, n int, check bool) (got int, more, quiet bool, err error) {
	// The claim commits on its own; it is not cancelled by shutdown halfway,
	// so that no entry ends up leased by a relay that never learned of it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	claimStart := time.Now() // leases run from before the claim, on the safe side
	params := store.ClaimParams{
		Queue:       q.name,
		Topics:      r.topics,
		Limit:       n,
		Lease:       r.cfg.LeaseDuration,
		Owner:       r.cfg.ID,
		Now:         r.now(),
		BlockOnDead: r.cfg.OrderingDeadPolicy == OrderingBlockOnDead,
		ProbeKeys:   r.probeKeys,

		MaxPayloadBytes: r.cfg.MaxPayloadBytes,
		MaxHeadersBytes: outbox.MaxHeadersBytes,
		MaxBytes:        int64(r.cfg.MaxClaimBytes),
	}
	var claimed []store.Claimed
	if check {
		claimed, more, quiet, err = store.ClaimAfterCheck(cctx, r.pool, params)
	} else {
		claimed, more, err = store.Claim(cctx, r.pool, params)
	}
	if err != nil {
		return 0, false, false, err
	}
	if len(claimed) == 0 {
		return 0, false, quiet, nil
	}
	if r.loseClaimResult != nil && r.loseClaimResult() {
		return 0, false, false, errClaimResultLost
	}
	r.observe(Event{Kind: EventClaimed, Queue: q.name, Count: len(claimed)})
	for i := range claimed {
		c := &claimed[i]
		q.slots <- struct{}{}
		r.inflight.Add(1)
		le := r.leases.add(r.workCtx, c.ID, c.Attempt, claimStart.Add(r.cfg.LeaseDuration))
		// Shutting down: give it back untouched.
		q.jobs <- job{claimed: c, lease: le, handBack: ctx.Err() != nil}
	}
	return len(claimed), more, quiet, nil
}
