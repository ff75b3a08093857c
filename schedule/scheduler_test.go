package schedule_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/schedule"
)

// Each missed-period policy, with a scheduler that was down across
// firings: process A evaluates an hourly schedule, fires 01:00 and stops;
// nothing runs until process B starts at downUntil; B then evaluates once
// more at 06:00.
func TestMissedPeriodPolicies(t *testing.T) {
	t.Parallel()
	t0 := mustTime(t, "2026-01-05T00:00:00Z")
	at := func(h, m, s int) time.Time {
		return t0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
	}
	key := func(h int) string { return schedule.Key("hourly", at(h, 0, 0)) }
	for _, tc := range []struct {
		name      string
		missed    schedule.MissedPolicy
		catchUp   int
		downUntil time.Time
		atRestart []string // fired by B's first evaluation
		all       []string // every entry at the end
	}{
		{
			name: "latest: the most recent missed period, late", missed: schedule.MissedLatest, downUntil: at(5, 10, 0),
			atRestart: []string{key(5)}, all: []string{key(1), key(5), key(6)},
		},
		{
			name: "skip: nothing older than the grace", missed: schedule.MissedSkip, downUntil: at(5, 10, 0),
			atRestart: nil, all: []string{key(1), key(6)},
		},
		{
			name: "skip: a period within the grace still fires", missed: schedule.MissedSkip, downUntil: at(2, 0, 30),
			atRestart: []string{key(2)}, all: []string{key(1), key(2), key(6)},
		},
		{
			name: "all: every missed period, oldest first", missed: schedule.MissedAll, downUntil: at(5, 10, 0),
			atRestart: []string{key(2), key(3), key(4), key(5)}, all: []string{key(1), key(2), key(3), key(4), key(5), key(6)},
		},
		{
			name: "all, bounded: the most recent MaxCatchUp", missed: schedule.MissedAll, catchUp: 2, downUntil: at(5, 10, 0),
			atRestart: []string{key(4), key(5)}, all: []string{key(1), key(4), key(5), key(6)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := outboxtest.New(t)
			spec := schedule.Spec{Name: "hourly", Every: time.Hour, Anchor: t0, Missed: tc.missed, MaxCatchUp: tc.catchUp}

			clockA := newClock(t0)
			a := newScheduler(t, db.Pool, clockA, register(t, spec))
			if ev := evaluateAt(t, a, clockA, at(0, 30, 0)); len(ev.Fired) != 0 {
				t.Fatalf("first evaluation fired %v; nothing before it may fire", ev.Fired)
			}
			if ev := evaluateAt(t, a, clockA, at(1, 0, 0)); len(ev.Fired) != 1 || ev.Fired[0].Key != key(1) {
				t.Fatalf("01:00 fired %+v", ev.Fired)
			}

			// Down. B is a new process: nothing but the database is shared.
			clockB := newClock(tc.downUntil)
			var built []schedule.Period
			var mu sync.Mutex
			setB := schedule.NewSchedules()
			if err := schedule.Register(setB, spec, func(ctx context.Context, p schedule.Period) (tick, error) {
				mu.Lock()
				built = append(built, p)
				mu.Unlock()
				return buildTick(ctx, p)
			}); err != nil {
				t.Fatal(err)
			}
			b := newScheduler(t, db.Pool, clockB, setB)
			ev := evaluateAt(t, b, clockB, tc.downUntil)
			var got []string
			for _, f := range ev.Fired {
				got = append(got, f.Key)
			}
			if !equalStrings(got, tc.atRestart) {
				t.Errorf("at restart fired %q, want %q", got, tc.atRestart)
			}
			for i, p := range built {
				if want := tc.downUntil.Sub(p.Time); p.Late != want {
					t.Errorf("period %s: Late = %s, want %s", p.Time, p.Late, want)
				}
				if want := p.Time.Add(-time.Hour); !p.Prev.Equal(want) {
					t.Errorf("period %d: Prev = %s, want %s", i, p.Prev, want)
				}
			}
			evaluateAt(t, b, clockB, at(6, 0, 0))
			if keys := entryKeys(t, db.Pool, "test.tick"); !equalStrings(keys, tc.all) {
				t.Errorf("entries %q, want %q", keys, tc.all)
			}

			st, err := schedule.List(context.Background(), db.Pool)
			if err != nil || len(st) != 1 {
				t.Fatalf("List = %+v, %v", st, err)
			}
			s := st[0]
			if s.LastPeriod == nil || !s.LastPeriod.Equal(at(6, 0, 0)) || s.LastKey == nil || *s.LastKey != key(6) ||
				s.NextPeriod == nil || !s.NextPeriod.Equal(at(7, 0, 0)) || s.Missed != tc.missed.String() ||
				s.Topic != "test.tick" || !s.EvaluatedUntil.Equal(at(6, 0, 0)) {
				t.Errorf("status %+v", s)
			}
		})
	}
}

