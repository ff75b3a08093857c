package schedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	cron "github.com/netresearch/go-cron"

	"github.com/txoutbox/txoutbox/outbox"
)

// Limits and defaults of a Spec.
const (
	// MaxNameLen bounds a schedule's name, in bytes, so that a key (name,
	// a colon and a 20-byte time) stays within outbox.MaxKeyLen.
	MaxNameLen = 200
	// DefaultMaxCatchUp is MaxCatchUp when it is zero.
	DefaultMaxCatchUp = 100
	// MaxCatchUpLimit is the largest MaxCatchUp accepted.
	MaxCatchUpLimit = 10000
	// DefaultGrace is Grace when it is zero.
	DefaultGrace = time.Minute
	// KeyTimeLayout formats a period's time, in UTC, in its idempotency
	// key: see Key.
	KeyTimeLayout = "2006-01-02T15:04:05Z"
	// cronHorizon is how far ahead a cron expression is searched for its
	// next firing (the cron library's limit), and how far back for the
	// previous one.
	cronHorizon = 5 * 366 * day
)

// MissedPolicy says what a schedule does with periods whose time passed
// while no scheduler was running (or while evaluations failed).
type MissedPolicy int

const (
	// MissedLatest (the default) enqueues the most recent missed period,
	// however late, and passes over the older ones: a digest that was due
	// while everything was down is sent once, when a scheduler is back.
	MissedLatest MissedPolicy = iota
	// MissedSkip enqueues only periods that are at most Spec.Grace late and
	// passes over the rest: a reminder that makes no sense hours late.
	MissedSkip
	// MissedAll enqueues every missed period, oldest first, up to the
	// Spec.MaxCatchUp most recent ones: a per-period report that must
	// exist for every period.
	MissedAll
)

// String returns "latest", "skip" or "all".
func (p MissedPolicy) String() string {
	switch p {
	case MissedLatest:
		return "latest"
	case MissedSkip:
		return "skip"
	case MissedAll:
		return "all"
	}
	return fmt.Sprintf("MissedPolicy(%d)", int(p))
}

