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
// many relay processes.
func (r *Runner) drain(ctx context.Context) (Result, error) {
	n := r.cfg.Entries
	if err := r.clean(ctx); err != nil {
		return Result{}, err
	}
	if err := r.insertPending(ctx, n); err != nil {
		return Result{}, err
	}
	if err := r.settle(ctx); err != nil {
		return Result{}, err
	}
	if r.cfg.Processes > 0 {
		return r.drainProcesses(ctx, n)
	}
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
	if err := r.verifyDone(ctx); err != nil {
		return Result{}, err
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
