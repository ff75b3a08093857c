// Package schedule enqueues recurring outbox entries — weekly digests,
// daily reports, follow-up reminders — on a cron expression or a fixed
// interval, with any number of schedulers running and no leader election.
//
// A scheduler is a producer: it writes entries with the outbox package and
// imports nothing of the relay, and the relay knows nothing of it. Run one
// next to each relay, in the same process or not.
//
// # Registering
//
// A schedule names its periods and builds the entry of each:
//
//	type WeeklyDigest struct {
//		From time.Time `json:"from"`
//		To   time.Time `json:"to"`
//	}
//
//	func (WeeklyDigest) Topic() string { return "digest.weekly" }
//
//	set := schedule.NewSchedules()
//	err := schedule.Register(set, schedule.Spec{
//		Name: "digest.weekly",
//		Cron: "0 9 * * MON", Zone: "Europe/Berlin",
//		Missed: schedule.MissedLatest,
//	}, func(ctx context.Context, p schedule.Period) (WeeklyDigest, error) {
//		return WeeklyDigest{From: p.Prev, To: p.Time}, nil
//	})
//	// err is a *SpecError for a cron expression that does not parse, an
//	// unknown zone, a duplicate name: at registration, not at 09:00.
//
// The handler of the topic does the work ([Period.Prev] to [Period.Time]
// is the window a digest covers) with the relay's retries and
// dead-lettering, and hands the entry's key — the same for every attempt —
// to the outside world.
//
// # Running
//
//	s, err := schedule.New(pool, schedule.Config{Schedules: set})
//	...
//	go func() { _ = s.Run(ctx) }() // next to relay.Run(ctx)
//
// Run sleeps until the next firing and evaluates: for each schedule with a
// period due, in one short transaction, it locks the schedule's row in
// outbox_schedules (migration 00002), enqueues the periods the
// missed-period policy selects with outbox.EnqueueBatch, and records how
// far the schedule is decided. A scheduler that finds the row locked leaves
// the schedule to the one holding it. Each entry's idempotency key is
// [Key](name, period), so even a reset row cannot produce a second entry
// for a period while the first is in the outbox.
//
// By default the clock is the database's now(), so the schedulers of a
// database agree on the time whatever their machines' clocks say;
// Config.Now replaces it in tests and simulations, which drive
// [Scheduler.Evaluate] directly.
//
// # Time zones and DST
//
// A cron expression names wall-clock times in its zone. A time that does
// not exist (skipped when clocks go forward) fires once at the first
// instant after the gap, and a time that exists twice (when clocks go
// back) fires at its first occurrence only — unless the hour field is "*",
// in which case the schedule fires at every instant the wall clock
// matches, so that "every 15 minutes" stays every 15 minutes of real time.
// [Preview] shows what an expression does, without a database. An interval
// (Spec.Every) is elapsed time and ignores wall clocks.
//
// # Missed periods
//
// When no scheduler ran at a period's time, the schedule's [MissedPolicy]
// decides: [MissedLatest] (the default) enqueues the most recent missed
// period, [MissedSkip] enqueues only periods at most Spec.Grace late, and
// [MissedAll] enqueues every missed period up to Spec.MaxCatchUp. A
// schedule seen for the first time starts at that moment: nothing before
// it fires.
//
// # Status
//
// [List] reads what outbox_schedules records for every schedule: its
// definition, the last period enqueued and the next one due.
// `txoutbox status` shows it.
//
// See docs/schedules.md for the whole story.
package schedule