// MarshalText writes the policy as String does.
func (p MissedPolicy) MarshalText() ([]byte, error) {
	if p < MissedLatest || p > MissedAll {
		return nil, fmt.Errorf("schedule: unknown missed-period policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads "latest", "skip" or "all" (and "" as the default,
// latest), for configuration files.
func (p *MissedPolicy) UnmarshalText(b []byte) error {
	switch string(b) {
	case "", "latest":
		*p = MissedLatest
	case "skip":
		*p = MissedSkip
	case "all":
		*p = MissedAll
	default:
		return fmt.Errorf("missed-period policy %q is not latest, skip or all", string(b))
	}
	return nil
}

// Spec defines one schedule: when it fires, and what happens to periods
// missed while no scheduler ran. Give exactly one of Cron and Every.
type Spec struct {
	// Name identifies the schedule: unique among the schedules of a
	// database, stable across deploys (it is the primary key of the
	// schedule's row and the prefix of every key it enqueues), 1–200 bytes
	// of UTF-8. Renaming a schedule starts a new one.
	Name string

	// Cron is a five-field cron expression (minute, hour, day of month,
	// month, day of week), evaluated on the wall clock of Zone, or a
	// descriptor: @yearly, @monthly, @weekly, @daily, @hourly. Names (MON,
	// JAN), ranges, lists, steps and the extensions L (last day of the
	// month), W (nearest weekday), FRI#2 (second Friday) and FRI#L (last
	// Friday) are accepted. When both day fields are restricted, either
	// matching fires (as in crontab). See docs/schedules.md for what
	// happens at DST transitions.
	Cron string
	// Zone is the IANA time zone of Cron, such as "Europe/Berlin".
	// Default "UTC". "Local" is refused: a schedule must not depend on the
	// machine that evaluates it. Only with Cron.
	Zone string

	// Every is a fixed interval of elapsed time, at least one second and a
	// whole number of seconds. Periods are Anchor + k·Every; wall clocks
	// and DST play no part (use Cron for "09:00 local time").
	Every time.Duration
	// Anchor aligns Every: periods fall on Anchor + k·Every for every
	// integer k. Default the Unix epoch, so that an hourly interval fires
	// on the hour (UTC). Whole seconds only. Only with Every.
	Anchor time.Time

	// Missed is the missed-period policy. Default MissedLatest.
	Missed MissedPolicy
	// MaxCatchUp bounds the periods one evaluation enqueues: with
	// MissedAll, only the most recent MaxCatchUp missed periods are
	// enqueued and older ones are passed over (and logged). Default 100;
	// range 1–10,000.
	MaxCatchUp int
	// Grace is how late a period may be and still be enqueued under
	// MissedSkip. Default 1m; it should exceed the scheduler's poll delay.
	// Ignored by the other policies.
	Grace time.Duration

	// Options apply to every entry enqueued (queue, priority, max
	// attempts, headers, a delay). The key is always the period's key
	// (see Key): a WithKey here is overridden.
	Options []outbox.Option
}

// Period is one firing of a schedule, handed to its build function.
type Period struct {
	// Schedule is the schedule's name.
	Schedule string
	// Time is the period's firing time, in the schedule's zone (UTC for
	// intervals).
	Time time.Time
	// Prev is the firing before Time by the schedule's definition, whether
	// or not it was enqueued, so that [Prev, Time) is the window a digest
	// covers; zero when there is none in the five years before Time.
	Prev time.Time
	// Key is the entry's idempotency key: Key(Schedule, Time).
	Key string
	// Late is how long after Time the period is being enqueued, by the
	// scheduler's clock: the poll delay, or a catch-up after downtime.
	Late time.Duration
}

// Key returns the idempotency key of a schedule's period: the name, a
// colon, and the period's time in UTC with second precision, such as
// "digest.weekly:2026-11-30T08:00:00Z" for Monday 30 November 2026, 09:00
// in Europe/Berlin. The canonical UTC form does not depend on the zone, is
// unambiguous in a repeated DST hour, and sorts in time order. Use it to
// find a period's entry with outbox.GetByKey.
func Key(name string, t time.Time) string {
	return name + ":" + t.UTC().Format(KeyTimeLayout)
}

// entry is a validated, compiled schedule.
type entry struct {
	name       string
	topic      string
	tm         timing
	loc        *time.Location // of Period.Time
	timingText string         // for the table: "0 9 * * MON", "@every 1h0m0s"
	zoneText   string
	missed     MissedPolicy
	maxCatchUp int
	grace      time.Duration
	options    []outbox.Option
	build      func(ctx context.Context, p Period) (outbox.Message, error)
}

// cronParser accepts five fields and descriptors, with the L, W and #
// extensions, and crontab's OR of the two day fields.
func cronParser() (cron.Parser, error) {
	return cron.TryNewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow |
		cron.Descriptor | cron.Extended | cron.DowOrDom)
}

// compile validates spec and returns the entry without topic and build.
// now is used only to refuse expressions that never fire again.
func compile(spec Spec, now time.Time) (*entry, error) {
	bad := func(field, reason string, err error) error {
		return &SpecError{Schedule: spec.Name, Field: field, Reason: reason, Err: err}
	}
	switch {
	case spec.Name == "":
		return nil, bad("Name", "must not be empty", nil)
	case len(spec.Name) > MaxNameLen:
		return nil, bad("Name", fmt.Sprintf("%d bytes, over the limit of %d", len(spec.Name), MaxNameLen), nil)
	case !utf8.ValidString(spec.Name) || strings.ContainsRune(spec.Name, 0):
		return nil, bad("Name", "must be UTF-8 without NUL characters", nil)
	}
	e := &entry{name: spec.Name, missed: spec.Missed, options: slices.Clone(spec.Options)}
	switch spec.Missed {
	case MissedLatest, MissedSkip, MissedAll:
	default:
		return nil, bad("Missed", fmt.Sprintf("unknown policy %d", int(spec.Missed)), nil)
	}
	e.maxCatchUp = spec.MaxCatchUp
	if e.maxCatchUp == 0 {
		e.maxCatchUp = DefaultMaxCatchUp
	}
	if e.maxCatchUp < 1 || e.maxCatchUp > MaxCatchUpLimit {
		return nil, bad("MaxCatchUp", fmt.Sprintf("%d is outside 1–%d", spec.MaxCatchUp, MaxCatchUpLimit), nil)
	}
	e.grace = spec.Grace
	if e.grace == 0 {
		e.grace = DefaultGrace
	}
	if e.grace < 0 {
		return nil, bad("Grace", fmt.Sprintf("negative grace %s", spec.Grace), nil)
	}

	switch {
	case spec.Cron != "" && spec.Every != 0:
		return nil, bad("Cron", "give Cron or Every, not both", nil)
	case spec.Cron == "" && spec.Every == 0:
		return nil, bad("Cron", "give a cron expression (Cron) or an interval (Every)", nil)
	case spec.Every != 0:
		if err := e.compileEvery(spec); err != nil {
			return nil, err
		}
	default:
		if err := e.compileCron(spec); err != nil {
			return nil, err
		}
	}
	if _, ok := e.tm.next(now); !ok {
		return nil, bad("Cron", fmt.Sprintf("%q never fires in the five years after %s", spec.Cron, now.UTC().Format(time.RFC3339)), nil)
	}
	return e, nil
}

func (e *entry) compileEvery(spec Spec) error {
	bad := func(field, reason string) error {
		return &SpecError{Schedule: spec.Name, Field: field, Reason: reason}
	}
	switch {
	case spec.Every < time.Second:
		return bad("Every", fmt.Sprintf("%s is below the minimum of 1s", spec.Every))
	case spec.Every%time.Second != 0:
		return bad("Every", fmt.Sprintf("%s is not a whole number of seconds", spec.Every))
	case spec.Zone != "":
		return bad("Zone", "an interval is elapsed time and has no zone; set Anchor to align it, or use Cron for wall-clock times")
	}
	anchor := spec.Anchor
	if anchor.IsZero() {
		anchor = time.Unix(0, 0)
	}
	if anchor.Nanosecond() != 0 {
		return bad("Anchor", fmt.Sprintf("%s has a fraction of a second", anchor.Format(time.RFC3339Nano)))
	}
	if y := anchor.UTC().Year(); y < 1900 || y > 2200 {
		return bad("Anchor", fmt.Sprintf("year %d is outside 1900–2200", y))
	}
	e.tm = interval{every: spec.Every, anchor: anchor.UTC()}
	e.loc = time.UTC
	e.zoneText = "UTC"
	e.timingText = "@every " + spec.Every.String()
	if !spec.Anchor.IsZero() {
		e.timingText += " from " + anchor.UTC().Format(time.RFC3339)
	}
	return nil
}

func (e *entry) compileCron(spec Spec) error {
	bad := func(field, reason string, err error) error {
		return &SpecError{Schedule: spec.Name, Field: field, Reason: reason, Err: err}
	}
	if !spec.Anchor.IsZero() {
		return bad("Anchor", "Anchor aligns an interval (Every); a cron expression names its own times", nil)
	}
	expr := strings.TrimSpace(spec.Cron)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return bad("Cron", fmt.Sprintf("%q carries a time zone; give it in Zone instead", spec.Cron), nil)
	}
	if strings.HasPrefix(expr, "@every") {
		return bad("Cron", fmt.Sprintf("%q is an interval; use Every", spec.Cron), nil)
	}
	parser, err := cronParser()
	if err != nil {
		return bad("Cron", "the cron parser refused its options", err)
	}
	parsed, err := parser.Parse(expr)
	if err != nil {
		return bad("Cron", fmt.Sprintf("%q is not a cron expression", spec.Cron), err)
	}
	sched, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return bad("Cron", fmt.Sprintf("%q is not a wall-clock schedule", spec.Cron), nil)
	}
	zone := spec.Zone
	if zone == "" {
		zone = "UTC"
	}
	if zone == "Local" {
		return bad("Zone", `"Local" depends on the machine; name an IANA zone such as "Europe/Berlin" or "UTC"`, nil)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return bad("Zone", fmt.Sprintf("unknown time zone %q (an IANA name such as \"Europe/Berlin\"; a program without the system's zoneinfo can import time/tzdata)", zone), err)
	}
	e.tm = newCronTiming(sched, loc)
	e.loc = loc
	e.zoneText = zone
	e.timingText = expr
	return nil
}

