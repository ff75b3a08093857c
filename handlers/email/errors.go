package email

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig is matched (errors.Is) by every error New and
	// Register return for a bad Config; errors.As yields a *ConfigError.
	// It is also matched by the permanent error of a delivery that failed
	// because the configuration does not fit the server: authentication
	// the server does not offer or refuses (wrong credentials, a mechanism
	// it lacks, AUTH refused without TLS). That *ConfigError names the
	// setting to change, and wraps the *SMTPError when the server replied.
	ErrInvalidConfig = errors.New("email: invalid configuration")

	// ErrInvalidMessage is matched by the errors of a Message that cannot be
	// sent whatever the server says: no recipients, too many, an address
	// that does not parse (errors.As yields an *AddressError then), no
	// template name. The handler returns it wrapped in relay.Permanent.
	ErrInvalidMessage = errors.New("email: invalid message")

	// ErrUnknownTemplate is matched by the error of a Message whose Template
	// names no template of the handler. The handler returns it wrapped in
	// relay.Permanent.
	ErrUnknownTemplate = errors.New("email: unknown template")
)

// ConfigError describes one invalid Config field, found by New or, for a
// setting that does not fit the server, by a delivery. It matches
// ErrInvalidConfig.
type ConfigError struct {
	Field  string // the Config field, e.g. "From" or `Templates["welcome"].HTML`
	Reason string // what is wrong with it
	Err    error  // the underlying error, if any
}

// Error says the field and the reason.
func (e *ConfigError) Error() string {
	msg := "email: invalid config " + e.Field + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the underlying error, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// AddressError reports a recipient address that does not parse as an
// RFC 5322 address. It matches ErrInvalidMessage.
type AddressError struct {
	Address string // the address as given in Message.To
	Err     error  // the parse error (from net/mail)
}

// Error says the address and why it does not parse.
func (e *AddressError) Error() string {
	return fmt.Sprintf("email: invalid recipient address %q: %v", e.Address, e.Err)
}

// Is reports whether target is ErrInvalidMessage.
func (e *AddressError) Is(target error) bool { return target == ErrInvalidMessage }

// Unwrap returns the parse error.
func (e *AddressError) Unwrap() error { return e.Err }

// TemplateError reports a template that failed to render a message: a
// missing data key, a function that returned an error, a subject with a
// line break, an oversized body. A retry renders the same data the same
// way, so the handler returns it wrapped in relay.Permanent.
type TemplateError struct {
	Template string // the template's name
	Part     string // "subject", "text" or "html"
	Err      error  // what went wrong
}

// Error says the template, the part and the failure.
func (e *TemplateError) Error() string {
	return fmt.Sprintf("email: template %q, %s: %v", e.Template, e.Part, e.Err)
}

// Unwrap returns the underlying error.
func (e *TemplateError) Unwrap() error { return e.Err }

// SMTPError is a delivery the SMTP server refused with a reply code: 4xx
// (temporary, retried by the relay) or 5xx (permanent: the handler wraps it
// in relay.Permanent and the entry is dead-lettered). Failures without a
// reply (no connection, a dropped connection, a TLS failure, a timeout) are
// not SMTPErrors; they are retried.
type SMTPError struct {
	Code         int    // the reply code, 400–599
	EnhancedCode string // the RFC 3463 status code, e.g. "5.1.1", when the server sent one
	Err          error  // the client library's error, which quotes the reply
}

// Error says the reply code and the server's reply.
func (e *SMTPError) Error() string {
	how := "rejected by the SMTP server"
	if e.Temporary() {
		how = "refused for now by the SMTP server"
	}
	return fmt.Sprintf("email: %s (%d): %v", how, e.Code, e.Err)
}

// Temporary reports whether the reply was a 4xx one, which a later attempt
// may get past.
func (e *SMTPError) Temporary() bool { return e.Code < 500 }

// Unwrap returns the client library's error.
func (e *SMTPError) Unwrap() error { return e.Err }
