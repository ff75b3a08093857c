package rabbitmq

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidConfig matches every *ConfigError: New refused the
	// configuration.
	ErrInvalidConfig = errors.New("rabbitmq: invalid configuration")

	// ErrUnroutable matches an *UnroutableError: the broker returned a
	// mandatory message because no queue is bound for its routing key.
	// Dead-lettered by default (Config.RetryUnroutable retries it).
	ErrUnroutable = errors.New("rabbitmq: message unroutable")

	// ErrNacked is a negative publisher confirm: the broker did not take
	// responsibility for the message (a queue refused it, say one with
	// x-overflow=reject-publish that is full). Retried.
	ErrNacked = errors.New("rabbitmq: broker nacked the message")

	// ErrConfirmTimeout is a publisher confirm that did not come within
	// Config.ConfirmTimeout. The message may or may not have reached the
	// queue; it is retried, with the same message-id.
	ErrConfirmTimeout = errors.New("rabbitmq: no publisher confirm in time")

	// ErrRoutingKey is a routing key template that failed on an entry (a
	// payload field it names is missing, say) or produced a key over 255
	// bytes. Dead-lettered: a retry renders the same template on the same
	// entry.
	ErrRoutingKey = errors.New("rabbitmq: cannot build the routing key")

	// ErrClosed is returned by Handle after Close. Retried (by another
	// relay, or this one after a restart).
	ErrClosed = errors.New("rabbitmq: publisher closed")
)

// ConfigError is one problem with a Config. It matches ErrInvalidConfig.
type ConfigError struct {
	// Field names the Config field, e.g. "RoutingKey".
	Field string
	// Reason says what is wrong, for a person.
	Reason string
	// Err is the underlying error, if any (a template parse error).
	Err error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("rabbitmq: invalid configuration: %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the underlying error, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// UnroutableError is a mandatory message the broker returned (basic.return):
// the exchange exists, but routed the message to no queue, which usually
// means a binding is missing. It matches ErrUnroutable.
type UnroutableError struct {
	Exchange, RoutingKey string
	// ReplyCode and ReplyText are the broker's (312 NO_ROUTE).
	ReplyCode uint16
	ReplyText string
}

func (e *UnroutableError) Error() string {
	return fmt.Sprintf("rabbitmq: exchange %s returned the message with routing key %q: %d %s (no queue is bound for it; add a binding, then replay the dead entries)",
		exchangeName(e.Exchange), e.RoutingKey, e.ReplyCode, e.ReplyText)
}

// Is reports whether target is ErrUnroutable.
func (e *UnroutableError) Is(target error) bool { return target == ErrUnroutable }

// BrokerError is an error the broker raised on the publishing channel or
// the connection (it closes the channel with it): a missing exchange (404),
// refused access (403), a message too large (406), a forced close (320).
// Errors that a retry cannot fix are wrapped in relay.Permanent; see
// Permanent.
type BrokerError struct {
	Exchange string
	// Err is the client's error, with the AMQP reply code.
	Err *amqp.Error
}

func (e *BrokerError) Error() string {
	return fmt.Sprintf("rabbitmq: publishing to exchange %s: broker closed the channel: %d %s", exchangeName(e.Exchange), e.Err.Code, e.Err.Reason)
}

// Unwrap returns the *amqp.Error.
func (e *BrokerError) Unwrap() error { return e.Err }

// Permanent reports whether the broker's code means a retry cannot succeed
// without a change of configuration or data: 403 access refused, 404 not
// found (the exchange), 406 precondition failed, 311 content too large,
// 402 invalid path, 530 not allowed, 540 not implemented and the protocol
// errors 502 and 503. Everything else (320 connection forced, 504 channel
// error, 506 resource error, 541 internal error, ...) is retried.
func (e *BrokerError) Permanent() bool {
	switch e.Err.Code {
	case amqp.AccessRefused, amqp.NotFound, amqp.PreconditionFailed, amqp.ContentTooLarge,
		amqp.InvalidPath, amqp.NotAllowed, amqp.NotImplemented, amqp.SyntaxError, amqp.CommandInvalid:
		return true
	}
	return false
}

// exchangeName names an exchange in messages; "" is the default exchange.
func exchangeName(x string) string {
	if x == "" {
		return `"" (the default exchange)`
	}
	return fmt.Sprintf("%q", x)
}
