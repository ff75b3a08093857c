package relay

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalidConfig is matched by every error New returns for a bad
	// Config or handler registration; errors.As yields *ConfigError.
	ErrInvalidConfig = errors.New("relay: invalid configuration")

	// ErrLeaseLost is the cause of a handler context cancelled because the
	// relay could not renew the entry's lease: another relay may already be
	// running the entry, and this attempt's completion will be rejected.
	// Read it with context.Cause(ctx).
	ErrLeaseLost = errors.New("relay: lease lost")

	// ErrShutdown is the cause of a handler context cancelled because the
	// relay is stopping and the shutdown deadline passed. An attempt that
	// returns an error after this is handed back without counting.
	ErrShutdown = errors.New("relay: shutting down")

	// ErrHandlerTimeout is the cause of a handler context cancelled because
	// the per-entry timeout passed.
	ErrHandlerTimeout = errors.New("relay: handler timeout")

	// ErrAlreadyRunning is returned by Run when the relay is already running.
	ErrAlreadyRunning = errors.New("relay: already running")

	// ErrPayloadTooLarge is the dead-letter reason of an entry whose payload
	// exceeds Config.MaxPayloadBytes, or whose headers exceed
	// outbox.MaxHeadersBytes (possible for rows written with plain SQL,
	// which bypasses the producer's checks). The relay never fetches such
	// an entry's payload or headers.
	ErrPayloadTooLarge = errors.New("relay: payload too large")

	// ErrNotMigrated is returned by Run when the outbox tables are missing
	// or older than the schema version this relay needs (version 5).
	ErrNotMigrated = errors.New("relay: outbox schema missing or too old; run migrations.Up or `txoutbox migrate up`")
)

// ConfigError describes one invalid Config field or registration.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("relay: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// PermanentError marks a handler error that must not be retried: the entry
// is dead-lettered at once. Create it with Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + errString(e.Err) }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the relay dead-letters the entry at once
// instead of retrying it. Use it for failures a retry cannot fix: a
// rejected address, a 4xx from a webhook, a payload that makes no sense.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

// RetryAfterError asks for the next attempt no sooner than After. Create it
// with RetryAfter.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %s", e.After, errString(e.Err))
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err with a hint for when to try again (such as an HTTP
// Retry-After header). The hint replaces the retry policy's delay for this
// attempt; attempts still count against the entry's limit.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	if d < 0 {
		d = 0
	}
	return &RetryAfterError{After: d, Err: err}
}

// DecodeError reports a payload that does not decode into the handler's
// type. Such entries are dead-lettered at once: a retry cannot fix them.
type DecodeError struct {
	Topic string
	Type  string
	Err   error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("cannot decode payload of topic %q into %s: %v", e.Topic, e.Type, e.Err)
}

// Unwrap returns the JSON error.
func (e *DecodeError) Unwrap() error { return e.Err }

// PanicError is the error of an attempt whose handler panicked. It is
// retried like any other error.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
