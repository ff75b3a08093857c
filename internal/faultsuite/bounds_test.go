package faultsuite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procStatus reads a process's resident set (VmRSS) and its peak (VmHWM),
// in KiB, from /proc.
func procStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", name, value, err)
		}
		if name == "VmRSS" {
			rss = kb
		} else {
			hwm = kb
		}
	}
	return rss, hwm, sc.Err()
}

type rssSample struct {
	finished int64 // entries finished when sampled
	rss      int64 // KiB
}

// A relay process drains many entries, half plain and half transactional,
// with more workers than pool connections. Its memory stays flat (the
// resident set late in the drain is not above what it was early on, give
// or take the runtime's slack), its PostgreSQL sessions never exceed its
// pool size plus the LISTEN connection, and every entry is done once.
// (Parallel query workers that PostgreSQL starts for a relay's statement
// are logged, not counted: they are not connections.)
func TestDrainStaysWithinMemoryAndConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	total := drainEntries.get(t)
	db := newDB(t)
	ctx := context.Background()
	const poolSize, workers = 10, 32

	// Plain SQL, in chunks: a million entries through EnqueueBatch would
	// measure the producer, not the relay.
	const chunk = 50000
	for from := 1; from <= total; from += chunk {
		to := min(total, from+chunk-1)
		if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_entries (topic, payload, key)
			SELECT CASE WHEN g % 2 = 0 THEN 'fault.tx' ELSE 'fault.drain' END, jsonb_build_object('n', g), 'd-' || g
			FROM generate_series($1::int, $2::int) g`, from, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE outbox_entries`); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	proc := startChild(t, childConfig{
		URL: db.URL, ID: "drain-relay", MaxConns: poolSize,
		Queues: map[string]int{"default": workers}, LeaseMS: int(scaled(5 * time.Second).Milliseconds()), PollMS: 100,
		Tx: true, Drain: true,
	})

	// Sample its sessions every 20ms, and its memory and progress every
	// 200ms, until the drain ends.
	var mu sync.Mutex
	var samples []rssSample
	var maxSessions, maxWorkers, finished int64
	var over string // the sessions, when there were too many
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// Parallel query workers carry their leader's application_name;
			// they are the server's processes, not the pool's connections.
			var n, workers int64
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE backend_type = 'client backend'),
				count(*) FILTER (WHERE backend_type = 'parallel worker')
				FROM pg_stat_activity WHERE application_name = 'drain-relay'`).Scan(&n, &workers); err != nil {
				t.Errorf("sample sessions: %v", err)
				return
			}
			if n > poolSize+1 {
				if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s %s %s', pid, state, left(query, 60)), '; ')
					FROM pg_stat_activity WHERE application_name = 'drain-relay' AND backend_type = 'client backend'`).Scan(&over); err != nil {
					t.Errorf("sample sessions: %v", err)
					return
				}
			}
			if i%10 == 0 {
				// Claims go in id order and ids start at 1: the id of the
				// entry finished last tells the progress, without counting
				// a million rows five times a second.
				var f int64
				if err := db.Pool.QueryRow(ctx, `SELECT coalesce((SELECT id FROM outbox_entries WHERE state = 'done'
					ORDER BY finished_at DESC LIMIT 1), 0)`).Scan(&f); err != nil {
					t.Errorf("sample progress: %v", err)
					return
				}
				mu.Lock()
				finished = f
				mu.Unlock()
			}
			mu.Lock()
			maxSessions = max(maxSessions, n)
			maxWorkers = max(maxWorkers, workers)
			if i%10 == 0 {
				if rss, _, err := procStatus(proc.pid()); err == nil {
					samples = append(samples, rssSample{finished: finished, rss: rss})
				}
			}
			mu.Unlock()
		}
	})
	waitSettled(t, db.Pool)
	elapsed := time.Since(began)
	close(stop)
	wg.Wait()
	_, hwm, err := procStatus(proc.pid())
	if err != nil {
		t.Fatal(err)
	}
	proc.stop(t)

	if effects, distinct := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects`), scalar[int64](t, db.Pool, `SELECT count(DISTINCT entry_id) FROM effects`); effects != int64(total/2) || distinct != effects {
		t.Fatalf("%d effects for %d entries; want one for each of %d", effects, distinct, total/2)
	}
	if states, summary := stateCounts(t, db.Pool); states["done"] != int64(total) {
		t.Fatalf("states: %s; want all %d done", summary, total)
	}
	reruns := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE attempt > 1`)

	// Sessions: the pool, plus the LISTEN connection.
	if maxSessions > poolSize+1 {
		t.Errorf("the relay had %d sessions at once; its pool allows %d, plus one LISTEN connection: %s", maxSessions, poolSize, over)
	}

	// Memory: compare the late samples with the early ones. The early
	// window starts once a tenth of the entries is done, when the runtime
	// and the pool have warmed up.
	var early, late int64
	var curve []string
	for i, s := range samples {
		switch {
		case s.finished >= int64(total)/10 && s.finished < int64(total)/2:
			early = max(early, s.rss)
		case s.finished >= int64(total)/2:
			late = max(late, s.rss)
		}
		if i%max(1, len(samples)/10) == 0 {
			curve = append(curve, fmt.Sprintf("%d%%: %d MiB", s.finished*100/int64(total), s.rss>>10))
		}
	}
	if early > 0 && late > early+early/4+16<<10 {
		t.Errorf("resident set grew from %d MiB (first half) to %d MiB (second half)", early>>10, late>>10)
	}
	t.Logf("%d entries (%d transactional) drained in %s (%.0f entries/s) with %d workers on a pool of %d; %d ran more than once",
		total, total/2, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), workers, poolSize, reruns)
	t.Logf("peak RSS (VmHWM) %d MiB; max RSS first half %d MiB, second half %d MiB; samples: %s", hwm>>10, early>>10, late>>10, strings.Join(curve, ", "))
	t.Logf("at most %d PostgreSQL sessions at once (pool %d + LISTEN), and %d parallel query workers on their behalf", maxSessions, poolSize, maxWorkers)
}
