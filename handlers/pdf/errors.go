package pdf

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidDocument is matched by every *ValidationError: a payload
	// that cannot be rendered as it is. The handler dead-letters such
	// entries at once (relay.Permanent), since a retry would fail the same
	// way.
	ErrInvalidDocument = errors.New("pdf: invalid document")

	// ErrTooLarge reports a rendered document larger than the handler's
	// limit (WithMaxBytes). The handler dead-letters the entry at once.
	ErrTooLarge = errors.New("pdf: rendered document too large")

	// ErrInvalidName reports an object name that DirStore refuses: empty,
	// absolute, not valid UTF-8, with "." or ".." elements, backslashes,
	// colons or control characters, with an element starting with "."
	// (reserved for temporary files) or longer than 200 bytes, or longer
	// than 1024 bytes in all. DirStore returns it wrapped in relay.Permanent.
	// Names made by ObjectName are always valid.
	ErrInvalidName = errors.New("pdf: invalid object name")
)

// ValidationError describes one field of a payload that fails validation,
// such as a negative quantity on an invoice line. It matches
// ErrInvalidDocument with errors.Is.
type ValidationError struct {
	// Field names the field, e.g. "lines[2].quantity".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error returns "pdf: invalid document: <field>: <reason>".
func (e *ValidationError) Error() string {
	return fmt.Sprintf("pdf: invalid document: %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidDocument.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidDocument }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
