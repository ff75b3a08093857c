package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// raw empties a backlog of Entries with the relay's claim and completion
// statements and no relay: once from one loop (claim a batch, complete
// it, repeat: "per_sec"), once from two loops on two connections, a
// claimer feeding a completer as in the relay ("per_sec_2").
func (r *Runner) raw(ctx context.Context) (Result, error) {
	n := r.cfg.Entries
	single, err := r.rawOnce(ctx, false)
	if err != nil {
		return Result{}, fmt.Errorf("one loop: %w", err)
	}
	piped, err := r.rawOnce(ctx, true)
	if err != nil {
		return Result{}, fmt.Errorf("two loops: %w", err)
	}
	var res Result
	res.setting("entries", float64(n), 0)
	r.relaySettings(&res)
	res.measure("seconds", single.Seconds(), 3)
	res.measure("per_sec", float64(n)/single.Seconds(), 1)
	res.measure("seconds_2", piped.Seconds(), 3)
	res.measure("per_sec_2", float64(n)/piped.Seconds(), 1)
	return res, nil
}

// claimParams is what the relay's claim loop passes for the default queue
// with the bench's one handler and the default configuration.
func (r *Runner) claimParams(owner string) store.ClaimParams {
	return store.ClaimParams{
		Queue:  outbox.DefaultQueue,
		Topics: r.handlers.Topics(),
		// The relay claims min(free workers, ClaimBatchSize).
		Limit: min(r.eff.Workers, r.eff.ClaimBatch),
		Lease: RelayDefaultLease,
		Owner: owner,
		// The relay probes processed keys when a handler uses them, as a
		// handler with default options does.
		ProbeKeys: true,
	}
}

// outcome is the completion the relay writes for a claimed entry whose
// no-op handler returned nil, with default handler options: done, with
// the processed key recorded unless the key was generated (it cannot
// repeat) or the claim found it already processed (the relay then skips
// the handler and records nothing).
func outcome(c *store.Claimed) store.Outcome {
	return store.Outcome{ID: c.ID, Attempt: c.Attempt, State: store.StateDone, RecordKey: !c.KeyGenerated && !c.Processed}
}

// rawOnce writes Entries pending entries untimed, then times emptying
// them with one loop or, pipelined, two.
func (r *Runner) rawOnce(ctx context.Context, pipelined bool) (time.Duration, error) {
	if err := r.clean(ctx); err != nil {
		return 0, err
	}
	if err := r.insertPending(ctx, r.cfg.Entries); err != nil {
		return 0, err
	}
	if err := r.settle(ctx); err != nil {
		return 0, err
	}
	mode := "one loop"
	if pipelined {
		mode = "two loops"
	}
	r.log.Info("bench: raw: claiming and completing", "entries", r.cfg.Entries, "mode", mode)
	owner := fmt.Sprintf("txoutbox-bench-raw-%d", os.Getpid())
	t0 := time.Now()
	var done int
	var err error
	if pipelined {
		done, err = r.rawPipelined(ctx, owner)
	} else {
		done, err = r.rawLoop(ctx, owner)
	}
	elapsed := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if done != r.cfg.Entries {
		return 0, fmt.Errorf("completed %d of %d entries", done, r.cfg.Entries)
	}
	if err := r.verifyDone(ctx); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// complete writes outs in statements of at most CompleteBatch outcomes
// on db and returns how many were applied; a fenced outcome is an error,
// since nothing else leases these entries.
func (r *Runner) complete(ctx context.Context, db store.DBTX, outs []store.Outcome) (int, error) {
	applied := 0
	for len(outs) > 0 {
		k := min(len(outs), r.eff.CompleteBatch)
		got, err := store.Complete(ctx, db, nil, outs[:k])
		if err != nil {
			return applied, err
		}
		if len(got) != k {
			return applied, fmt.Errorf("%d of %d outcomes fenced off", k-len(got), k)
		}
		applied += k
		outs = outs[k:]
	}
	return applied, nil
}

// rawLoop claims a batch and completes it, on one connection, until a
// claim comes back empty.
func (r *Runner) rawLoop(ctx context.Context, owner string) (int, error) {
	conn, err := r.relayPool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("acquiring a connection: %w", err)
	}
	defer conn.Release()
	params := r.claimParams(owner)
	total := 0
	outs := make([]store.Outcome, 0, params.Limit)
	for {
		claimed, _, err := store.Claim(ctx, conn, params)
		if err != nil {
			return total, err
		}
		if len(claimed) == 0 {
			return total, nil
		}
		outs = outs[:0]
		for i := range claimed {
			outs = append(outs, outcome(&claimed[i]))
		}
		n, err := r.complete(ctx, conn, outs)
		total += n
		if err != nil {
			return total, err
		}
	}
}

// rawPipelined runs a claim loop and a completion loop at once, each on a
// connection of its own. Like the relay's, the claimer hands outcomes to
// the completer through a queue as deep as the workers (with a no-op
// handler a worker is free as soon as it queued its outcome), and the
// completer writes whatever has queued, up to CompleteBatch, in one
// statement.
func (r *Runner) rawPipelined(ctx context.Context, owner string) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	claimConn, err := r.relayPool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("acquiring a connection: %w", err)
	}
	defer claimConn.Release()
	completeConn, err := r.relayPool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("acquiring a connection: %w", err)
	}
	defer completeConn.Release()

	queue := make(chan store.Outcome, r.eff.Workers)
	var wg sync.WaitGroup
	var claimErr error
	wg.Go(func() {
		defer close(queue)
		params := r.claimParams(owner)
		for {
			claimed, _, err := store.Claim(ctx, claimConn, params)
			if err != nil {
				claimErr = err
				cancel(err)
				return
			}
			if len(claimed) == 0 {
				return
			}
			for i := range claimed {
				select {
				case queue <- outcome(&claimed[i]):
				case <-ctx.Done():
					return
				}
			}
		}
	})
	total := 0
	var completeErr error
	batch := make([]store.Outcome, 0, r.eff.CompleteBatch)
	for first := range queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < r.eff.CompleteBatch {
			select {
			case o, ok := <-queue:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		n, err := r.complete(ctx, completeConn, batch)
		total += n
		if err != nil {
			completeErr = err
			cancel(err)
			break
		}
	}
	for range queue { // let the claimer finish after a failure
	}
	wg.Wait()
	if completeErr != nil { // the claimer's error, if any, is then the cancellation
		return total, completeErr
	}
	if claimErr != nil {
		return total, claimErr
	}
	return total, ctx.Err()
}
