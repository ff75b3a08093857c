package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// steadyGrace is how long after the offering ends the steady scenario
// counts the entries still not done ("backlog_end").
const steadyGrace = time.Second

// recorder holds the steady scenario's commit and handler start times,
// by sequence number, as nanoseconds since base (monotonic) plus one, so
// that zero means "not yet".
type recorder struct {
	base    time.Time
	commits []atomic.Int64
	starts  []atomic.Int64
}

func newRecorder(n int) *recorder {
	return &recorder{base: time.Now(), commits: make([]atomic.Int64, n), starts: make([]atomic.Int64, n)}
}

func (rec *recorder) stamp(t time.Time) int64 { return int64(t.Sub(rec.base)) + 1 }

func (rec *recorder) committed(i int64, t time.Time) { rec.commits[i].Store(rec.stamp(t)) }

// started records the first start of entry i.
func (rec *recorder) started(i int64, t time.Time) {
	if i >= 0 && i < int64(len(rec.starts)) {
		rec.starts[i].CompareAndSwap(0, rec.stamp(t))
	}
}

// steady runs a relay and offers it Rate transactions a second for
// Duration from Producers goroutines, optionally after draining a backlog,
// and measures commit→handler start latency.
func (r *Runner) steady(ctx context.Context) (Result, error) {
	if err := r.clean(ctx); err != nil {
		return Result{}, err
	}
	var backlogSecs float64
	if r.cfg.Backlog > 0 {
		if err := r.insertPending(ctx, r.cfg.Backlog); err != nil {
			return Result{}, err
		}
		if err := r.settle(ctx); err != nil {
			return Result{}, err
		}
	}
	rr, err := r.startRelay(ctx)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = rr.stop() }()
	if r.cfg.Backlog > 0 {
		r.log.Info("bench: steady: draining the backlog first", "entries", r.cfg.Backlog)
		t0 := time.Now()
		if err := rr.await(ctx, int64(r.cfg.Backlog)); err != nil {
			return Result{}, fmt.Errorf("draining the backlog: %w", err)
		}
		backlogSecs = time.Since(t0).Seconds()
	}
	if err := rr.awaitListener(ctx); err != nil {
		return Result{}, err
	}
	// Warm up: one entry through, so that connections exist.
	if _, err := outbox.Enqueue(ctx, r.app, payload{N: -1}); err != nil {
		return Result{}, fmt.Errorf("warm-up entry: %w", err)
	}
	if err := rr.await(ctx, int64(r.cfg.Backlog)+1); err != nil {
		return Result{}, fmt.Errorf("warm-up entry: %w", err)
	}

	total := int64(math.Round(r.cfg.Rate * r.cfg.Duration.Seconds()))
	rec := newRecorder(int(total))
	r.rec.Store(rec)
	defer r.rec.Store(nil)
	r.log.Info("bench: steady: offering load", "rate", r.cfg.Rate, "producers", r.cfg.Producers, "duration", r.cfg.Duration)

	offerStart := time.Now()
	offerEnd, late, err := r.offer(ctx, rec, offerStart, r.cfg.Rate, total, r.cfg.Duration)
	if err != nil {
		return Result{}, err
	}
	grace := time.NewTimer(time.Until(offerEnd.Add(steadyGrace)))
	select {
	case <-grace.C:
	case <-ctx.Done():
		grace.Stop()
		return Result{}, ctx.Err()
	}
	backlogEnd, err := r.notDone(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := rr.await(ctx, int64(r.cfg.Backlog)+1+total); err != nil {
		return Result{}, err
	}
	unexpected := rr.obs.unexpected.Load()
	if err := rr.stop(); err != nil {
		return Result{}, err
	}
	if err := r.verifyDone(ctx); err != nil {
		return Result{}, err
	}

	lat := make([]time.Duration, 0, total)
	negative := 0
	inWindow := 0
	windowEnd := rec.stamp(offerEnd)
	for i := range total {
		c, s := rec.commits[i].Load(), rec.starts[i].Load()
		if c == 0 || s == 0 {
			return Result{}, fmt.Errorf("entry %d: done but its commit or start was not recorded", i+1)
		}
		d := time.Duration(s - c)
		if d < 0 {
			negative++
			d = 0
		}
		lat = append(lat, d)
		if s <= windowEnd {
			inWindow++
		}
	}
	slices.Sort(lat)
	window := offerEnd.Sub(offerStart)

	var res Result
	res.setting("offered_per_sec", r.cfg.Rate, 1)
	res.setting("producers", float64(r.cfg.Producers), 0)
	res.setting("duration_s", r.cfg.Duration.Seconds(), 3)
	res.setting("entries", float64(total), 0)
	res.setting("backlog_before", float64(r.cfg.Backlog), 0)
	r.relaySettings(&res)
	res.measure("achieved_per_sec", float64(inWindow)/window.Seconds(), 1)
	res.measure("p50_ms", ms(percentile(lat, 50)), 3)
	res.measure("p90_ms", ms(percentile(lat, 90)), 3)
	res.measure("p99_ms", ms(percentile(lat, 99)), 3)
	res.measure("max_ms", ms(lat[len(lat)-1]), 3)
	res.measure("backlog_end", float64(backlogEnd), 0)
	res.measure("negative", float64(negative), 0)
	res.measure("late_starts", float64(late), 0)
	if r.cfg.Backlog > 0 {
		res.measure("backlog_drain_seconds", backlogSecs, 3)
	}
	res.measure("unexpected_events", float64(unexpected), 0)
	return res, nil
}

// offer runs the producers: total transactions at rate a second from
// start. Transaction k (from 0) is due at start + k/rate, fixed in
// advance, and producer p runs the transactions with k ≡ p (mod
// Producers): a slow commit delays that producer's next transactions,
// which then run back to back, but not the schedule. It returns when the
// offering ended (the later of start + duration and the last commit), and
// how many transactions began more than one producer interval behind
// schedule.
func (r *Runner) offer(ctx context.Context, rec *recorder, start time.Time, rate float64, total int64, duration time.Duration) (end time.Time, late int64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	interval := time.Duration(float64(time.Second) / rate)
	perProducer := time.Duration(float64(time.Second) * float64(r.cfg.Producers) / rate)
	var lateN atomic.Int64
	var wg sync.WaitGroup
	for p := range int64(r.cfg.Producers) {
		wg.Go(func() {
			for k := p; k < total; k += int64(r.cfg.Producers) {
				due := start.Add(time.Duration(k) * interval)
				if d := time.Until(due); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
						return
					}
				} else if -d > perProducer {
					lateN.Add(1)
				}
				if err := r.produce(ctx, rec, k); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	end = time.Now()
	if err := context.Cause(ctx); err != nil {
		return end, 0, err
	}
	if planned := start.Add(duration); end.Before(planned) {
		end = planned
	}
	return end, lateN.Load(), nil
}

// produce runs transaction k: a domain row and one entry, committed; the
// commit time is taken when Commit returns.
func (r *Runner) produce(ctx context.Context, rec *recorder, k int64) error {
	tx, err := r.app.Begin(ctx)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var orderID int64
	if err := tx.QueryRow(ctx, `INSERT INTO `+ordersTable+` (note) VALUES ($1) RETURNING id`, "bench").Scan(&orderID); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	if _, err := outbox.Enqueue(ctx, tx, payload{N: orderID, Seq: k + 1}); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	rec.committed(k, time.Now())
	return nil
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
