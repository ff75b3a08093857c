package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"time"
)

// rssInterval is how often the drain scenario samples the process's
// resident set size.
const rssInterval = 50 * time.Millisecond

// drain writes Entries pending entries untimed, then times one relay with
// the default configuration emptying them, or with Config.Processes that
// many relay processes. Around both it measures what the entries cost the
// outbox tables: WAL and row writes (see drainCost).
func (r *Runner) drain(ctx context.Context) (Result, error) {
	n := r.cfg.Entries
	if err := r.clean(ctx); err != nil {
		return Result{}, err
	}
	if err := r.privileged(ctx, `CHECKPOINT`); err != nil {
		return Result{}, err
	}
	var cost drainCost
	var err error
	if cost.before, err = r.costPoint(ctx); err != nil {
		return Result{}, err
	}
	if err := r.insertPending(ctx, n); err != nil {
		return Result{}, err
	}
	if cost.copied, err = r.costPoint(ctx); err != nil {
		return Result{}, err
	}
	if err := r.settle(ctx); err != nil {
		return Result{}, err
	}
	if cost.settled, err = walPosition(ctx, r.app); err != nil {
		return Result{}, err
	}

	var res Result
	if r.cfg.Processes > 0 {
		res, err = r.drainProcesses(ctx, n)
	} else {
		res, err = r.drainInProcess(ctx, n)
	}
	if err != nil {
		return Result{}, err
	}
	// Before anything reads the drained table: a read can prune pages,
	// which writes WAL.
	if cost.drained, err = r.costPoint(ctx); err != nil {
		return Result{}, err
	}
	if err := r.verifyDone(ctx); err != nil {
		return Result{}, err
	}
	if r.cfg.Processes > 0 {
		reclaimed, err := r.reclaimed(ctx)
		if err != nil {
			return Result{}, err
		}
		res.measure("reclaimed", float64(reclaimed), 0)
	}
	cost.add(&res, n)
	return res, nil
}

// drainInProcess times one relay in this process emptying n entries, and
// stops it.
func (r *Runner) drainInProcess(ctx context.Context, n int) (Result, error) {
	r.log.Info("bench: drain: relay started", "entries", n)
	sampler := startRSSSampler()
	t0 := time.Now()
	rr, err := r.startRelay(ctx)
	if err != nil {
		sampler.stop()
		return Result{}, err
	}
	waitErr := rr.await(ctx, int64(n))
	elapsed := time.Since(t0)
	peak, havePeak := sampler.stop()
	stopErr := rr.stop()
	if waitErr != nil {
		return Result{}, waitErr
	}
	if stopErr != nil {
		return Result{}, stopErr
	}

	var res Result
	res.setting("entries", float64(n), 0)
	r.relaySettings(&res)
	res.setting("processes", 0, 0)
	res.measure("seconds", elapsed.Seconds(), 3)
	res.measure("per_sec", float64(n)/elapsed.Seconds(), 1)
	if havePeak {
		res.measure("rss_peak_mb", float64(peak)/(1<<20), 1)
	}
	res.measure("unexpected_events", float64(rr.obs.unexpected.Load()), 0)
	return res, nil
}

// costPoint is the WAL position and the outbox tables' row writes at one
// moment of the drain scenario, with every session's writes reported.
type costPoint struct {
	wal    int64
	writes int64
}

func (r *Runner) costPoint(ctx context.Context) (costPoint, error) {
	s, err := r.settledTableStats(ctx)
	if err != nil {
		return costPoint{}, err
	}
	wal, err := walPosition(ctx, r.app)
	return costPoint{wal: wal, writes: s.writes}, err
}

// drainCost is what the drain scenario's entries cost, measured in two
// segments that each start right after a CHECKPOINT: the COPY (before to
// copied), and the drain (settled to drained). The untimed VACUUM ANALYZE
// and CHECKPOINT between them are left out.
type drainCost struct {
	before, copied, drained costPoint
	settled                 int64 // WAL position after VACUUM ANALYZE and CHECKPOINT
}

// add adds the cost per entry of n entries to res.
func (c drainCost) add(res *Result, n int) {
	insertWAL := c.copied.wal - c.before.wal
	drainWAL := c.drained.wal - c.settled
	res.measure("wal_bytes_per_insert", float64(insertWAL)/float64(n), 1)
	res.measure("wal_bytes_per_entry", float64(insertWAL+drainWAL)/float64(n), 1)
	res.measure("row_writes_per_insert", float64(c.copied.writes-c.before.writes)/float64(n), 3)
	res.measure("row_writes_per_entry", float64(c.drained.writes-c.before.writes)/float64(n), 3)
}

// rssSampler records the largest resident set size seen.
type rssSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	peak int64
	ok   bool
}

// startRSSSampler samples VmRSS from /proc/self/status every rssInterval
// until stop. Where there is no /proc, stop reports no figure.
func startRSSSampler() *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.sample()
	s.wg.Go(func() {
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *rssSampler) sample() {
	if v, ok := readRSS(); ok {
		s.peak, s.ok = max(s.peak, v), true
	}
}

// stop ends sampling, takes a last sample and returns the peak in bytes.
func (s *rssSampler) stop() (int64, bool) {
	close(s.done)
	s.wg.Wait()
	s.sample()
	return s.peak, s.ok
}

// readRSS returns the process's resident set size in bytes.
func readRSS() (int64, bool) {
	kb, ok := readStatusKB("/proc/self/status", "VmRSS:")
	return kb << 10, ok
}

// readStatusKB returns the value of field, a size in kB such as "VmRSS:",
// in the /proc status file at path.
func readStatusKB(path, field string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(field))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "12345", "kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		return kb, true
	}
	return 0, false
}
