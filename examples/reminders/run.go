package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
)

// stamp formats simulated times in the output.
const stamp = "Mon 2 Jan 15:04 MST"

// simClock is the simulation's clock, shared by both app instances.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the simulated time.
func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// event is something the sales team does at a simulated time.
type event struct {
	at   time.Time
	what string
	sql  string
}

// seed is the CRM's deals when the simulation starts.
const seed = `
INSERT INTO deals (id, customer, owner, last_contact) VALUES
	(1, 'Acme',     'ada',   '2026-10-02 10:00 Europe/Berlin'),
	(2, 'Globex',   'bob',   '2026-10-15 11:00 Europe/Berlin'),
	(3, 'Initech',  'ada',   '2026-10-16 08:00 Europe/Berlin'),
	(4, 'Umbrella', 'carol', '2026-10-18 16:00 Europe/Berlin')`

// timeline is the simulation's calendar, in the team's zone.
type timeline struct {
	start, end          time.Time
	downFrom, downUntil time.Time // no instance of the app runs
	events              []event   // in time order
}

func newTimeline(loc *time.Location) (timeline, error) {
	var errs []error
	at := func(s string) time.Time {
		t, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		errs = append(errs, err)
		return t
	}
	tl := timeline{
		start: at("2026-10-19 00:00"), end: at("2026-11-02 12:00"),
		downFrom: at("2026-10-26 06:00"), downUntil: at("2026-10-26 10:30"),
		events: []event{
			{at("2026-10-20 15:00"), "ada calls Acme", `UPDATE deals SET last_contact = $1 WHERE id = 1`},
			{at("2026-10-21 11:00"), "carol wins Umbrella", `UPDATE deals SET stage = 'won', won_at = $1, last_contact = $1 WHERE id = 4`},
			{at("2026-10-23 14:00"), "bob calls Globex", `UPDATE deals SET last_contact = $1 WHERE id = 2`},
			{at("2026-10-28 10:00"), "ada visits Initech", `UPDATE deals SET last_contact = $1 WHERE id = 3`},
		},
	}
	return tl, errors.Join(errs...)
}

// run runs the CRM for two simulated weeks, from Monday 19 October 2026
// (summer time) to Monday 2 November (winter time): a relay handles the
// entries in real time, while two instances of the app evaluate the
// schedules once a simulated hour, in turns, with a shared simulated
// clock. Monday 26 October, every instance is down from 06:00 to 10:30.
func run(ctx context.Context, out io.Writer, pool *pgxpool.Pool) error {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return fmt.Errorf("%w (import time/tzdata in programs that run without the system's zoneinfo)", err)
	}
	tl, err := newTimeline(loc)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, seed); err != nil {
		return err
	}

	// The relay, as in production.
	reports := make(chan string, 16)
	h := relay.NewHandlers()
	registerHandlers(h, pool, func(s string) { reports <- s })
	r, err := relay.New(pool, relay.Config{Handlers: h, PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	// Two app instances, each with its scheduler, as two replicas of a
	// web service would have; only the simulated clock is unusual. The
	// scheduler's warnings (periods passed over) go to the output.
	clock := &simClock{}
	set := schedule.NewSchedules()
	if err := registerSchedules(set); err != nil {
		return err
	}
	warnings := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	var instances [2]*schedule.Scheduler
	for i := range instances {
		if instances[i], err = schedule.New(pool, schedule.Config{Schedules: set, Now: clock.Now, Logger: warnings}); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "simulated time: %s to %s, the schedules evaluated every hour by two app instances in turns\n",
		tl.start.Format(stamp), tl.end.Format(stamp))
	pending := tl.events
	var fired [2]int
	step := 0
	for now := tl.start; !now.After(tl.end); step++ {
		for len(pending) > 0 && !pending[0].at.After(now) {
			ev := pending[0]
			pending = pending[1:]
			if _, err := pool.Exec(ctx, ev.sql, ev.at); err != nil {
				return err
			}
			fmt.Fprintf(out, "%s  %s\n", ev.at.Format(stamp), ev.what)
		}
		clock.set(now)
		for turn := range 2 {
			i := (step + turn) % 2
			ev, err := instances[i].Evaluate(ctx)
			if err != nil {
				return err
			}
			fired[i] += len(ev.Fired)
			for _, f := range ev.Fired {
				late := ""
				if d := now.Sub(f.Period); d > 0 {
					late = fmt.Sprintf(" (%s late)", d)
				}
				fmt.Fprintf(out, "%s  %s%s, by instance %d: ", f.Period.Format(stamp), f.Schedule, late, i+1)
				select {
				case msg := <-reports:
					fmt.Fprintln(out, msg)
				case <-time.After(time.Minute):
					return errors.New("the relay did not handle the entry within a minute")
				}
			}
		}
		// Every hour on the hour, except across the outage, which ends at
		// half past.
		if next := now.Add(time.Hour).Truncate(time.Hour); now.Before(tl.downFrom) && !next.Before(tl.downFrom) {
			fmt.Fprintf(out, "%s  every app instance is down until %s\n", tl.downFrom.Format(stamp), tl.downUntil.Format("15:04"))
			now = tl.downUntil
		} else {
			now = next
		}
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		return err
	}

	var entries, reminders int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox_entries), (SELECT count(*) FROM reminders)`).Scan(&entries, &reminders); err != nil {
		return err
	}
	fmt.Fprintf(out, "instance 1 enqueued %d periods, instance 2 enqueued %d: %d entries, one per period; %d reminders written\n",
		fired[0], fired[1], entries, reminders)
	if entries != fired[0]+fired[1] {
		return fmt.Errorf("%d entries for %d firings", entries, fired[0]+fired[1])
	}

	// What `txoutbox status --schedules` shows.
	list, err := schedule.List(ctx, pool)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tWHEN\tMISSED\tLAST\tNEXT")
	show := func(t *time.Time, loc *time.Location) string {
		if t == nil {
			return "-"
		}
		return t.In(loc).Format(time.RFC3339)
	}
	for _, st := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Name, st.Timing, st.Missed,
			show(st.LastPeriod, st.Location()), show(st.NextPeriod, st.Location()))
	}
	return tw.Flush()
}
