package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/relay"
)

// Payload types of the suite's topics.

// txWork is handled by a transactional handler that writes one row in
// effects; Fail entries are refused permanently (dead by design).
type txWork struct {
	N    int  `json:"n"`
	Fail bool `json:"fail,omitempty"`
}

func (txWork) Topic() string { return "fault.tx" }

// runWork is handled by a plain handler that marks its run's start and
// finish in runs, so that overlapping runs of one entry, and runs of an
// ordering key out of order, show in the table.
type runWork struct {
	N       int    `json:"n"`
	Key     string `json:"key,omitempty"` // ordering key, if any
	Seq     int    `json:"seq,omitempty"` // position within Key
	SleepUS int    `json:"sleep_us,omitempty"`
	// FailOnce makes the first attempt fail (after its run is recorded).
	FailOnce bool `json:"fail_once,omitempty"`
}

func (runWork) Topic() string { return "fault.run" }

// drainWork is handled by a plain handler that does nothing.
type drainWork struct {
	N int `json:"n"`
}

func (drainWork) Topic() string { return "fault.drain" }

// suiteSchema is the tables the handlers write to.
const suiteSchema = `
CREATE TABLE effects (entry_id bigint NOT NULL, n int NOT NULL, relay text NOT NULL, attempt int NOT NULL);
CREATE TABLE runs (
	run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	entry_id    bigint NOT NULL,
	attempt     int NOT NULL,
	relay       text NOT NULL,
	started_at  timestamptz NOT NULL,
	finished_at timestamptz
);
CREATE INDEX ON runs (entry_id);`

// testDB is a migrated database of the shared cluster, private to one test.
type testDB struct {
	Pool *pgxpool.Pool
	URL  string
}

// newDB makes a database for t with txoutbox's schema and the suite's
// tables, dropped when t ends.
func newDB(t testing.TB) testDB {
	t.Helper()
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, drop, err := scratchdb.Create(ctx, c.URL(), "fault")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port(), pool.Config().ConnConfig.Database)
	if _, err := pool.Exec(ctx, suiteSchema); err != nil {
		t.Fatal(err)
	}
	return testDB{Pool: pool, URL: url}
}

// openPool opens a pool on url with at most maxConns connections, named
// appName in pg_stat_activity, closed when t ends.
func openPool(t testing.TB, url, appName string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// hangGuard bounds every wait; it catches hangs, it is not a timing
// assertion. It is not scaled: it must end a hung test well before go
// test's own -timeout (10 minutes by default) ends the whole binary, and
// minutes are plenty even on a loaded machine.
func hangGuard() time.Duration {
	if fullScale() {
		return 30 * time.Minute
	}
	return 3 * time.Minute
}

// waitUntil polls cond until it holds, failing t after the hang guard.
func waitUntil(t testing.TB, what string, every time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %s", what, hangGuard())
		}
		time.Sleep(every)
	}
}

func scalar[T any](t testing.TB, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string, args ...any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var v T
	if err := q.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
	return v
}

