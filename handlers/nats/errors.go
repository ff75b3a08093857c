package nats

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error New, Register and Handle return matches one
// of them with errors.Is; the typed errors add detail for errors.As.
var (
	// ErrInvalidConfig is matched by every error New and Register return
	// for a bad Config; errors.As yields a *ConfigError for each problem.
	ErrInvalidConfig = errors.New("nats: invalid configuration")

	// ErrInvalidSubject is matched by a ConfigError for a Subject template
	// that does not parse or names a field SubjectData lacks, and by the
	// (permanent) error of an entry whose subject is not a valid subject
	// to publish to: empty, with an empty token ("a..b"), whitespace or a
	// wildcard ("*", ">"), or a template that fails on the entry (a
	// payload field missing).
	ErrInvalidSubject = errors.New("nats: invalid subject")

	// ErrNoStream is matched by the (permanent) error of an entry whose
	// subject no JetStream stream captures: JetStream answered that no
	// stream listens on it (or that Config.Stream does not exist, or is
	// not the stream that captures it). The entry is dead-lettered; create
	// the stream, or fix the template, then replay it (outbox.Replay).
	ErrNoStream = errors.New("nats: no stream for subject")

	// ErrPermission is matched by the (permanent) error of an entry whose
	// subject the connection's user may not publish to: the server
	// refused the publish with a permissions violation.
	ErrPermission = errors.New("nats: publish not permitted")

	// ErrRejected is matched by the (permanent) error of a message the
	// stream refused for good: larger than the stream's or the server's
	// limit.
	ErrRejected = errors.New("nats: message rejected")

	// ErrAckTimeout is matched by the error of a publish whose ack did not
	// come within Config.AckTimeout. The entry is retried; the re-send
	// carries the same Nats-Msg-Id, so a message that was stored after all
	// is not stored twice within the stream's duplicate window.
	ErrAckTimeout = errors.New("nats: no publish ack in time")

	// ErrUnavailable is matched by the error of a publish that JetStream
	// could not take now: the connection is down or reconnecting, no
	// server answered (a stream or its leader temporarily unavailable),
	// or JetStream reported a transient failure. The entry is retried.
	ErrUnavailable = errors.New("nats: JetStream unavailable")
)

// ConfigError is one problem with a Config. New and Register return all
// problems found, joined (errors.Join); each matches ErrInvalidConfig and
// its specific sentinel, if any, with errors.Is.
type ConfigError struct {
	// Field is the field at fault, e.g. "Subject", "Topics[2]", "AckTimeout".
	Field string
	// Reason says what is wrong, without secrets.
	Reason string
	// Err is the specific sentinel (ErrInvalidSubject), if any.
	Err error
}

// Error returns "nats: invalid config <field>: <reason>".
func (e *ConfigError) Error() string {
	msg := "nats: invalid config " + e.Field + ": "
	if e.Err != nil {
		msg += strings.TrimPrefix(e.Err.Error(), "nats: ")
		if e.Reason != "" {
			msg += ": "
		}
	}
	return msg + e.Reason
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the specific sentinel, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// PublishError is a publish that failed: where it went and why. Handle
// returns it wrapped with relay.Permanent when a retry cannot help.
type PublishError struct {
	// Topic and Key are the entry's.
	Topic, Key string
	// Subject is the subject the entry was published to ("" when the
	// template failed).
	Subject string
	// Err is the cause: one of the sentinels, joined with the client's
	// error when there is one.
	Err error
}

func (e *PublishError) Error() string {
	where := fmt.Sprintf("entry %s/%s", e.Topic, e.Key)
	if e.Subject != "" {
		where += fmt.Sprintf(" to subject %q", e.Subject)
	}
	return fmt.Sprintf("nats: publishing %s: %s", where, strings.TrimPrefix(e.Err.Error(), "nats: "))
}

// Unwrap returns the cause.
func (e *PublishError) Unwrap() error { return e.Err }
