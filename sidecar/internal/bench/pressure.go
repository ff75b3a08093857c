package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
)

// The pressure scenario's phases, in order.
const (
	phaseClean     = "clean"     // load alone
	phasePinned    = "pinned"    // one session holds a transaction id the whole phase
	phaseRecovery  = "recovery"  // load alone again
	phaseReaders   = "readers"   // REPEATABLE READ sessions scan the outbox tables
	phaseRecovery2 = "recovery2" // load alone again
)

// pressurePhaseCount is the number of pressure phases.
const pressurePhaseCount = 5

func pressurePhases() [pressurePhaseCount]string {
	return [...]string{phaseClean, phasePinned, phaseRecovery, phaseReaders, phaseRecovery2}
}

// The readers phase.
const (
	// pressureReaders is the number of reader sessions.
	pressureReaders = 4
	// readerHold is how long a reader keeps one REPEATABLE READ
	// transaction, and so its snapshot, open. The readers' first
	// transactions last a quarter, a half, three quarters and all of it,
	// so that they end at different times and a snapshot at most this old
	// is always held.
	readerHold = 5 * time.Second
	// readerRescan is the pause between a reader's scans in a transaction.
	readerRescan = time.Second
)

// pressure offers PressureRate transactions a second, as the steady
// scenario does, through five phases of PhaseDuration while one relay with
// the default configuration runs: clean, pinned (a session holds
// `BEGIN; SELECT txid_current()` open), recovery, readers (REPEATABLE READ
// sessions rescan the outbox tables) and recovery2. It returns a Result
// per phase.
func (r *Runner) pressure(ctx context.Context) ([]Result, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	rr, err := r.startRelay(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rr.stop() }()
	if err := rr.awaitListener(ctx); err != nil {
		return nil, err
	}
	if _, err := outbox.Enqueue(ctx, r.app, payload{N: -1}); err != nil {
		return nil, fmt.Errorf("warm-up entry: %w", err)
	}
	if err := rr.await(ctx, 1); err != nil {
		return nil, fmt.Errorf("warm-up entry: %w", err)
	}
	var autovacuum bool
	if err := r.app.QueryRow(ctx, `SELECT current_setting('autovacuum')::bool`).Scan(&autovacuum); err != nil {
		return nil, fmt.Errorf("reading the autovacuum setting: %w", err)
	}
	base, err := r.phaseEnd(ctx, rr)
	if err != nil {
		return nil, err
	}

	rate, phase := r.cfg.PressureRate, r.cfg.PhaseDuration
	total := int64(math.Round(rate * phase.Seconds() * pressurePhaseCount))
	rec := newRecorder(int(total))
	r.rec.Store(rec)
	defer r.rec.Store(nil)
	r.log.Info("bench: pressure: offering load through five phases", "rate", rate, "producers", r.cfg.Producers, "phase", phase)

	// The phases run beside the producers; either's failure stops both.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	var ends []phaseState
	var phaseErr error
	phasesDone := make(chan struct{})
	go func() {
		defer close(phasesDone)
		if ends, phaseErr = r.runPhases(pctx, rr, start, phase); phaseErr != nil {
			cancel(phaseErr)
		}
	}()
	_, _, offerErr := r.offer(pctx, rec, start, rate, total, phase*pressurePhaseCount)
	if offerErr != nil {
		cancel(offerErr)
	}
	<-phasesDone
	if phaseErr != nil {
		return nil, phaseErr
	}
	if offerErr != nil {
		return nil, offerErr
	}
	if err := rr.await(ctx, 1+total); err != nil {
		return nil, err
	}
	ends[pressurePhaseCount-1].unexpected = rr.obs.unexpected.Load() // and while the rest drained
	if err := rr.stop(); err != nil {
		return nil, err
	}
	if err := r.verifyDone(ctx); err != nil {
		return nil, err
	}

	results, err := r.phaseResults(rec, total, start, base, ends)
	if err != nil {
		return nil, err
	}
	for i := range results {
		res := &results[i]
		res.setting("phase_s", phase.Seconds(), 3)
		res.setting("producers", float64(r.cfg.Producers), 0)
		r.relaySettings(res)
		res.setting("autovacuum", b2f(autovacuum), 0)
	}
	return results, nil
}

