package pdf

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig is matched by every error New and Register return
	// for a bad Config, and by DirStore's error for an empty Dir; errors.As
	// yields a *ConfigError for each problem.
	ErrInvalidConfig = errors.New("pdf: invalid configuration")

	// ErrInvalidDocument is matched by every *ValidationError: a payload
	// that cannot be rendered as it is. The handler dead-letters such
	// entries at once (relay.Permanent), since a retry would fail the same
	// way.
	ErrInvalidDocument = errors.New("pdf: invalid document")

	// ErrTooLarge reports a rendered document larger than the handler's
	// limit (Config.MaxBytes). The handler dead-letters the entry at once.
	ErrTooLarge = errors.New("pdf: rendered document too large")

	// ErrInvalidName reports an object name that DirStore refuses: empty,
	// absolute, not valid UTF-8, with "." or ".." elements, backslashes,
	// colons or control characters, with an element starting with "."
	// (reserved for temporary files) or longer than 200 bytes, or longer
	// than 1024 bytes in all. DirStore returns it wrapped in relay.Permanent.
	// Names made by ObjectName are always valid.
	ErrInvalidName = errors.New("pdf: invalid object name")
)

// ConfigError is one problem with a Config (or with a DirStore given as
// its Store). New and Register report every problem found, joined
// (errors.Join); each matches ErrInvalidConfig with errors.Is.
type ConfigError struct {
	// Field is the field at fault, e.g. "MaxBytes", "Prefix", "Store.Dir".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error returns "pdf: invalid config <Field>: <Reason>".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("pdf: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

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