// DST transitions in Europe/Berlin fire as docs/schedules.md says, through
// the scheduler: a clock stepping five minutes at a time across each
// transition night, a daily schedule at 02:30 and a half-hourly one.
func TestDSTTransitionsInBerlin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		from, to   string
		daily      []string
		halfHourly []string
	}{
		{
			name: "spring forward 2026-03-29", from: "2026-03-28T23:00:00Z", to: "2026-03-29T03:00:00Z",
			daily: []string{"2026-03-29T03:00:00+02:00"},
			halfHourly: []string{
				"2026-03-29T00:30:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T01:30:00+01:00",
				"2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:00:00+02:00",
				"2026-03-29T04:30:00+02:00", "2026-03-29T05:00:00+02:00",
			},
		},
		{
			name: "fall back 2026-10-25", from: "2026-10-24T22:00:00Z", to: "2026-10-25T04:00:00Z",
			daily: []string{"2026-10-25T02:30:00+02:00"},
			halfHourly: []string{
				"2026-10-25T00:30:00+02:00", "2026-10-25T01:00:00+02:00", "2026-10-25T01:30:00+02:00",
				"2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
				"2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00",
				"2026-10-25T03:00:00+01:00", "2026-10-25T03:30:00+01:00", "2026-10-25T04:00:00+01:00",
				"2026-10-25T04:30:00+01:00", "2026-10-25T05:00:00+01:00",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := outboxtest.New(t)
			from, to := mustTime(t, tc.from), mustTime(t, tc.to)
			clock := newClock(from)
			s := newScheduler(t, db.Pool, clock, register(t,
				schedule.Spec{Name: "daily", Cron: "30 2 * * *", Zone: "Europe/Berlin"},
				schedule.Spec{Name: "half-hourly", Cron: "0,30 * * * *", Zone: "Europe/Berlin"}))
			fired := map[string][]string{}
			for now := from; !now.After(to); now = now.Add(5 * time.Minute) {
				for _, f := range evaluateAt(t, s, clock, now).Fired {
					if f.Period.Location().String() != "Europe/Berlin" {
						t.Errorf("period %s is not in the schedule's zone", f.Period)
					}
					if late := now.Sub(f.Period); late < 0 || late >= 5*time.Minute {
						t.Errorf("period %s fired at %s", f.Period, now)
					}
					fired[f.Schedule] = append(fired[f.Schedule], f.Period.Format(time.RFC3339))
				}
			}
			if !equalStrings(fired["daily"], tc.daily) {
				t.Errorf("daily fired\n %q\nwant %q", fired["daily"], tc.daily)
			}
			if !equalStrings(fired["half-hourly"], tc.halfHourly) {
				t.Errorf("half-hourly fired\n %q\nwant %q", fired["half-hourly"], tc.halfHourly)
			}
			// One entry per firing, under the canonical UTC key.
			want := len(tc.daily) + len(tc.halfHourly)
			if n := scalar[int](t, db.Pool, `SELECT count(DISTINCT key) FROM outbox_entries`); n != want {
				t.Errorf("%d entries, want %d", n, want)
			}
			for _, p := range tc.halfHourly {
				if k := schedule.Key("half-hourly", mustTime(t, p)); scalar[int](t, db.Pool,
					`SELECT count(*) FROM outbox_entries WHERE key = $1 AND headers->>'txoutbox-period' = $2`, k, p) != 1 {
					t.Errorf("no entry with key %s and period header %s", k, p)
				}
			}
		})
	}
}

