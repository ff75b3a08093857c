package sidecar

import (
	"errors"
	"flag"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/schedule"
)

// ErrInvalidConfig is matched (errors.Is) by every *ConfigError.
var ErrInvalidConfig = errors.New("sidecar: invalid configuration")

// ConfigError names one invalid setting of the configuration file. A
// Kind's Register returns one to name a field of its "config" object
// (Field "max_bytes", "endpoints.crm.url"); the command then reports it
// under the handler's path, such as "handlers[2].config.max_bytes". Main
// exits with ExitUsage for it.
type ConfigError struct {
	// Field is the setting's path in the file, as JSON spells it; empty
	// when the error is about the whole file (unreadable, not JSON).
	Field string
	// Reason says what is wrong, for a person.
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return "sidecar: invalid config: " + e.Reason
	}
	return fmt.Sprintf("sidecar: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// usageError is a bad command line: nothing was done. Main prints it, then
// the command's usage when there is one, and exits with ExitUsage.
type usageError struct {
	err   error
	usage func() // prints the command's flags and examples; may be nil
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// usageOf marks err as a usage error.
func usageOf(err error) error { return &usageError{err: err} }

// commandError names the subcommand an error comes from ("dead retry"),
// for the message.
type commandError struct {
	name string
	err  error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// exitCode reports err, once, on o.Stderr as "<program> <command>: ..."
// and returns the exit code for it: ExitOK for nil and for help that was
// asked for (flag.ErrHelp, already printed), ExitUsage for usage and
// configuration errors, ExitFailure for the rest.
func exitCode(o *Options, command string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ce *commandError
	if errors.As(err, &ce) {
		command = ce.name
	}
	fmt.Fprintf(o.Stderr, "%s %s: %s\n", o.Name, command, escapeControls(explain(o, err), true))
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		if ue.usage != nil {
			ue.usage()
		}
		return ExitUsage
	case errors.Is(err, ErrInvalidConfig):
		return ExitUsage
	}
	return ExitFailure
}

// explain says what to do about the errors that have a known remedy.
func explain(o *Options, err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, schedule.ErrNotMigrated):
		return fmt.Sprintf("the schedules table is missing in this database: run '%s migrate up' (%v)", o.Name, err)
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return fmt.Sprintf("the outbox tables are missing in this database: run '%s migrate up' (%v)", o.Name, err)
	}
	return err.Error()
}
