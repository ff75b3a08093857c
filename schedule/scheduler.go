package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
)

// Headers the scheduler adds to every entry it enqueues.
const (
	// HeaderSchedule carries the schedule's name.
	HeaderSchedule = "txoutbox-schedule"
	// HeaderPeriod carries the period's time in the schedule's zone,
	// RFC 3339.
	HeaderPeriod = "txoutbox-period"
)

// DefaultPollInterval is Config.PollInterval when it is zero.
const DefaultPollInterval = 30 * time.Second

const (
	minPollInterval = 10 * time.Millisecond
	// lockedRetry is how soon a schedule that another scheduler was firing
	// is looked at again.
	lockedRetry = 100 * time.Millisecond
)

// Config configures a Scheduler. Every field has a documented default.
type Config struct {
	// Schedules is the registry of schedules to evaluate. Required, with at
	// least one schedule; New seals it.
	Schedules *Schedules

	// Now, when set, replaces the clock (tests, simulations). Default nil:
	// the database's now(), read with the schedules on every evaluation,
	// so that every scheduler of a database agrees on the time whatever
	// the clocks of their machines say.
	Now func() time.Time

	// PollInterval is the longest Run waits between evaluations. Run
	// otherwise sleeps until the next firing of any schedule; the interval
	// bounds the wait after a failed evaluation, and how long a change of
	// the clock goes unnoticed. Default 30s; at least 10ms.
	PollInterval time.Duration

	// Producer writes the entries, with its payload limit. The zero value
	// applies outbox's defaults.
	Producer outbox.Producer

	// Logger receives the scheduler's logs: each firing (info), periods
	// passed over by a missed-period policy (warn), failed evaluations
	// (warn). Default slog.Default().
	Logger *slog.Logger
}

// Schedules is a registry of schedules, passed to New in Config.Schedules.
// Register with Register and RegisterRaw, which validate each schedule at
// once. New seals the registry: it is immutable from then on, and may be
// shared by any number of schedulers (one per connection session, say).
type Schedules struct {
	mu      sync.Mutex
	entries []*entry
	byName  map[string]*entry
	sealed  bool
}

// NewSchedules returns an empty registry.
func NewSchedules() *Schedules { return &Schedules{byName: map[string]*entry{}} }

// BuildFunc builds the entry of one period. It runs inside the transaction
// that enqueues the entry and advances the schedule, with the schedule's
// row locked, so keep it quick: put the period in the payload and let the
// handler do the heavy work (reading the data of [Prev, Time), rendering,
// sending). An error enqueues nothing; the period stays due.
type BuildFunc[T outbox.Message] func(ctx context.Context, p Period) (T, error)

// Register adds a schedule to set whose entries are messages of type T,
// built for each period by build. The topic is the one T's zero value
// names. It returns a *SpecError (errors.Is ErrInvalidSpec) for an invalid
// Spec — a cron expression that does not parse, an unknown zone, a
// duplicate name — and ErrSealed once set was passed to New. Nothing is
// written to the database until a scheduler evaluates.
func Register[T outbox.Message](set *Schedules, spec Spec, build BuildFunc[T]) error {
	if build == nil {
		return &SpecError{Schedule: spec.Name, Field: "build", Reason: "nil build function"}
	}
	topic, err := topicOf[T]()
	if err != nil {
		return &SpecError{Schedule: spec.Name, Field: "build", Reason: "no topic", Err: err}
	}
	return set.add(spec, topic, func(ctx context.Context, p Period) (outbox.Message, error) {
		return build(ctx, p)
	})
}

// RegisterRaw adds a schedule to set whose entries have the given topic
// and a JSON payload built for each period, for producers without a Go
// type (the sidecar's configuration file). Errors are those of Register.
func RegisterRaw(set *Schedules, spec Spec, topic string, build func(ctx context.Context, p Period) (json.RawMessage, error)) error {
	if build == nil {
		return &SpecError{Schedule: spec.Name, Field: "build", Reason: "nil build function"}
	}
	return set.add(spec, topic, func(ctx context.Context, p Period) (outbox.Message, error) {
		payload, err := build(ctx, p)
		if err != nil {
			return nil, err
		}
		return outbox.Raw{TopicName: topic, Payload: payload}, nil
	})
}