// stateCounts returns the number of entries per state, and a printable
// summary.
func stateCounts(t testing.TB, pool *pgxpool.Pool) (map[string]int64, string) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT state, count(*) FROM outbox_entries GROUP BY state ORDER BY state`)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	var parts []string
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		m[s] = n
		parts = append(parts, fmt.Sprintf("%s %d", s, n))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m, strings.Join(parts, ", ")
}

// waitSettled waits until no entry is pending or running.
func waitSettled(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	// Two EXISTS, so that the partial indexes on pending and running
	// entries answer, however many entries are done.
	waitUntil(t, "every entry done or dead", 50*time.Millisecond, func() bool {
		return !scalar[bool](t, pool, `SELECT EXISTS (SELECT 1 FROM outbox_entries WHERE state = 'pending')
			OR EXISTS (SELECT 1 FROM outbox_entries WHERE state = 'running')`)
	})
}

// logger is where in-process relays and children log: stderr at warning
// level with TXOUTBOX_TEST_LOG set, else nowhere.
func logger() *slog.Logger {
	if os.Getenv("TXOUTBOX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// events records relay events for assertions.
type events struct {
	mu  sync.Mutex
	all []relay.Event
	at  []time.Time
}

func (e *events) Observe(ev relay.Event) {
	now := time.Now()
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.at = append(e.at, now)
	e.mu.Unlock()
}

// find returns the first event matching pred and when it was seen.
func (e *events) find(pred func(relay.Event) bool) (relay.Event, time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, ev := range e.all {
		if pred(ev) {
			return ev, e.at[i], true
		}
	}
	return relay.Event{}, time.Time{}, false
}

// wait waits for an event matching pred.
func (e *events) wait(t testing.TB, what string, pred func(relay.Event) bool) (relay.Event, time.Time) {
	t.Helper()
	var ev relay.Event
	var at time.Time
	waitUntil(t, what, 10*time.Millisecond, func() bool {
		var ok bool
		ev, at, ok = e.find(pred)
		return ok
	})
	return ev, at
}

// history describes the events of one entry, in order, for failure
// messages.
func (e *events) history(id int64) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for i, ev := range e.all {
		if ev.EntryID != id {
			continue
		}
		line := fmt.Sprintf("%s %s attempt %d", e.at[i].Format("15:04:05.000000"), ev.Kind, ev.Attempt)
		if ev.Err != nil {
			line += fmt.Sprintf(": %v", ev.Err)
		}
		out = append(out, line)
	}
	return out
}

func (e *events) count(pred func(relay.Event) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if pred(ev) {
			n++
		}
	}
	return n
}

// ids returns the sorted distinct entry ids of the events matching pred.
func (e *events) ids(pred func(relay.Event) bool) []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[int64]bool{}
	for _, ev := range e.all {
		if pred(ev) && ev.EntryID != 0 {
			seen[ev.EntryID] = true
		}
	}
	out := make([]int64, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func kind(k relay.EventKind) func(relay.Event) bool {
	return func(e relay.Event) bool { return e.Kind == k }
}

func entryKind(id int64, k relay.EventKind) func(relay.Event) bool {
	return func(e relay.Event) bool { return e.EntryID == id && e.Kind == k }
}

// runRelay runs a relay in this process until the returned stop is called
// (or t ends); stop waits for Run to return and fails t on its error.
func runRelay(t testing.TB, pool *pgxpool.Pool, cfg relay.Config) (stop func()) {
	t.Helper()
	r, err := relay.New(pool, cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// noRetryDelay retries at once: poison entries reach their limit quickly.
var noRetryDelay = relay.RetryPolicyFunc(func(int, error) time.Duration { return 10 * time.Millisecond })

// quantiles returns min, median, p99 and max of ds, for logs.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("min %s, median %s, p99 %s, max %s", s[0].Round(time.Millisecond), q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// killWhilePublishing runs a relay process from cfg (its ID is set per
// generation, prefix-N) and SIGKILLs it kills times, at random moments
// spread over the n entries' completion, restarting it after a random
// pause each time. It returns the last process, still running, and how
// many running entries the killed ones held. Used by the broker
// publishers' tests.
func killWhilePublishing(t *testing.T, db testDB, rng *rand.Rand, cfg childConfig, prefix string, n, kills int) (*child, int) {
	t.Helper()
	thresholds := make([]int64, kills)
	for i := range thresholds {
		thresholds[i] = int64((float64(i) + 0.1 + 0.8*rng.Float64()) * float64(n) / float64(kills))
	}
	generation := 0
	start := func() *child {
		cfg.ID = fmt.Sprintf("%s-%d", prefix, generation)
		generation++
		return startChild(t, cfg)
	}
	finished := func() int64 {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state IN ('done', 'dead')`)
	}
	proc := start()
	held := 0
	for k, at := range thresholds {
		waitUntil(t, fmt.Sprintf("%d entries finished before kill %d", at, k+1), 20*time.Millisecond, func() bool { return finished() >= at })
		time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		progress := finished()
		proc.kill(t)
		waitUntil(t, "the killed relay's sessions to end", 5*time.Millisecond, func() bool {
			return scalar[int64](t, db.Pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, proc.name) == 0
		})
		h := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'running' AND lease_owner = $1`, proc.name)
		held += int(h)
		down := time.Duration(rng.IntN(200)) * time.Millisecond
		t.Logf("kill %2d: SIGKILL at %d/%d finished, it held %d entries; restart after %s", k+1, progress, n, h, down)
		time.Sleep(down)
		proc = start()
	}
	return proc, held
}
