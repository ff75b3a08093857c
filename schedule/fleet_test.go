package schedule_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
)

// The fleet: four members, two in the test process and two in a second
// process (the test binary re-executed), each a relay with a scheduler
// next to it, all evaluating the same minutely schedule over 500 periods.
const (
	fleetPeriods  = 500
	fleetSchedule = "fleet.digest"
)

var (
	fleetStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	fleetEnd   = fleetStart.Add(fleetPeriods * time.Minute)
)

// fleetDigest is the fleet schedule's payload.
type fleetDigest struct {
	Period string `json:"period"`
}

func (fleetDigest) Topic() string { return "fleet.digest" }

// runFleetMember runs fleet member id against the database at url: a relay
// that records every digest it handles in the digests table, and a
// scheduler whose clock steps from fleetStart to fleetEnd by a pseudo-random
// amount (0 to 3 periods) per evaluation. It returns how many periods its
// scheduler enqueued.
//
// The clocks are fake and per member, and that is the point: "now" is a
// pure function of (member, step), deterministic in every process without
// any cross-process clock, while the members' clocks disagree by up to
// three periods at any moment, which production's shared clock never
// does. The database is the only thing the members share, as in
// production. Each member's clock ends at fleetEnd, and the schedule
// catches up every missed period (MissedAll, with a bound above 500), so
// whichever member gets to a period first enqueues it, and each of the 500
// periods must end up with exactly one entry whatever the interleaving.
//
// The bound matters because the clocks are independent: a member whose
// evaluations find the row locked by another (stalled by the scheduler of
// a loaded machine, say) keeps stepping its own clock, and may find a
// hundred periods due at once, which the default MaxCatchUp would cap. A
// shared clock cannot run ahead of the lock holder that way.
func runFleetMember(ctx context.Context, url string, id int) (int, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pool.Close()

	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[fleetDigest]) error {
		_, err := tx.Exec(ctx, `INSERT INTO digests (key, period, member) VALUES ($1, $2, $3)`, e.Key, e.Payload.Period, id)
		return err
	})
	r, err := relay.New(pool, relay.Config{
		Handlers: h, PollInterval: 50 * time.Millisecond, ShutdownTimeout: 10 * time.Second,
		ID: fmt.Sprintf("fleet-%d", id), Logger: quiet,
	})
	if err != nil {
		return 0, err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	clock := newClock(fleetStart)
	set := schedule.NewSchedules()
	err = schedule.Register(set, schedule.Spec{
		Name: fleetSchedule, Every: time.Minute, Anchor: fleetStart,
		Missed: schedule.MissedAll, MaxCatchUp: schedule.MaxCatchUpLimit,
	}, func(_ context.Context, p schedule.Period) (fleetDigest, error) {
		return fleetDigest{Period: p.Time.Format(time.RFC3339)}, nil
	})
	var s *schedule.Scheduler
	if err == nil {
		s, err = schedule.New(pool, schedule.Config{Schedules: set, Now: clock.Now, Logger: quiet})
	}
	fired := 0
	rng := rand.New(rand.NewPCG(uint64(id), 0x5eed))
	for now := fleetStart; err == nil; {
		clock.Set(now)
		var ev schedule.Evaluation
		ev, err = s.Evaluate(ctx)
		fired += len(ev.Fired)
		if now.Equal(fleetEnd) {
			break
		}
		now = now.Add(time.Duration(rng.Int64N(int64(3 * time.Minute))))
		if now.After(fleetEnd) {
			now = fleetEnd
		}
	}
	stopRelay()
	return fired, errors.Join(err, relayResult(<-relayDone))
}

// relayResult is a relay's Run result, less the error of a relay stopped
// while it was still checking the schema.
func relayResult(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Four relays in two processes evaluate the same schedule over 500
// periods: exactly 500 entries, one per period, each handled once.
func TestFleetFiresEachPeriodOnce(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE digests (key text PRIMARY KEY, period text NOT NULL, member int NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	// The second process, started and held at "ready" so that both
	// processes' members start together.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+db.URL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper process: %q, %v; stderr:\n%s", line, err, stderr.String())
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	localMembers := []int{0, 1}
	fired := make([]int, len(localMembers))
	errs := make([]error, len(localMembers))
	for i, id := range localMembers {
		wg.Go(func() { fired[i], errs[i] = runFleetMember(ctx, db.URL, id) })
	}
	helperOut, _ := io.ReadAll(out)
	helperErr := cmd.Wait()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("local members: %v", err)
	}
	if helperErr != nil {
		t.Fatalf("helper process: %v\nstdout:\n%s\nstderr:\n%s", helperErr, helperOut, stderr.String())
	}
	t.Logf("local members fired %v; helper process: %s", fired, strings.ReplaceAll(strings.TrimSpace(string(helperOut)), "\n", "; "))

	// Exactly one entry per period, under the period's key.
	keys := entryKeys(t, db.Pool, "fleet.digest")
	if len(keys) != fleetPeriods {
		t.Fatalf("%d entries, want %d", len(keys), fleetPeriods)
	}
	for i, k := range keys {
		if want := schedule.Key(fleetSchedule, fleetStart.Add(time.Duration(i+1)*time.Minute)); k != want {
			t.Fatalf("entry %d has key %s, want %s", i, k, want)
		}
	}
	total := fired[0] + fired[1]
	for _, line := range strings.Split(strings.TrimSpace(string(helperOut)), "\n") {
		var id, n int
		if _, err := fmt.Sscanf(line, "member %d fired %d", &id, &n); err != nil {
			t.Fatalf("helper output %q: %v", line, err)
		}
		total += n
	}
	if total != fleetPeriods {
		t.Errorf("the members report %d firings between them, want %d", total, fleetPeriods)
	}

	// Every entry handled once; the relays of the second process may have
	// stopped before the last ones, so a relay here finishes the work.
	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[fleetDigest]) error {
		_, err := tx.Exec(ctx, `INSERT INTO digests (key, period, member) VALUES ($1, $2, -1)`, e.Key, e.Payload.Period)
		return err
	})
	r, err := relay.New(db.Pool, relay.Config{Handlers: h, PollInterval: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()
	waitFor(t, "every digest handled", func() bool {
		return scalar[int](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state <> 'done'`) == 0
	})
	stopRelay()
	if err := relayResult(<-relayDone); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, db.Pool, `SELECT count(*) FROM digests`); n != fleetPeriods {
		t.Errorf("%d digests handled, want %d", n, fleetPeriods)
	}
	if last := scalar[time.Time](t, db.Pool, `SELECT last_period FROM outbox_schedules WHERE name = $1`, fleetSchedule); !last.Equal(fleetEnd) {
		t.Errorf("last period %s, want %s", last, fleetEnd)
	}
}