// phaseState is what the pressure scenario reads from the server and the
// relay at the end of a phase.
type phaseState struct {
	tables     tableStats
	xminAge    int64
	unexpected int64 // the relay's unexpected events so far
}

// phaseEnd reads the phase's end state. The statistics are as the server
// has them: a busy backend reports its counts at most once a second.
func (r *Runner) phaseEnd(ctx context.Context, rr *running) (phaseState, error) {
	s := phaseState{unexpected: rr.obs.unexpected.Load()}
	var err error
	if s.tables, err = readTableStats(ctx, r.app); err != nil {
		return s, err
	}
	if err := r.app.QueryRow(ctx, xminAgeQuery).Scan(&s.xminAge); err != nil {
		return s, fmt.Errorf("reading the oldest transaction held: %w", err)
	}
	return s, nil
}

// runPhases starts and ends what each phase adds to the load, on the
// schedule that starts at start, and reads the state at each phase's end
// (before the phase's own sessions end).
func (r *Runner) runPhases(ctx context.Context, rr *running, start time.Time, phase time.Duration) ([]phaseState, error) {
	ends := make([]phaseState, 0, pressurePhaseCount)
	for i, name := range pressurePhases() {
		var stop func() error
		var err error
		switch name {
		case phasePinned:
			stop, err = r.pinHorizon(ctx)
		case phaseReaders:
			stop, err = r.startReaders(ctx)
		}
		if err == nil {
			r.log.Info("bench: pressure: phase", "phase", name)
			err = sleepCtx(ctx, time.Until(start.Add(time.Duration(i+1)*phase)))
		}
		var end phaseState
		if err == nil {
			end, err = r.phaseEnd(ctx, rr)
		}
		if stop != nil {
			err = errors.Join(err, stop())
		}
		if err != nil {
			return nil, fmt.Errorf("phase %s: %w", name, err)
		}
		ends = append(ends, end)
	}
	return ends, nil
}

// connect opens a session of its own on the bench's database.
func (r *Runner) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, r.app.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	return conn, nil
}

// pinHorizon opens a session that takes a transaction id and stays idle in
// its transaction, which holds back the horizon up to which VACUUM (and
// index scans marking entries dead) may remove row versions. The returned
// func rolls it back and closes the session.
func (r *Runner) pinHorizon(ctx context.Context) (func() error, error) {
	conn, err := r.connect(ctx)
	if err != nil {
		return nil, err
	}
	end := func() error { return conn.Close(context.WithoutCancel(ctx)) }
	tx, err := conn.Begin(ctx)
	if err == nil {
		var xid int64
		err = tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("pinning the horizon: %w", err), end())
	}
	return func() error {
		if err := tx.Rollback(context.WithoutCancel(ctx)); err != nil {
			return errors.Join(fmt.Errorf("ending the pinning transaction: %w", err), end())
		}
		return end()
	}, nil
}

// startReaders starts pressureReaders sessions that scan the outbox tables
// in REPEATABLE READ transactions (see reader). The returned func stops
// them, each after its current scan, and returns their errors.
func (r *Runner) startReaders(ctx context.Context) (func() error, error) {
	conns := make([]*pgx.Conn, 0, pressureReaders)
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}
	for range pressureReaders {
		c, err := r.connect(ctx)
		if err != nil {
			closeAll()
			return nil, err
		}
		conns = append(conns, c)
	}
	tables, err := outboxTables(ctx, conns[0])
	if err != nil {
		closeAll()
		return nil, err
	}
	stop := make(chan struct{})
	errs := make([]error, pressureReaders)
	var wg sync.WaitGroup
	for i, c := range conns {
		first := readerHold * time.Duration(i+1) / pressureReaders
		wg.Go(func() {
			errs[i] = reader(ctx, c, tables, first, stop)
			_ = c.Close(context.WithoutCancel(ctx))
		})
	}
	return func() error {
		close(stop)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("reader: %w", err)
		}
		return nil
	}, nil
}

