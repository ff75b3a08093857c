package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// Status is one schedule as recorded in the database: what the schedulers
// that evaluated it last were told, and what they did.
type Status struct {
	Name   string `json:"name"`          // the schedule's name
	Topic  string `json:"topic"`         // its entries' topic
	Timing string `json:"timing"`        // the cron expression, or "@every 1h0m0s"
	Zone   string `json:"zone"`          // the cron expression's zone; UTC for intervals
	Missed string `json:"missed_policy"` // latest, skip or all
	// EvaluatedUntil is how far every period is decided: enqueued, or
	// passed over by the missed-period policy.
	EvaluatedUntil time.Time `json:"evaluated_until"`
	// NextPeriod is the next period to fire, as of the last evaluation
	// that fired or created the schedule; nil when it never fires again.
	// A NextPeriod long past means no scheduler is running the schedule.
	NextPeriod *time.Time `json:"next_period"`
	// LastPeriod is the most recent period enqueued, LastKey its key,
	// LastEntryID its entry (which retention may have deleted since), and
	// LastFiredAt when it was enqueued; nil before the first firing.
	LastPeriod  *time.Time `json:"last_period"`
	LastKey     *string    `json:"last_key"`
	LastEntryID *int64     `json:"last_entry_id"`
	LastFiredAt *time.Time `json:"last_fired_at"`
	// CreatedAt is when a scheduler first saw the schedule, UpdatedAt
	// when one last fired it or passed periods over (by its clock).
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Location returns the schedule's zone, or UTC when this machine does not
// know it, for showing the status's times as the schedule sees them.
func (s Status) Location() *time.Location {
	if loc, err := time.LoadLocation(s.Zone); err == nil && s.Zone != "" && s.Zone != "Local" {
		return loc
	}
	return time.UTC
}

// List reads every schedule recorded in the database, by name: those of
// every scheduler that ever evaluated against it, including schedules no
// longer registered anywhere (delete their row to forget them). It
// returns an error matching ErrNotMigrated when the table is missing.
func List(ctx context.Context, q outbox.Querier) ([]Status, error) {
	if isNil(q) {
		return nil, outbox.ErrNilQuerier
	}
	var raw []byte
	if err := q.QueryRow(ctx, sqlList).Scan(&raw); err != nil {
		return nil, dbError("listing schedules", err)
	}
	var out []Status
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("schedule: decoding schedules: %w", err)
	}
	return out, nil
}
