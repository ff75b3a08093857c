package relay_test

// Relay benchmarks. They run only with -bench, e.g.
//
//	go test -run '^$' -bench 'Drain|CommitToStart' -benchtime 1x -count 3 ./relay/
//
// Both use the default relay configuration (only Handlers, Logger and an
// Observer are set) and get their server as every test does (outboxtest:
// TXOUTBOX_TEST_DATABASE_URL, a container or the local server binaries).
// Knobs, all optional:
//
//	TXOUTBOX_BENCH_DRAIN_N   entries per BenchmarkDrain iteration (20000)
//	TXOUTBOX_BENCH_RATE      entries/s offered by BenchmarkCommitToStart (500)
//	TXOUTBOX_BENCH_SECONDS   how long BenchmarkCommitToStart offers them (3)
//
// Experiment knobs for BenchmarkDrain, which leave the default
// configuration when unset (docs/benchmarks.md uses them only in its
// "what limits it" section):
//
//	TXOUTBOX_BENCH_RELAYS          relays draining the backlog together (1)
//	TXOUTBOX_BENCH_MAX_WORKERS     Queues["default"].MaxWorkers
//	TXOUTBOX_BENCH_CLAIM_BATCH     ClaimBatchSize
//	TXOUTBOX_BENCH_COMPLETE_BATCH  CompleteBatchSize
//	TXOUTBOX_BENCH_NO_KEYS=1       register the handler WithoutProcessedKeys
//	TXOUTBOX_BENCH_CHOSEN_KEYS=1   entries with keys chosen by the producer
//	                               (processed keys probed and recorded);
//	                               by default keys are generated, as
//	                               Enqueue without WithKey makes them
//	TXOUTBOX_BENCH_SEED_KEYS       processed keys (of another topic) present
//	                               before the drain, analyzed: a table that
//	                               holds weeks of keys, as in production (0)
//
// Besides the headline figures they report how the relay got there, from a
// pgx query tracer on the relay's pool: claim and completion statements per
// entry, their average batch size and their average duration. See
// docs/benchmarks.md for figures and their reading.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

const (
	defaultDrainN      = 20000
	defaultBenchRate   = 500
	defaultBenchSecs   = 3.0
	commitProducers    = 8
	benchPoolMaxConns  = 20 // producers + claim loop + completer + maintenance + slack
	benchInsertChunk   = 5000
	benchSettleTimeout = 5 * time.Minute // hang guard, not a timing assertion
)

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		b.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return v
}

// drainConfig is the default relay configuration, changed only by the
// experiment knobs that are set.
func drainConfig(b *testing.B, h *relay.Handlers, obs relay.Observer) relay.Config {
	cfg := relay.Config{Handlers: h, Logger: testLogger(), Observer: obs}
	if w := envInt(b, "TXOUTBOX_BENCH_MAX_WORKERS", 0); w > 0 {
		cfg.Queues = map[string]relay.QueueConfig{outbox.DefaultQueue: {MaxWorkers: w}}
	}
	cfg.ClaimBatchSize = envInt(b, "TXOUTBOX_BENCH_CLAIM_BATCH", 0)
	cfg.CompleteBatchSize = envInt(b, "TXOUTBOX_BENCH_COMPLETE_BATCH", 0)
	return cfg
}

func envFloat(b *testing.B, name string, def float64) float64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// sqlStats counts the relay's statements by kind, from a pgx tracer.
type sqlStats struct {
	claims, claimNanos        atomic.Int64
	completes, completeRows   atomic.Int64
	completeNanos             atomic.Int64
	renews, other, otherNanos atomic.Int64
	mu                        sync.Mutex
	claimDurs                 []time.Duration
}

type traceKey struct{}

type traceStart struct {
	kind string
	at   time.Time
}

func classify(sql string) string {
	switch {
	case strings.Contains(sql, "SKIP LOCKED") && strings.Contains(sql, "state = 'running'") &&
		strings.Contains(sql, "attempt = e.attempt + 1"):
		return "claim"
	case strings.Contains(sql, "unnest(") && strings.Contains(sql, "outbox_processed_keys"):
		return "complete"
	case strings.Contains(sql, "SET lease_until"):
		return "renew"
	}
	return "other"
}