func (set *Schedules) add(spec Spec, topic string, build func(context.Context, Period) (outbox.Message, error)) error {
	if set == nil {
		return &SpecError{Schedule: spec.Name, Field: "registry", Reason: "nil *Schedules"}
	}
	if topic == "" || len(topic) > outbox.MaxTopicLen {
		return &SpecError{Schedule: spec.Name, Field: "topic", Reason: fmt.Sprintf("topic %q must be 1–%d bytes", topic, outbox.MaxTopicLen)}
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.sealed {
		return ErrSealed
	}
	if _, dup := set.byName[spec.Name]; dup {
		return &SpecError{Schedule: spec.Name, Field: "Name", Reason: "already registered"}
	}
	e, err := compile(spec, time.Now())
	if err != nil {
		return err
	}
	e.topic, e.build = topic, build
	set.entries = append(set.entries, e)
	set.byName[e.name] = e
	return nil
}

// Names returns the registered schedules' names, in registration order.
func (set *Schedules) Names() []string {
	set.mu.Lock()
	defer set.mu.Unlock()
	out := make([]string, len(set.entries))
	for i, e := range set.entries {
		out[i] = e.name
	}
	return out
}

// Len returns how many schedules are registered.
func (set *Schedules) Len() int {
	set.mu.Lock()
	defer set.mu.Unlock()
	return len(set.entries)
}

// seal freezes set and returns its entries.
func (set *Schedules) seal() []*entry {
	set.mu.Lock()
	defer set.mu.Unlock()
	set.sealed = true
	return slices.Clone(set.entries)
}

// Scheduler enqueues the periods of a registry's schedules into the
// outbox. Create it with New and run it with Run next to a relay. Any
// number of schedulers — goroutines, processes, machines — may run the same
// schedules against one database: each period is enqueued exactly once
// between them.
type Scheduler struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     *slog.Logger
	entries []*entry // immutable

	mu      sync.Mutex
	running bool
}

