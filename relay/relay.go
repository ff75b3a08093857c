package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/notifier"
	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// NotifyChannel is the Postgres channel that the schema's insert trigger
// notifies, with the queue name as payload: [outbox.NotifyChannel].
const NotifyChannel = outbox.NotifyChannel

// Relay claims committed outbox entries and dispatches them to handlers.
// Create it with New and run it with Run. Any number of relays — goroutines,
// processes, machines — may run against one database at once.
type Relay struct {
	cfg    Config
	pool   *pgxpool.Pool
	log    *slog.Logger
	topics []string
	queues map[string]*queue
	// probeKeys: some handler uses processed keys, so claims look them up.
	probeKeys bool
	// txSlots bounds the transactional handlers running at once, so that
	// they never take the pool's last connections: claims, outcome writes
	// and lease renewals always find one (txSlotsFor).
	txSlots chan struct{}
	// workersTx is how many transactional handlers the queues could run
	// at once, for the warning when txSlots is smaller.
	workersTx int

	running  atomic.Bool
	stopping atomic.Bool // Run's context ended: hand back entries not started
	listener *notifier.Listener

	// per Run
	workCtx       context.Context
	leases        *leaseTable
	completions   chan completion
	completerDone chan struct{}
	inflight      sync.WaitGroup
	// writeMu keeps lease renewal apart from outcome writes: a renewal
	// never sees an entry settled under it.
	writeMu sync.Mutex

	// loseClaimResult, set by tests only (export_test.go), drops the result
	// of a committed claim when it returns true, as a connection that
	// breaks after the commit would.
	loseClaimResult func() bool
}

// queue is one queue's worker pool and wake-up signals.
type queue struct {
	name    string
	workers int // handlers that may run at once (QueueConfig.MaxWorkers)
	// minClaim is the smallest batch worth a claim while entries are in
	// flight: a claim costs mostly per statement, not per row.
	minClaim int
	// slots holds one token per claimed entry not yet finished: running,
	// or waiting for a worker. There are workers plus a prefetch of up to
	// ClaimBatchSize (at most workers) of them, so the next batch is
	// claimed while the last one runs.
	slots chan struct{}
	wake  chan struct{} // notification or local hint: claim now
	freed chan struct{} // a slot was freed
	// jobs feeds the queue's worker goroutines; a claim takes a slot
	// before it sends, so a send never blocks.
	jobs chan job
}

// job is one claimed entry for a worker: run it, or hand it back.
type job struct {
	claimed  *store.Claimed
	lease    *leaseEntry
	handBack bool
}

// work runs q's jobs until the channel closes. Long-lived workers keep
// their grown stacks; a goroutine per entry paid for growing one each time.
func (r *Relay) work(q *queue) {
	for j := range q.jobs {
		switch {
		case j.handBack || r.stopping.Load(): // not started: give it back
			r.handBack(q, j.claimed, j.lease)
		case j.lease.ctx.Err() != nil:
			// Lost while it waited for a worker (claimed ahead behind a
			// slow handler): another relay may be running it now.
			r.leases.remove(j.lease)
			r.release(q)
		default:
			r.execute(q, j.claimed, j.lease)
		}
	}
}

func (q *queue) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// New validates cfg and returns a relay over pool. The pool should allow
// a few connections more than the relay uses at once: one per queue's claim
// loop, one for outcome writes and renewals, two for maintenance (one while
// it vacuums), and one per transactional handler running; LISTEN uses its
// own connection. A relay never lets transactional handlers take the
// connections its own statements need: it runs at most MaxConns minus
// (queues + 3) of them at once (queues + 2 with VacuumThreshold < 0; at
// least one), and Run logs a warning when that is fewer than its queues'
// workers.
func New(pool *pgxpool.Pool, cfg Config) (*Relay, error) {
	if pool == nil {
		return nil, configErr("pool", "nil *pgxpool.Pool")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:    c,
		pool:   pool,
		log:    c.Logger.With("relay", c.ID),
		topics: c.Handlers.Topics(),
		queues: make(map[string]*queue, len(c.Queues)),
	}
	hasTx := false
	for _, h := range c.Handlers.byTopic {
		r.probeKeys = r.probeKeys || !h.opts.noDedupe
		hasTx = hasTx || h.tx
	}
	if hasTx {
		for _, qc := range c.Queues {
			r.workersTx += qc.MaxWorkers
		}
	}
	r.txSlots = make(chan struct{}, txSlotsFor(int(pool.Config().MaxConns), len(c.Queues), c.VacuumThreshold > 0))
	for name, qc := range c.Queues {
		prefetch := min(c.ClaimBatchSize, qc.MaxWorkers)
		r.queues[name] = &queue{
			name:     name,
			workers:  qc.MaxWorkers,
			minClaim: max(1, prefetch/2),
			slots:    make(chan struct{}, qc.MaxWorkers+prefetch),
			wake:     make(chan struct{}, 1),
			freed:    make(chan struct{}, 1),
		}
	}
	if !c.DisableListen {
		l, err := notifier.New(notifier.Config{
			ConnConfig: pool.Config().ConnConfig,
			Channel:    NotifyChannel,
			Logger:     r.log,
			OnNotify: func(payload string) {
				if q, ok := r.queues[payload]; ok {
					q.signal(q.wake)
				}
			},
			OnConnect: func() {
				r.observe(Event{Kind: EventListenerUp})
				r.wakeAll()
			},
			OnDisconnect: func(err error) {
				r.observe(Event{Kind: EventListenerDown, Err: err})
			},
		})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		r.listener = l
	}
	return r, nil
}