// A failing build enqueues nothing and leaves the period due; the next
// evaluation enqueues it. Other schedules proceed meanwhile.
func TestBuildErrorLeavesThePeriodDue(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	t0 := mustTime(t, "2026-01-05T00:00:00Z")
	clock := newClock(t0)
	set := schedule.NewSchedules()
	var fail atomic.Bool
	fail.Store(true)
	boom := errors.New("report service down")
	if err := schedule.Register(set, schedule.Spec{Name: "flaky", Every: time.Hour, Anchor: t0}, func(ctx context.Context, p schedule.Period) (tick, error) {
		if fail.Load() {
			return tick{}, boom
		}
		return buildTick(ctx, p)
	}); err != nil {
		t.Fatal(err)
	}
	if err := schedule.RegisterRaw(set, schedule.Spec{Name: "steady", Every: time.Hour, Anchor: t0}, "test.raw",
		func(_ context.Context, p schedule.Period) (json.RawMessage, error) {
			return json.RawMessage(fmt.Sprintf(`{"at": %q}`, p.Time.Format(time.RFC3339))), nil
		}); err != nil {
		t.Fatal(err)
	}
	s := newScheduler(t, db.Pool, clock, set)
	evaluateAt(t, s, clock, t0)
	clock.Set(t0.Add(time.Hour))
	ev, err := s.Evaluate(context.Background())
	var be *schedule.BuildError
	if !errors.As(err, &be) || !errors.Is(err, boom) || be.Schedule != "flaky" || !be.Period.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Evaluate = %v; want a BuildError for flaky at 01:00", err)
	}
	if len(ev.Fired) != 1 || ev.Fired[0].Schedule != "steady" {
		t.Errorf("fired %+v; want steady only", ev.Fired)
	}
	if n := scalar[int](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE topic = 'test.tick'`); n != 0 {
		t.Errorf("%d entries for the failing schedule", n)
	}
	if raw := scalar[string](t, db.Pool, `SELECT payload->>'at' FROM outbox_entries WHERE topic = 'test.raw'`); raw != "2026-01-05T01:00:00Z" {
		t.Errorf("raw payload at = %q", raw)
	}
	fail.Store(false)
	ev = evaluateAt(t, s, clock, t0.Add(time.Hour+time.Minute))
	if len(ev.Fired) != 1 || ev.Fired[0].Key != schedule.Key("flaky", t0.Add(time.Hour)) {
		t.Errorf("after the build recovered, fired %+v", ev.Fired)
	}
}

// Entries carry the spec's options, the schedule headers and the period's
// key, whatever key the options asked for.
func TestEntriesCarryOptionsAndHeaders(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	t0 := mustTime(t, "2026-01-05T00:00:00Z")
	clock := newClock(t0)
	s := newScheduler(t, db.Pool, clock, register(t, schedule.Spec{
		Name: "opts", Every: time.Hour, Anchor: t0,
		Options: []outbox.Option{outbox.WithQueue("reports"), outbox.WithPriority(5), outbox.WithMaxAttempts(3),
			outbox.WithKey("ignored"), outbox.WithHeaders(map[string]string{"team": "growth"})},
	}))
	evaluateAt(t, s, clock, t0)
	ev := evaluateAt(t, s, clock, t0.Add(time.Hour))
	if len(ev.Fired) != 1 {
		t.Fatalf("fired %+v", ev.Fired)
	}
	e, err := outbox.Get(context.Background(), db.Pool, ev.Fired[0].EntryID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != "opts:2026-01-05T01:00:00Z" || e.Queue != "reports" || e.Priority != 5 || e.MaxAttempts != 3 ||
		e.Headers["team"] != "growth" || e.Headers[schedule.HeaderSchedule] != "opts" ||
		e.Headers[schedule.HeaderPeriod] != "2026-01-05T01:00:00Z" {
		t.Errorf("entry %+v", e)
	}
	var p tick
	if err := json.Unmarshal(e.Payload, &p); err != nil || p.Period != "2026-01-05T01:00:00Z" || p.Prev != "2026-01-05T00:00:00Z" {
		t.Errorf("payload %s (%v)", e.Payload, err)
	}
}

// A schedule whose row was deleted starts over from the next evaluation; a
// period enqueued before is not enqueued twice (the key dedupes it), and
// the firing says so.
func TestDeletedRowDoesNotDuplicateEntries(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	t0 := mustTime(t, "2026-01-05T00:00:00Z")
	clock := newClock(t0)
	s := newScheduler(t, db.Pool, clock, register(t, schedule.Spec{Name: "reset", Every: time.Hour, Anchor: t0, Missed: schedule.MissedAll}))
	evaluateAt(t, s, clock, t0)
	evaluateAt(t, s, clock, t0.Add(time.Hour))
	// Someone resets the schedule to before 01:00.
	if _, err := db.Pool.Exec(context.Background(), `UPDATE outbox_schedules SET evaluated_until = $1`, t0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	ev := evaluateAt(t, s, clock, t0.Add(time.Hour+time.Minute))
	if len(ev.Fired) != 1 || !ev.Fired[0].Duplicate {
		t.Errorf("fired %+v; want the 01:00 entry reported as a duplicate", ev.Fired)
	}
	if n := scalar[int](t, db.Pool, `SELECT count(*) FROM outbox_entries`); n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
}

// Run evaluates in a loop until its context ends. Its clock here steps one
// minute per evaluation, so a minutely schedule fires on every one.
func TestRunFiresAndStops(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	t0 := mustTime(t, "2026-01-05T00:00:00Z")
	var steps atomic.Int64
	now := func() time.Time { return t0.Add(time.Duration(steps.Add(1)) * time.Minute) }
	spec := schedule.Spec{Name: "minutely", Every: time.Minute, Anchor: t0, Missed: schedule.MissedAll}
	s, err := schedule.New(db.Pool, schedule.Config{Schedules: register(t, spec), Now: now, PollInterval: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "five entries", func() bool {
		return scalar[int](t, db.Pool, `SELECT count(*) FROM outbox_entries`) >= 5
	})
	if err := s.Run(ctx); !errors.Is(err, schedule.ErrAlreadyRunning) {
		t.Errorf("second Run = %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	keys := entryKeys(t, db.Pool, "test.tick")
	for i := 1; i < len(keys); i++ {
		prev := mustTime(t, keys[i-1][len("minutely:"):])
		if want := schedule.Key("minutely", prev.Add(time.Minute)); keys[i] != want {
			t.Fatalf("entry %d is %s after %s; want consecutive periods, each once", i, keys[i], keys[i-1])
		}
	}
	// Stopped: it runs again.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := s.Run(ctx2); err != nil {
		t.Errorf("Run after Run returned: %v", err)
	}
}

// Without the migration, Run, Evaluate and List say what to run.
func TestNotMigrated(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	if _, err := db.Pool.Exec(context.Background(), `DROP TABLE outbox_schedules`); err != nil {
		t.Fatal(err)
	}
	clock := newClock(mustTime(t, "2026-01-05T00:00:00Z"))
	s := newScheduler(t, db.Pool, clock, register(t, schedule.Spec{Name: "x", Every: time.Hour}))
	if err := s.Run(context.Background()); !errors.Is(err, schedule.ErrNotMigrated) {
		t.Errorf("Run = %v", err)
	}
	if _, err := s.Evaluate(context.Background()); !errors.Is(err, schedule.ErrNotMigrated) {
		t.Errorf("Evaluate = %v", err)
	}
	if _, err := schedule.List(context.Background(), db.Pool); !errors.Is(err, schedule.ErrNotMigrated) {
		t.Errorf("List = %v", err)
	}
}

// ptrMsg is a message type used through a pointer.
type ptrMsg struct {
	N int `json:"n"`
}

func (*ptrMsg) Topic() string { return "test.ptr" }

// A build function that returns a nil message is a BuildError, not a
// panic or a null payload; List refuses a nil querier.
func TestNilMessagesAndQueriers(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	t0 := mustTime(t, "2026-01-05T00:00:00Z")
	clock := newClock(t0)
	set := schedule.NewSchedules()
	if err := schedule.Register(set, schedule.Spec{Name: "nil", Every: time.Hour, Anchor: t0},
		func(context.Context, schedule.Period) (*ptrMsg, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	s := newScheduler(t, db.Pool, clock, set)
	evaluateAt(t, s, clock, t0)
	clock.Set(t0.Add(time.Hour))
	var be *schedule.BuildError
	if _, err := s.Evaluate(context.Background()); !errors.As(err, &be) || !strings.Contains(err.Error(), "nil message") {
		t.Errorf("Evaluate = %v; want a BuildError for the nil message", err)
	}
	if _, err := schedule.List(context.Background(), nil); !errors.Is(err, outbox.ErrNilQuerier) {
		t.Errorf("List(nil) = %v", err)
	}
}
