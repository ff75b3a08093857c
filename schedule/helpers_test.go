package schedule_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/schedule"
)

// Payload types of the tests.

// tick is the payload of most test schedules: the period it was built for.
type tick struct {
	Period string `json:"period"`
	Prev   string `json:"prev,omitempty"`
}

func (tick) Topic() string { return "test.tick" }

// buildTick builds a tick for p.
func buildTick(_ context.Context, p schedule.Period) (tick, error) {
	tk := tick{Period: p.Time.Format(time.RFC3339)}
	if !p.Prev.IsZero() {
		tk.Prev = p.Prev.Format(time.RFC3339)
	}
	return tk, nil
}

// fakeClock is a clock the test sets.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var quiet = slog.New(slog.DiscardHandler)

// register returns a registry with one schedule of ticks, failing t when
// Register does.
func register(t testing.TB, specs ...schedule.Spec) *schedule.Schedules {
	t.Helper()
	set := schedule.NewSchedules()
	for _, spec := range specs {
		if err := schedule.Register(set, spec, buildTick); err != nil {
			t.Fatal(err)
		}
	}
	return set
}

// newScheduler returns a scheduler of set on pool with clock c.
func newScheduler(t testing.TB, pool *pgxpool.Pool, c *fakeClock, set *schedule.Schedules) *schedule.Scheduler {
	t.Helper()
	s, err := schedule.New(pool, schedule.Config{Schedules: set, Now: c.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// evaluateAt sets the clock to at and evaluates, failing t on error.
func evaluateAt(t testing.TB, s *schedule.Scheduler, c *fakeClock, at time.Time) schedule.Evaluation {
	t.Helper()
	c.Set(at)
	ev, err := s.Evaluate(context.Background())
	if err != nil {
		t.Fatalf("evaluate at %s: %v", at.Format(time.RFC3339), err)
	}
	return ev
}

// entryKeys returns the keys of the entries of topic, in key order (which
// is time order for schedule keys).
func entryKeys(t testing.TB, pool *pgxpool.Pool, topic string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT key FROM outbox_entries WHERE topic = $1 ORDER BY key`, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func scalar[T any](t testing.TB, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// hangGuard bounds waits on conditions polled from the database: a guard
// against hangs, not a timing assertion.
const hangGuard = 2 * time.Minute

// waitFor polls cond until it holds, failing t after hangGuard.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