// ID returns the relay's name as recorded in lease_owner.
func (r *Relay) ID() string { return r.cfg.ID }

// Listening reports whether the LISTEN connection is up (always false with
// DisableListen), as outbox.Watcher.Listening does for a watcher. Useful
// for readiness checks.
func (r *Relay) Listening() bool {
	return r.listener != nil && r.listener.Connected()
}

// ListenerEnabled reports whether the relay uses LISTEN/NOTIFY (false
// with Config.DisableListen).
func (r *Relay) ListenerEnabled() bool { return r.listener != nil }

func (r *Relay) wakeAll() {
	for _, q := range r.queues {
		q.signal(q.wake)
	}
}

func (r *Relay) observe(e Event) {
	if r.cfg.Observer != nil {
		r.cfg.Observer.Observe(e)
	}
}

func (r *Relay) now() *time.Time {
	if r.cfg.Now == nil {
		return nil
	}
	t := r.cfg.Now()
	return &t
}

// Run runs the relay until ctx is done, then shuts down gracefully: it stops
// claiming, waits up to Config.ShutdownTimeout for running handlers, cancels
// the rest with cause ErrShutdown and hands their entries back without
// counting the attempt, flushes completions, and returns nil. It returns an
// error at once when the database cannot be reached or is not migrated.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer r.running.Store(false)
	r.stopping.Store(false)

	checkCtx, cancelCheck := context.WithTimeout(ctx, 30*time.Second)
	err := store.CheckSchema(checkCtx, r.pool)
	cancelCheck()
	if errors.Is(err, store.ErrNotMigrated) {
		return fmt.Errorf("%w: %v", ErrNotMigrated, err)
	}
	if err != nil {
		return fmt.Errorf("relay: database not usable: %w", err)
	}

	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(context.Canceled)
	total := 0
	for _, qc := range r.cfg.Queues {
		total += qc.MaxWorkers
	}
	r.workCtx = workCtx
	r.leases = newLeaseTable()
	r.completions = make(chan completion, total)
	r.completerDone = make(chan struct{})

	var workers sync.WaitGroup
	for _, q := range r.queues {
		q.jobs = make(chan job, cap(q.slots))
		for range q.workers {
			workers.Go(func() { r.work(q) })
		}
	}
	stuck := false // a handler ignored cancellation: do not wait for its worker
	defer func() {
		for _, q := range r.queues {
			close(q.jobs)
		}
		if !stuck {
			workers.Wait()
		}
	}()

	var loops sync.WaitGroup
	if r.listener != nil {
		loops.Go(func() { r.listener.Run(ctx) })
	}
	for _, q := range r.queues {
		loops.Go(func() { r.claimLoop(ctx, q) })
	}
	loops.Go(func() { r.maintenanceLoop(ctx) })
	if r.cfg.VacuumThreshold > 0 {
		loops.Go(func() { r.vacuumLoop(ctx) })
	}

	stopHeartbeat := make(chan struct{})
	heartbeatDone := make(chan struct{})
	go func() { defer close(heartbeatDone); r.heartbeatLoop(stopHeartbeat) }()
	stopCompleter := make(chan struct{})
	go r.completerLoop(stopCompleter)

	r.log.Info("txoutbox: relay started", "topics", r.topics, "queues", r.cfg.queueNames())
	if slots := cap(r.txSlots); r.workersTx > slots {
		r.log.Warn("txoutbox: the pool is too small to run every transactional handler the queues allow at once; raise its MaxConns (pool_max_conns)",
			"pool_max_conns", r.pool.Config().MaxConns, "transactional_handlers_at_once", slots, "workers", r.workersTx)
	}
	<-ctx.Done()
	r.stopping.Store(true)
	r.log.Info("txoutbox: relay stopping", "shutdown_timeout", r.cfg.ShutdownTimeout)

	loops.Wait() // no more claims
	if !waitGroupTimeout(&r.inflight, r.cfg.ShutdownTimeout) {
		cancelWork(ErrShutdown)
		if !waitGroupTimeout(&r.inflight, handbackGrace) {
			stuck = true
			r.log.Warn("txoutbox: handlers still running after cancellation; their leases will expire and other relays will retry them",
				"running", r.leases.len())
		}
	}
	close(stopCompleter)
	<-r.completerDone
	close(stopHeartbeat)
	<-heartbeatDone
	r.log.Info("txoutbox: relay stopped")
	return nil
}

// handbackGrace is how long shutdown waits for cancelled handlers to return.
const handbackGrace = 5 * time.Second

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

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

// txSlotsFor is how many transactional handlers may hold a connection of a
// pool of maxConns at once: the rest is kept for the relay's own
// statements, one per claim loop, one for outcome writes and renewals, one
// for maintenance and, when the relay may vacuum, one held by the VACUUM.
// At least one, however small the pool.
func txSlotsFor(maxConns, queues int, vacuums bool) int {
	reserve := queues + 2
	if vacuums {
		reserve++
	}
	return max(1, maxConns-reserve)
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
