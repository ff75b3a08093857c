package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
)

// A nightly job at 02:30 in Berlin around the spring DST change: 02:30
// does not exist on 29 March 2026, so that night's period fires at 03:00.
// Each period's key is its time in UTC.
func ExamplePreview() {
	times, err := schedule.Preview(schedule.Spec{
		Name: "report.nightly",
		Cron: "30 2 * * *", Zone: "Europe/Berlin",
	}, time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC), 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range times {
		fmt.Println(t.Format(time.RFC3339), schedule.Key("report.nightly", t))
	}
	// Output:
	// 2026-03-28T02:30:00+01:00 report.nightly:2026-03-28T01:30:00Z
	// 2026-03-29T03:00:00+02:00 report.nightly:2026-03-29T01:00:00Z
	// 2026-03-30T02:30:00+02:00 report.nightly:2026-03-30T00:30:00Z
}

// An invalid expression is an error at registration.
func ExampleRegister_invalid() {
	set := schedule.NewSchedules()
	err := schedule.Register(set, schedule.Spec{Name: "digest.weekly", Cron: "0 9 * * MONDAY", Zone: "Europe/Berlin"},
		func(ctx context.Context, p schedule.Period) (digest, error) { return digest{}, nil })
	var se *schedule.SpecError
	if errors.As(err, &se) {
		fmt.Println(errors.Is(err, schedule.ErrInvalidSpec), se.Field, se.Reason)
	}
	// Output:
	// true Cron "0 9 * * MONDAY" is not a cron expression
}

// digest is a weekly digest: the handler gathers [From, To).
type digest struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (digest) Topic() string { return "digest.weekly" }

// A scheduler runs next to a relay; every process of the application may
// run both.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db/app")
	if err != nil {
		return
	}
	defer pool.Close()

	set := schedule.NewSchedules()
	if err := schedule.Register(set, schedule.Spec{
		Name: "digest.weekly",
		Cron: "0 9 * * MON", Zone: "Europe/Berlin",
	}, func(ctx context.Context, p schedule.Period) (digest, error) {
		return digest{From: p.Prev, To: p.Time}, nil
	}); err != nil {
		return
	}
	s, err := schedule.New(pool, schedule.Config{Schedules: set})
	if err != nil {
		return
	}

	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[digest]) error {
		// Gather [From, To), render, send with Message-ID <e.Key@example.com>.
		return nil
	})
	r, err := relay.New(pool, relay.Config{Handlers: h})
	if err != nil {
		return
	}
	go func() { _ = s.Run(ctx) }()
	_ = r.Run(ctx)
}
