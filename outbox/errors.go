package outbox

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid is matched by every validation error of this package; use
	// errors.As with *InvalidError for the field and the reason.
	ErrInvalid = errors.New("outbox: invalid input")

	// ErrPayloadTooLarge is matched when an encoded payload exceeds the
	// producer's limit; errors.As yields *PayloadTooLargeError.
	ErrPayloadTooLarge = errors.New("outbox: payload too large")

	// ErrNilQuerier is returned when a nil transaction, connection or pool is
	// passed where a Querier is required.
	ErrNilQuerier = errors.New("outbox: nil querier (transaction, connection or pool)")

	// ErrTxClosed is matched when the caller's transaction was already
	// committed or rolled back. The original driver error is wrapped too.
	ErrTxClosed = errors.New("outbox: transaction already closed")

	// ErrNotFound is returned by lookups for an entry that does not exist (or
	// was removed by retention).
	ErrNotFound = errors.New("outbox: entry not found")
)

// InvalidError describes one invalid field of an entry or option.
type InvalidError struct {
	Field  string // e.g. "topic", "key", "queue"
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("outbox: invalid %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// PayloadTooLargeError reports an encoded payload over the limit.
type PayloadTooLargeError struct {
	Topic string
	Size  int // encoded size in bytes
	Limit int // the limit in force
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("outbox: payload of topic %q is %d bytes, over the limit of %d", e.Topic, e.Size, e.Limit)
}

// Is reports whether target is ErrPayloadTooLarge.
func (e *PayloadTooLargeError) Is(target error) bool { return target == ErrPayloadTooLarge }