// reader runs REPEATABLE READ transactions on conn until stop closes: each
// counts the rows of every table, again every readerRescan, and commits
// after readerHold (the first after first).
func reader(ctx context.Context, conn *pgx.Conn, tables []string, first time.Duration, stop <-chan struct{}) error {
	hold := first
	for {
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			return err
		}
		stopped, err := scan(ctx, tx, tables, time.Now().Add(hold), stop)
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if stopped {
			return nil
		}
		hold = readerHold
	}
}

// scan counts the rows of tables in tx every readerRescan until deadline
// or until stop closes, which it reports.
func scan(ctx context.Context, tx pgx.Tx, tables []string, deadline time.Time, stop <-chan struct{}) (bool, error) {
	for {
		for _, t := range tables {
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
				return false, fmt.Errorf("scanning %s: %w", t, err)
			}
		}
		wait := min(readerRescan, time.Until(deadline))
		if wait <= 0 {
			return false, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return true, nil
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// phaseResults computes each phase's Result from the recorded commits and
// handler starts of the total entries offered from start, and the state
// before the first phase (base) and at each phase's end.
func (r *Runner) phaseResults(rec *recorder, total int64, start time.Time, base phaseState, ends []phaseState) ([]Result, error) {
	rate, phase := r.cfg.PressureRate, r.cfg.PhaseDuration
	type acc struct {
		lat             []time.Duration
		starts, backlog int64
	}
	var phases [pressurePhaseCount]acc
	s0, width := rec.stamp(start), int64(phase)
	index := func(stamp int64) int64 { return (stamp - s0) / width }
	for k := range total {
		c, s := rec.commits[k].Load(), rec.starts[k].Load()
		if c == 0 || s == 0 {
			return nil, fmt.Errorf("entry %d: done but its commit or start was not recorded", k+1)
		}
		// A commit after the last phase (a late producer) counts in it.
		p := &phases[min(max(index(c), 0), pressurePhaseCount-1)]
		p.lat = append(p.lat, time.Duration(max(s-c, 0)))
		if i := index(s); s >= s0 && i < pressurePhaseCount {
			phases[i].starts++
		}
		for i := range phases {
			if end := s0 + int64(i+1)*width; c <= end && s > end {
				phases[i].backlog++
			}
		}
	}
	results := make([]Result, 0, pressurePhaseCount)
	prev := base
	for i, name := range pressurePhases() {
		p, end := phases[i], ends[i]
		slices.Sort(p.lat)
		res := Result{Phase: name}
		res.setting("offered_per_sec", rate, rateDigits(rate))
		res.measure("achieved_per_sec", float64(p.starts)/phase.Seconds(), 1)
		res.measure("p50_ms", ms(percentile(p.lat, 50)), 3)
		res.measure("p99_ms", ms(percentile(p.lat, 99)), 3)
		res.measure("max_ms", ms(percentile(p.lat, 100)), 3)
		res.measure("backlog_end", float64(p.backlog), 0)
		res.measure("dead_tuples", float64(end.tables.dead), 0)
		res.measure("table_bytes", float64(end.tables.bytes), 0)
		res.measure("entries", float64(len(p.lat)), 0)
		res.measure("xmin_age", float64(end.xminAge), 0)
		res.measure("vacuums", float64(end.tables.vacuums-prev.tables.vacuums), 0)
		res.measure("unexpected_events", float64(end.unexpected-prev.unexpected), 0)
		results = append(results, res)
		prev = end
	}
	return results, nil
}

// rateDigits prints a whole rate as an integer, else with one decimal.
func rateDigits(rate float64) int {
	if rate == math.Trunc(rate) {
		return 0
	}
	return 1
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