// due returns the periods to enqueue when the schedule has decided every
// period up to evaluated and the time is now, oldest first, by the
// missed-period policy; passedOver is true when due periods were left out.
func (e *entry) due(evaluated, now time.Time) (periods []time.Time, passedOver bool) {
	switch e.missed {
	case MissedAll:
		return lastFirings(e.tm, evaluated, now, e.maxCatchUp)
	case MissedSkip:
		from := evaluated
		if cutoff := now.Add(-e.grace); cutoff.After(from) {
			from = cutoff
		}
		ps, more := lastFirings(e.tm, from, now, e.maxCatchUp)
		if !more && from.After(evaluated) {
			if first, ok := e.tm.next(evaluated); ok && !first.After(from) {
				more = true
			}
		}
		return ps, more
	default:
		return lastFirings(e.tm, evaluated, now, 1)
	}
}

// period builds the Period for firing time t, enqueued at now.
func (e *entry) period(t, now time.Time) Period {
	p := Period{Schedule: e.name, Time: t.In(e.loc), Key: Key(e.name, t), Late: now.Sub(t)}
	if prev, ok := prevFiring(e.tm, t, cronHorizon); ok {
		p.Prev = prev.In(e.loc)
	}
	return p
}

// Preview returns the first n firing times of spec after the instant
// after, in the schedule's zone, without a database: to check what a cron
// expression does at a DST transition, say. n is capped at 10,000. It
// returns the *SpecError Register would.
func Preview(spec Spec, after time.Time, n int) ([]time.Time, error) {
	e, err := compile(spec, after)
	if err != nil {
		return nil, err
	}
	n = min(n, 10000)
	out := make([]time.Time, 0, max(n, 0))
	t := after
	for len(out) < n {
		next, ok := e.tm.next(t)
		if !ok {
			break
		}
		out = append(out, next.In(e.loc))
		t = next
	}
	return out, nil
}

// topicOf returns the topic named by T's zero value.
func topicOf[T outbox.Message]() (topic string, err error) {
	var zero T
	if any(zero) == nil {
		return "", errors.New("the message type is an interface; register a concrete type, or use RegisterRaw")
	}
	defer func() {
		if r := recover(); r != nil {
			topic, err = "", fmt.Errorf("%T's Topic method failed on its zero value (%v); use a value receiver that returns a constant, or RegisterRaw", zero, r)
		}
	}()
	return zero.Topic(), nil
}