// New validates cfg and returns a scheduler over pool for the schedules in
// cfg.Schedules, which it seals.
func New(pool *pgxpool.Pool, cfg Config) (*Scheduler, error) {
	if pool == nil {
		return nil, &ConfigError{Field: "pool", Reason: "nil *pgxpool.Pool"}
	}
	if cfg.Schedules == nil {
		return nil, &ConfigError{Field: "Schedules", Reason: "required"}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PollInterval < minPollInterval {
		return nil, &ConfigError{Field: "PollInterval", Reason: fmt.Sprintf("%s is below the minimum %s", cfg.PollInterval, minPollInterval)}
	}
	if cfg.Producer.MaxPayloadBytes < 0 {
		return nil, &ConfigError{Field: "Producer.MaxPayloadBytes", Reason: "negative"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	entries := cfg.Schedules.seal()
	if len(entries) == 0 {
		return nil, &ConfigError{Field: "Schedules", Reason: "no schedule registered"}
	}
	return &Scheduler{pool: pool, cfg: cfg, log: cfg.Logger, entries: entries}, nil
}

// Names returns the scheduler's schedules' names, in registration order.
func (s *Scheduler) Names() []string {
	out := make([]string, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.name
	}
	return out
}

// Firing is one period enqueued by an evaluation.
type Firing struct {
	// Schedule is the schedule's name.
	Schedule string
	// Period is the period's firing time, in the schedule's zone.
	Period time.Time
	// Key is the entry's idempotency key.
	Key string
	// EntryID is the entry's id.
	EntryID int64
	// Duplicate is true when an entry with this topic and key already
	// existed (the schedule's row was reset or deleted, say), so nothing
	// new was written.
	Duplicate bool
}

// Evaluation reports one evaluation of every registered schedule.
type Evaluation struct {
	// Now is the time the evaluation used: the database's clock, or
	// Config.Now.
	Now time.Time
	// Fired lists the periods this evaluation enqueued, by schedule and
	// then in time order. Periods another scheduler enqueued are not
	// listed.
	Fired []Firing
	// Next is the earliest firing still to come among the schedules that
	// evaluated without error: when to evaluate again. Zero when none is
	// known.
	Next time.Time
}

func (ev *Evaluation) noteNext(t time.Time) {
	if !t.IsZero() && (ev.Next.IsZero() || t.Before(ev.Next)) {
		ev.Next = t
	}
}

// Evaluate runs one evaluation: for every registered schedule with a
// period due, in one short transaction, it locks the schedule's row,
// enqueues the periods its missed-period policy selects (each with its
// idempotency key) and records how far the schedule is decided. A
// schedule that another scheduler is evaluating at that moment is left to
// it. A schedule seen for the first time is recorded as decided up to now,
// so that periods before it existed never fire.
//
// Errors of single schedules (a failing build, a refused payload) are
// joined into the returned error while the other schedules proceed; the
// Evaluation lists what was enqueued. Run calls Evaluate in a loop; tests
// and simulations call it directly with a Config.Now they control.
func (s *Scheduler) Evaluate(ctx context.Context) (Evaluation, error) {
	entries := s.entries
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.name
	}
	decided, dbNow, err := s.read(ctx, names)
	if err != nil {
		return Evaluation{}, err
	}
	now := dbNow
	if s.cfg.Now != nil {
		now = s.cfg.Now()
	}
	ev := Evaluation{Now: now}
	var errs []error
	for _, e := range entries {
		eu, known := decided[e.name]
		if !known {
			next, ok := e.tm.next(now)
			if _, err := s.pool.Exec(ctx, sqlCreate, e.name, e.topic, e.timingText, e.zoneText,
				e.missed.String(), now, nullTime(next, ok)); err != nil {
				errs = append(errs, fmt.Errorf("schedule %q: recording it: %w", e.name, err))
				continue
			}
			ev.noteNext(next)
			continue
		}
		next, ok := e.tm.next(eu)
		if !ok {
			continue // never fires again
		}
		if next.After(now) {
			ev.noteNext(next)
			continue
		}
		fired, upcoming, err := s.fire(ctx, e, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ev.Fired = append(ev.Fired, fired...)
		ev.noteNext(upcoming)
	}
	return ev, errors.Join(errs...)
}

// read returns how far each schedule with a row is decided, and the
// database clock.
func (s *Scheduler) read(ctx context.Context, names []string) (map[string]time.Time, time.Time, error) {
	rows, err := s.pool.Query(ctx, sqlRead, names)
	if err != nil {
		return nil, time.Time{}, dbError("reading schedules", err)
	}
	defer rows.Close()
	decided := make(map[string]time.Time, len(names))
	var now time.Time
	for rows.Next() {
		var name string
		var eu *time.Time
		if err := rows.Scan(&name, &eu, &now); err != nil {
			return nil, time.Time{}, dbError("reading schedules", err)
		}
		if eu != nil {
			decided[name] = *eu
		}
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, dbError("reading schedules", err)
	}
	return decided, now, nil
}

// fire enqueues the due periods of e in one transaction. It returns the
// periods enqueued and the schedule's next firing.
func (s *Scheduler) fire(ctx context.Context, e *entry, now time.Time) ([]Firing, time.Time, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("schedule %q: %w", e.name, dbError("begin", err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var eu time.Time
	err = tx.QueryRow(ctx, sqlLock, e.name).Scan(&eu)
	if errors.Is(err, pgx.ErrNoRows) {
		// Another scheduler holds the row: it is firing this schedule.
		return nil, now.Add(lockedRetry), nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("schedule %q: %w", e.name, dbError("locking its row", err))
	}
	if !now.After(eu) {
		next, _ := e.tm.next(eu)
		return nil, next, nil
	}
	periods, passedOver := e.due(eu, now)
	if len(periods) == 0 && !passedOver {
		// Decided meanwhile by another scheduler.
		next, _ := e.tm.next(eu)
		return nil, next, nil
	}

	items := make([]outbox.Item, 0, len(periods))
	ps := make([]Period, 0, len(periods))
	for _, t := range periods {
		p := e.period(t, now)
		msg, err := e.build(ctx, p)
		if err == nil {
			err = checkMessage(msg, e.topic)
		}
		if err != nil {
			return nil, time.Time{}, &BuildError{Schedule: e.name, Period: p.Time, Err: err}
		}
		opts := make([]outbox.Option, 0, len(e.options)+2)
		opts = append(opts, e.options...)
		opts = append(opts,
			outbox.WithHeaders(map[string]string{HeaderSchedule: e.name, HeaderPeriod: p.Time.Format(time.RFC3339)}),
			outbox.WithKey(p.Key))
		items = append(items, outbox.NewItem(msg, opts...))
		ps = append(ps, p)
	}
	var res []outbox.Enqueued
	if len(items) > 0 {
		res, err = s.cfg.Producer.EnqueueBatch(ctx, tx, items)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("schedule %q: enqueueing %d period(s) from %s: %w",
				e.name, len(items), ps[0].Time.Format(time.RFC3339), err)
		}
	}

	decidedUntil := now
	next, hasNext := e.tm.next(decidedUntil)
	var lastPeriod *time.Time
	var lastKey *string
	var lastID *int64
	if n := len(ps); n > 0 {
		t, k, id := ps[n-1].Time, ps[n-1].Key, res[n-1].ID
		lastPeriod, lastKey, lastID = &t, &k, &id
	}
	if _, err := tx.Exec(ctx, sqlAdvance, e.name, e.topic, e.timingText, e.zoneText, e.missed.String(),
		decidedUntil, nullTime(next, hasNext), lastPeriod, lastKey, lastID); err != nil {
		return nil, time.Time{}, fmt.Errorf("schedule %q: %w", e.name, dbError("recording the evaluation", err))
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, time.Time{}, fmt.Errorf("schedule %q: %w", e.name, dbError("commit", err))
	}

	fired := make([]Firing, len(ps))
	for i, p := range ps {
		fired[i] = Firing{Schedule: e.name, Period: p.Time, Key: p.Key, EntryID: res[i].ID, Duplicate: res[i].Duplicate}
		s.log.Info("txoutbox: schedule fired", "schedule", e.name, "topic", e.topic,
			"period", p.Time.Format(time.RFC3339), "key", p.Key, "entry_id", res[i].ID,
			"duplicate", res[i].Duplicate, "late", p.Late)
	}
	if passedOver {
		attrs := []any{"schedule", e.name, "policy", e.missed.String(),
			"decided_from", eu.In(e.loc).Format(time.RFC3339), "decided_until", now.In(e.loc).Format(time.RFC3339)}
		if len(ps) > 0 {
			attrs = append(attrs, "enqueued_from", ps[0].Time.Format(time.RFC3339))
		}
		s.log.Warn("txoutbox: schedule passed over missed periods", attrs...)
	}
	if !hasNext {
		return fired, time.Time{}, nil
	}
	return fired, next, nil
}

// checkMessage refuses a nil message or one of another topic.
func checkMessage(msg outbox.Message, topic string) error {
	if isNil(msg) {
		return errors.New("the build function returned a nil message")
	}
	if got := msg.Topic(); got != topic {
		return fmt.Errorf("the build function returned a message of topic %q; the schedule was registered for %q", got, topic)
	}
	return nil
}

// Run evaluates the schedules until ctx is done, then returns nil. It
// sleeps until the next firing of any schedule (at most
// Config.PollInterval) between evaluations; a failed evaluation is logged
// and retried after PollInterval. It returns an error at once when no
// schedule is registered, when it is already running, or when the
// database is not reachable or not migrated.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrAlreadyRunning
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	checkCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	var n int64
	err := s.pool.QueryRow(checkCtx, sqlCheckSchema).Scan(&n)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return dbError("checking the schema", err)
	}
	s.log.Info("txoutbox: scheduler started", "schedules", s.Names())

	failing := false
	for {
		ev, err := s.Evaluate(ctx)
		if ctx.Err() != nil {
			s.log.Info("txoutbox: scheduler stopped")
			return nil
		}
		wait := s.cfg.PollInterval
		switch {
		case err != nil:
			if !failing {
				s.log.Warn("txoutbox: schedule evaluation failed; retrying", "error", err, "retry_in", wait)
			}
			failing = true
		case failing:
			s.log.Info("txoutbox: schedules evaluating again")
			failing = false
		}
		if !ev.Next.IsZero() {
			if d := ev.Next.Sub(ev.Now); d < wait {
				wait = max(d, minPollInterval)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.log.Info("txoutbox: scheduler stopped")
			return nil
		case <-t.C:
		}
	}
}

// isNil reports whether v is nil or a typed nil pointer.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// dbError marks a missing table as ErrNotMigrated.
func dbError(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return fmt.Errorf("%w: %w", ErrNotMigrated, err)
	}
	return fmt.Errorf("schedule: %s: %w", op, err)
}

func nullTime(t time.Time, ok bool) *time.Time {
	if !ok || t.IsZero() {
		return nil
	}
	return &t
}
