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
)

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
	// never sees an entry written under it, and the written entries'
	// leases are out of renewal (finishing) before it runs again.
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
		l, err := r.newListener()
		if err != nil {
			return nil, err
		}
		r.listener = l
	}
	return r, nil
}

// ID returns the relay's name as recorded in lease_owner.
func (r *Relay) ID() string { return r.cfg.ID }

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
// error at once when the database cannot be reached or is not migrated; a
// ctx that ends while Run is still checking the database returns nil, as
// nothing was claimed.
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
	if err != nil && ctx.Err() != nil {
		// Told to stop while it was still checking the database (a
		// SIGTERM right after start): it has claimed nothing, so there is
		// nothing to drain, and stopping is not a failure.
		r.log.Info("txoutbox: relay stopped before it started", "cause", context.Cause(ctx))
		return nil
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
