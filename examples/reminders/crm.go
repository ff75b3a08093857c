package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
)

// This file is the application code: the schema, the two schedules and
// their handlers, as a production CRM would have them. run.go drives it
// with a simulated clock.

// zone is the sales team's time zone: the schedules follow its wall clock,
// across DST changes.
const zone = "Europe/Berlin"

const schema = `
CREATE TABLE deals (
	id           bigint PRIMARY KEY,
	customer     text NOT NULL,
	owner        text NOT NULL,
	stage        text NOT NULL DEFAULT 'open' CHECK (stage IN ('open', 'won')),
	last_contact timestamptz NOT NULL,
	won_at       timestamptz
);
CREATE TABLE reminders (
	deal_id bigint NOT NULL REFERENCES deals,
	day     date   NOT NULL,
	PRIMARY KEY (deal_id, day)
);`

// FollowUpSweep asks for a reminder on every open deal nobody has contacted
// since StaleBefore. One is enqueued each weekday at 09:00.
type FollowUpSweep struct {
	Day         string    `json:"day"` // the sweep's day, in the team's zone
	StaleBefore time.Time `json:"stale_before"`
}

// Topic names the handler for FollowUpSweep.
func (FollowUpSweep) Topic() string { return "crm.follow-up" }

// WeeklyDigest asks for the sales digest of [From, To) to be emailed. One
// is enqueued every Monday at 08:00.
type WeeklyDigest struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Topic names the handler for WeeklyDigest.
func (WeeklyDigest) Topic() string { return "crm.digest" }

// registerSchedules declares the two schedules. The build functions only
// name the period; the handlers do the work, with the relay's retries.
func registerSchedules(set *schedule.Schedules) error {
	// A follow-up reminder makes sense on its morning: if every instance
	// of the app was down at 09:00, a sweep up to an hour late still runs,
	// a later one is skipped (the next weekday's sweep catches the deals).
	if err := schedule.Register(set, schedule.Spec{
		Name: "crm.follow-up",
		Cron: "0 9 * * MON-FRI", Zone: zone,
		Missed: schedule.MissedSkip, Grace: time.Hour,
	}, func(_ context.Context, p schedule.Period) (FollowUpSweep, error) {
		return FollowUpSweep{Day: p.Time.Format(time.DateOnly), StaleBefore: p.Time.AddDate(0, 0, -7)}, nil
	}); err != nil {
		return err
	}
	// The digest must go out once a week, however late: the most recent
	// missed one is sent when an instance is back.
	return schedule.Register(set, schedule.Spec{
		Name: "crm.digest.weekly",
		Cron: "0 8 * * MON", Zone: zone,
		Missed: schedule.MissedLatest,
	}, func(_ context.Context, p schedule.Period) (WeeklyDigest, error) {
		return WeeklyDigest{From: p.Prev, To: p.Time}, nil
	})
}

// registerHandlers registers the handlers; each tells report what it did.
func registerHandlers(h *relay.Handlers, pool *pgxpool.Pool, report func(string)) {
	// The sweep writes reminder rows: a database effect, exactly once, in
	// the relay's transaction.
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[FollowUpSweep]) error {
		rows, err := tx.Query(ctx, `
			WITH stale AS (
				INSERT INTO reminders (deal_id, day)
				SELECT id, $1::date FROM deals WHERE stage = 'open' AND last_contact < $2
				ON CONFLICT DO NOTHING
				RETURNING deal_id
			)
			SELECT d.customer, d.owner, d.last_contact FROM deals d JOIN stale s ON s.deal_id = d.id
			ORDER BY d.customer`, e.Payload.Day, e.Payload.StaleBefore)
		if err != nil {
			return err
		}
		var due []string
		for rows.Next() {
			var customer, owner string
			var last time.Time
			if err := rows.Scan(&customer, &owner, &last); err != nil {
				rows.Close()
				return err
			}
			days := int(e.Payload.StaleBefore.AddDate(0, 0, 7).Sub(last).Hours() / 24)
			due = append(due, fmt.Sprintf("%s (%s, %d days since the last contact)", customer, owner, days))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(due) == 0 {
			report("follow-up sweep: every open deal was contacted this week")
		} else {
			report("follow-up sweep: remind " + strings.Join(due, ", "))
		}
		return nil
	})
	// The digest is an external effect (an email): the key goes into the
	// Message-ID, so a retry after a crash is recognisably the same mail.
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[WeeklyDigest]) error {
		var contacts, won int
		if err := pool.QueryRow(ctx, `SELECT
				count(*) FILTER (WHERE last_contact >= $1 AND last_contact < $2),
				count(*) FILTER (WHERE won_at >= $1 AND won_at < $2)
			FROM deals`, e.Payload.From, e.Payload.To).Scan(&contacts, &won); err != nil {
			return err
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return relay.Permanent(err)
		}
		report(fmt.Sprintf("digest of %s to %s emailed: deals contacted %d, won %d (Message-ID <%s@crm.example>)",
			e.Payload.From.In(loc).Format("Mon 2 Jan 15:04"), e.Payload.To.In(loc).Format("Mon 2 Jan 15:04"),
			contacts, won, e.Key))
		return nil
	})
}
