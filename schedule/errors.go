package schedule

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalidSpec is matched by every error Register returns for a bad
	// Spec (a cron expression that does not parse, an unknown time zone, a
	// duplicate name, ...); errors.As yields *SpecError.
	ErrInvalidSpec = errors.New("schedule: invalid schedule")

	// ErrInvalidConfig is matched by every error New returns for a bad
	// Config; errors.As yields *ConfigError.
	ErrInvalidConfig = errors.New("schedule: invalid configuration")

	// ErrNotMigrated is returned by Run, Evaluate and List when the
	// outbox_schedules table is missing: run migrations.Up or
	// `txoutbox migrate up`.
	ErrNotMigrated = errors.New("schedule: table outbox_schedules not found; run migrations.Up or `txoutbox migrate up`")

	// ErrAlreadyRunning is returned by Run when the scheduler is already
	// running.
	ErrAlreadyRunning = errors.New("schedule: already running")

	// ErrSealed is returned by Register once the registry was passed to
	// New: register every schedule before creating a scheduler.
	ErrSealed = errors.New("schedule: the registry is in use by a scheduler; register before calling New")
)

// SpecError describes what is wrong with one schedule at registration.
type SpecError struct {
	// Schedule is the schedule's name (empty when the name is the problem).
	Schedule string
	// Field is the Spec field at fault: "Name", "Cron", "Zone", "Every",
	// "Anchor", "Missed", "MaxCatchUp", "Grace", or "build" and "topic"
	// for the build function and the message type.
	Field string
	// Reason says what is wrong, for a person.
	Reason string
	// Err is the underlying error, such as the cron parser's or
	// time.LoadLocation's; nil when there is none.
	Err error
}

// Error names the schedule, the field and the reason.
func (e *SpecError) Error() string {
	name := ""
	if e.Schedule != "" {
		name = fmt.Sprintf(" %q", e.Schedule)
	}
	if e.Err != nil {
		return fmt.Sprintf("schedule%s: invalid %s: %s: %v", name, e.Field, e.Reason, e.Err)
	}
	return fmt.Sprintf("schedule%s: invalid %s: %s", name, e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidSpec.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// Unwrap returns the underlying error, if any.
func (e *SpecError) Unwrap() error { return e.Err }

// ConfigError describes one invalid Config field.
type ConfigError struct {
	Field  string // e.g. "Schedules", "PollInterval"
	Reason string // what is wrong, for a person
}

// Error names the field and the reason.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("schedule: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// BuildError is returned (joined into Evaluate's error) when a schedule's
// build function fails, or builds a message of another topic than the one
// registered. Nothing is enqueued for the schedule in that evaluation, and
// the period stays due: the next evaluation tries again, subject to the
// schedule's missed-period policy.
type BuildError struct {
	Schedule string    // the schedule's name
	Period   time.Time // the period being built, in the schedule's zone
	Err      error     // what the build function returned, or why its message was refused
}

// Error names the schedule and the period.
func (e *BuildError) Error() string {
	return fmt.Sprintf("schedule %q: building the entry for %s: %v", e.Schedule, e.Period.Format(time.RFC3339), e.Err)
}

// Unwrap returns the build function's error.
func (e *BuildError) Unwrap() error { return e.Err }
