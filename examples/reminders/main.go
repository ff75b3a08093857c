// Command reminders shows recurring entries with the schedule package: a
// small CRM that sends a weekly sales digest every Monday at 08:00 and
// writes follow-up reminders for neglected deals every weekday at 09:00,
// both in Europe/Berlin time.
//
// The application code is crm.go: two schedules (schedule.Register), whose
// build functions only name the period, and two handlers that do the work
// — the digest as an email whose Message-ID is the entry's key, the
// reminders as rows written exactly once in the relay's transaction. In
// production every instance of the app runs a scheduler next to its relay:
//
//	set := schedule.NewSchedules()
//	_ = registerSchedules(set)
//	s, _ := schedule.New(pool, schedule.Config{Schedules: set})
//	go s.Run(ctx) // next to relay.Run(ctx)
//
// and each period is enqueued once between them, with no leader.
//
// To show two weeks in a second, run.go drives the schedulers with a
// simulated clock (schedule.Config.Now and Scheduler.Evaluate), while the
// relay runs for real. The two weeks cross the end of summer time (25
// October), which the schedules take in their stride, and an outage on
// Monday 26 October from 06:00 to 10:30, which the two schedules' policies
// handle differently: the digest is sent late (MissedLatest), the stale
// reminder sweep is skipped (MissedSkip with an hour's grace).
//
// Run it with:
//
//	go run ./examples/reminders
//
// Like the quickstart, it makes a throwaway database on the server in
// DATABASE_URL, or, without DATABASE_URL, on a throwaway server it starts
// and removes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // the schedules' zone, whatever the machine has

	"github.com/jackc/pgx/v5/pgxpool"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
)

func main() {
	tclog.SetDefault(tclog.NewNoopLogger())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := withDatabase(ctx, os.Stdout, os.Getenv("DATABASE_URL"), func(pool *pgxpool.Pool) error {
		return run(ctx, os.Stdout, pool)
	})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reminders:", err)
		os.Exit(1)
	}
}

// withDatabase calls fn with a pool on a throwaway, migrated database on
// the server at serverURL, or on a throwaway server when serverURL is
// empty, and removes what it made afterwards.
func withDatabase(ctx context.Context, out io.Writer, serverURL string, fn func(*pgxpool.Pool) error) error {
	return scratchdb.Run(ctx, out, serverURL, "txoutbox_reminders", fn)
}