func (s *sqlStats) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	kind := classify(d.SQL)
	if kind == "complete" {
		for _, a := range d.Args { // the first []int64 holds the ids
			if ids, ok := a.([]int64); ok {
				s.completeRows.Add(int64(len(ids)))
				break
			}
		}
	}
	return context.WithValue(ctx, traceKey{}, traceStart{kind: kind, at: time.Now()})
}

func (s *sqlStats) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	st, ok := ctx.Value(traceKey{}).(traceStart)
	if !ok {
		return
	}
	d := time.Since(st.at)
	switch st.kind {
	case "claim":
		s.claims.Add(1)
		s.claimNanos.Add(int64(d))
		s.mu.Lock()
		s.claimDurs = append(s.claimDurs, d)
		s.mu.Unlock()
	case "complete":
		s.completes.Add(1)
		s.completeNanos.Add(int64(d))
	case "renew":
		s.renews.Add(1)
	default:
		s.other.Add(1)
		s.otherNanos.Add(int64(d))
	}
}

func (s *sqlStats) reset() {
	s.claims.Store(0)
	s.claimNanos.Store(0)
	s.completes.Store(0)
	s.completeRows.Store(0)
	s.completeNanos.Store(0)
	s.renews.Store(0)
	s.other.Store(0)
	s.otherNanos.Store(0)
	s.mu.Lock()
	s.claimDurs = s.claimDurs[:0]
	s.mu.Unlock()
}

// tracedPool opens a second pool on db with the statement tracer, for the
// relay to use, sized like outboxtest's default unless maxConns says more.
func tracedPool(b *testing.B, db *outboxtest.DB, maxConns int32) (*pgxpool.Pool, *sqlStats) {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		b.Fatal(err)
	}
	stats := &sqlStats{}
	cfg.ConnConfig.Tracer = stats
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool, stats
}

// benchObserver counts done entries and claim batch sizes.
type benchObserver struct {
	mu      sync.Mutex
	target  int64
	reached chan struct{} // closed when done reaches target
	done    atomic.Int64

	claims, claimed atomic.Int64
	claimHist       [4]atomic.Int64 // batch of 1, 2–9, 10–99, 100+
	other           atomic.Int64    // retries, deaths, errors: should stay 0
	listenerUp      chan struct{}
	upOnce          sync.Once
}

func newBenchObserver() *benchObserver {
	return &benchObserver{reached: make(chan struct{}), listenerUp: make(chan struct{})}
}

func (o *benchObserver) Observe(e relay.Event) {
	switch e.Kind {
	case relay.EventDone:
		d := o.done.Add(1)
		o.mu.Lock()
		if d == o.target {
			close(o.reached)
		}
		o.mu.Unlock()
	case relay.EventClaimed:
		o.claims.Add(1)
		o.claimed.Add(int64(e.Count))
		switch {
		case e.Count == 1:
			o.claimHist[0].Add(1)
		case e.Count < 10:
			o.claimHist[1].Add(1)
		case e.Count < 100:
			o.claimHist[2].Add(1)
		default:
			o.claimHist[3].Add(1)
		}
	case relay.EventListenerUp:
		o.upOnce.Do(func() { close(o.listenerUp) })
	case relay.EventStarted, relay.EventListenerDown, relay.EventDeleted, relay.EventUnhandled, relay.EventOutcomesWritten, relay.EventVacuumed:
	default:
		o.other.Add(1)
	}
}

// arm resets the counters and returns a channel closed once n more entries
// are done. Call it only while no entry is in flight.
func (o *benchObserver) arm(n int64) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done.Store(0)
	o.claims.Store(0)
	o.claimed.Store(0)
	for i := range o.claimHist {
		o.claimHist[i].Store(0)
	}
	o.reached = make(chan struct{})
	o.target = n
	return o.reached
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// insertPending writes n pending ping entries with COPY, bypassing the
// producer API (its cost is BenchmarkEnqueue's business).
func insertPending(b *testing.B, pool *pgxpool.Pool, n int) {
	chosenKeys := os.Getenv("TXOUTBOX_BENCH_CHOSEN_KEYS") == "1"
	b.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += benchInsertChunk {
		m := min(benchInsertChunk, n-start)
		rows := make([][]any, m)
		for i := range rows {
			// As outbox.Enqueue writes an entry without WithKey: the key
			// is generated (the column default) and marked so.
			rows[i] = []any{"test.ping", json.RawMessage(fmt.Sprintf(`{"n":%d}`, start+i)), !chosenKeys}
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"outbox_entries"}, []string{"topic", "payload", "key_generated"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatalf("copy entries: %v", err)
		}
	}
}

// BenchmarkDrain measures how fast one relay with the default configuration
// empties a backlog: per iteration, drainN entries are inserted while no
// relay runs (untimed), then a relay starts and the timer runs until the
// observer has seen drainN EventDone. Handlers do nothing, so the figure is
// the relay's own ceiling.
func BenchmarkDrain(b *testing.B) {
	n := envInt(b, "TXOUTBOX_BENCH_DRAIN_N", defaultDrainN)
	if n == 0 {
		b.Fatal("TXOUTBOX_BENCH_DRAIN_N must be positive")
	}
	relays := max(envInt(b, "TXOUTBOX_BENCH_RELAYS", 1), 1)
	seed := envInt(b, "TXOUTBOX_BENCH_SEED_KEYS", 0)
	db := outboxtest.New(b)
	pool, stats := tracedPool(b, db, int32(max(outboxtest.DefaultMaxConns, 4*relays+2)))
	ctx := context.Background()
	obs := newBenchObserver()
	h := relay.NewHandlers()
	var hopts []relay.HandlerOption
	if os.Getenv("TXOUTBOX_BENCH_NO_KEYS") == "1" {
		hopts = append(hopts, relay.WithoutProcessedKeys())
	}
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil }, hopts...)
	cfg := drainConfig(b, h, obs)

	var elapsed time.Duration
	var cpu time.Duration
	var claims, claimed, completes, completeRows, other int64
	var claimStmts, claimNanos, completeNanos int64 // claimStmts counts empty claims too
	var hist [4]int64
	var claimDurs []time.Duration
	b.StopTimer()
	b.ResetTimer()
	for range b.N {
		if _, err := db.Pool.Exec(ctx, `TRUNCATE outbox_entries, outbox_processed_keys`); err != nil {
			b.Fatal(err)
		}
		insertPending(b, db.Pool, n)
		prep := []string{`VACUUM ANALYZE outbox_entries`, `CHECKPOINT`}
		if seed > 0 {
			prep = append([]string{fmt.Sprintf(`INSERT INTO outbox_processed_keys (scope, key)
				SELECT 'seed', g::text FROM generate_series(1, %d) g`, seed),
				`VACUUM ANALYZE outbox_processed_keys`}, prep...)
		}
		for _, q := range prep {
			if _, err := db.Pool.Exec(ctx, q); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
		}
		reached := obs.arm(int64(n))
		stats.reset()
		cpu0 := cpuTime()
		t0 := time.Now()
		b.StartTimer()
		stops := make([]func() error, relays)
		for i := range stops {
			stops[i] = runRelay(b, pool, cfg)
		}
		select {
		case <-reached:
		case <-time.After(benchSettleTimeout):
			b.Fatalf("only %d of %d entries done", obs.done.Load(), n)
		}
		b.StopTimer()
		elapsed += time.Since(t0)
		cpu += cpuTime() - cpu0
		for _, stop := range stops {
			if err := stop(); err != nil {
				b.Fatalf("relay.Run: %v", err)
			}
		}
		claims += obs.claims.Load()
		claimed += obs.claimed.Load()
		for i := range hist {
			hist[i] += obs.claimHist[i].Load()
		}
		completes += stats.completes.Load()
		completeRows += stats.completeRows.Load()
		claimStmts += stats.claims.Load()
		claimNanos += stats.claimNanos.Load()
		completeNanos += stats.completeNanos.Load()
		other += stats.other.Load()
		stats.mu.Lock()
		claimDurs = append(claimDurs, stats.claimDurs...)
		stats.mu.Unlock()
		if got := obs.other.Load(); got != 0 {
			b.Fatalf("%d unexpected relay events (retry, dead, error...)", got)
		}
	}
	if left := scalar[int64](b, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state <> 'done'`); left != 0 {
		b.Fatalf("%d entries not done", left)
	}
	total := float64(n) * float64(b.N)
	b.ReportMetric(total/elapsed.Seconds(), "entries/s")
	b.ReportMetric(float64(claimStmts)/total, "claims/entry")
	b.ReportMetric(float64(claimed)/float64(max(claims, 1)), "entries/claim")
	b.ReportMetric(float64(completes)/total, "completes/entry")
	b.ReportMetric(float64(completeRows)/float64(max(completes, 1)), "entries/complete")
	b.ReportMetric(float64(claimStmts+completes+other)/total, "stmts/entry")
	b.ReportMetric(float64(claimNanos)/float64(max(claimStmts, 1))/1e6, "claim-ms")
	b.ReportMetric(float64(completeNanos)/float64(max(completes, 1))/1e6, "complete-ms")
	b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "go-cpu-%")
	// Share of the wall time each relay's claim loop and completer spent
	// waiting on their statement: near 100 means that serial stage is the
	// critical path.
	b.ReportMetric(100*float64(claimNanos)/float64(relays)/float64(elapsed), "claim-busy-%")
	b.ReportMetric(100*float64(completeNanos)/float64(relays)/float64(elapsed), "complete-busy-%")
	// Claim cost early and late in a drain: growth means each claim does
	// work in proportion to what was already drained (see
	// docs/benchmarks.md: the processed-keys check, dead index entries).
	tenth := len(claimDurs) / 10
	early := slices.Clone(claimDurs[:tenth])
	late := slices.Clone(claimDurs[len(claimDurs)-tenth:])
	slices.Sort(early)
	slices.Sort(late)
	b.Logf("claim p50 in the first tenth of claims %s, in the last tenth %s", pct(early, 50), pct(late, 50))
	slices.Sort(claimDurs)
	b.Logf("N=%d: claims %d, %d non-empty (batch 1: %d, 2-9: %d, 10-99: %d, 100+: %d), claim p50 %s p99 %s; completes %d (%.1f entries each); other statements %d",
		n, claimStmts, claims, hist[0], hist[1], hist[2], hist[3], pct(claimDurs, 50), pct(claimDurs, 99), completes,
		float64(completeRows)/float64(max(completes, 1)), other)
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// BenchmarkCommitToStart measures the latency from a producer's commit to
// its handler starting, under a steady offered load: 8 producer goroutines
// share TXOUTBOX_BENCH_RATE transactions/s for TXOUTBOX_BENCH_SECONDS, each
// transaction inserting an order row and enqueueing one entry. The commit
// time is taken when tx.Commit returns, the start time first thing in the
// handler. The relay runs the default configuration (PollInterval 1s; the
// insert trigger's NOTIFY does the waking).
func BenchmarkCommitToStart(b *testing.B) {
	rate := envFloat(b, "TXOUTBOX_BENCH_RATE", defaultBenchRate)
	secs := envFloat(b, "TXOUTBOX_BENCH_SECONDS", defaultBenchSecs)
	db := outboxtest.NewWithOptions(b, outboxtest.Options{MaxConns: benchPoolMaxConns})
	pool, stats := tracedPool(b, db, benchPoolMaxConns)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE orders (id bigserial PRIMARY KEY, note text)`); err != nil {
		b.Fatal(err)
	}

	var commits, starts sync.Map // entry id → time.Time
	obs := newBenchObserver()
	h := relay.NewHandlers()
	relay.Handle(h, func(_ context.Context, e *relay.Entry[ping]) error {
		starts.LoadOrStore(e.ID, time.Now())
		return nil
	})
	stop := runRelay(b, pool, relay.Config{Handlers: h, Logger: testLogger(), Observer: obs})
	select {
	case <-obs.listenerUp:
	case <-time.After(benchSettleTimeout):
		b.Fatal("listener never connected")
	}
	// Warm up: one entry through, so connections and prepared statements exist.
	warm := obs.arm(1)
	enqueue(b, db.Pool, ping{N: -1})
	select {
	case <-warm:
	case <-time.After(benchSettleTimeout):
		b.Fatal("warm-up entry never done")
	}

	interval := time.Duration(float64(time.Second) * commitProducers / rate)
	perProducer := int(math.Round(rate * secs / commitProducers))
	var lat []time.Duration
	// How long tx.Commit took, as the producer saw it: the commit became
	// visible (and notified) somewhere inside this window, so it bounds the
	// error of taking "commit" as the moment Commit returned; a handler may
	// even start before Commit returns (a negative latency).
	var commitMu sync.Mutex
	var commitDurs []time.Duration
	var late atomic.Int64 // transactions that began behind schedule
	var offered time.Duration
	var claims, claimed, completes, completeRows int64
	var claimStmts, claimNanos int64
	b.ResetTimer()
	for range b.N {
		commits.Clear()
		starts.Clear()
		reached := obs.arm(int64(perProducer * commitProducers))
		stats.reset()
		t0 := time.Now()
		var wg sync.WaitGroup
		for p := range commitProducers {
			wg.Go(func() {
				offset := time.Duration(p) * interval / commitProducers
				for k := range perProducer {
					due := t0.Add(offset + time.Duration(k)*interval)
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					} else if d < -interval {
						late.Add(1)
					}
					tx, err := db.Pool.Begin(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					var orderID int64
					if err := tx.QueryRow(ctx, `INSERT INTO orders (note) VALUES ($1) RETURNING id`, "bench").Scan(&orderID); err != nil {
						_ = tx.Rollback(ctx)
						b.Error(err)
						return
					}
					res, err := outbox.Enqueue(ctx, tx, ping{N: int(orderID)})
					if err != nil {
						_ = tx.Rollback(ctx)
						b.Error(err)
						return
					}
					before := time.Now()
					if err := tx.Commit(ctx); err != nil {
						b.Error(err)
						return
					}
					after := time.Now()
					commits.Store(res.ID, after)
					commitMu.Lock()
					commitDurs = append(commitDurs, after.Sub(before))
					commitMu.Unlock()
				}
			})
		}
		wg.Wait()
		offered += time.Since(t0)
		if b.Failed() {
			return
		}
		select {
		case <-reached:
		case <-time.After(benchSettleTimeout):
			b.Fatalf("only %d entries done", obs.done.Load())
		}
		claims += obs.claims.Load()
		claimed += obs.claimed.Load()
		completes += stats.completes.Load()
		completeRows += stats.completeRows.Load()
		claimStmts += stats.claims.Load()
		claimNanos += stats.claimNanos.Load()
		commits.Range(func(k, v any) bool {
			s, ok := starts.Load(k)
			if !ok {
				b.Fatalf("entry %d done but never started", k)
			}
			lat = append(lat, s.(time.Time).Sub(v.(time.Time)))
			return true
		})
	}
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatalf("relay.Run: %v", err)
	}
	slices.Sort(lat)
	slices.Sort(commitDurs)
	negative := 0
	for _, d := range lat {
		if d < 0 {
			negative++
		}
	}
	b.Logf("tx.Commit took p50 %s p99 %s; %d of %d handlers started before their producer saw Commit return",
		pct(commitDurs, 50), pct(commitDurs, 99), negative, len(lat))
	n := float64(len(lat))
	b.ReportMetric(n/offered.Seconds(), "achieved/s")
	b.ReportMetric(ms(pct(lat, 50)), "p50-ms")
	b.ReportMetric(ms(pct(lat, 90)), "p90-ms")
	b.ReportMetric(ms(pct(lat, 99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(claims)/n, "claims/entry")
	b.ReportMetric(float64(completes)/n, "completes/entry")
	// The claim statement is one step of commit→start: NOTIFY, wake-up,
	// claim (this round trip and its commit), handler goroutine.
	b.ReportMetric(float64(claimNanos)/float64(max(claimStmts, 1))/1e6, "claim-ms")
	b.Logf("offered %.0f/s for %.1fs: %d entries, achieved %.0f/s, %d began >1 interval late; min %s p50 %s p90 %s p99 %s max %s; entries/claim %.2f, entries/complete %.2f",
		rate, secs, len(lat), n/offered.Seconds(), late.Load(), lat[0], pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[len(lat)-1],
		float64(claimed)/float64(max(claims, 1)), float64(completeRows)/float64(max(completes, 1)))
}
