package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Sentinel errors. Every error New, Register and Handle return matches one
// of them with errors.Is; the typed errors below add detail for errors.As.
var (
	// ErrInvalidConfig is matched by every error New and Register return
	// for a bad Config; errors.As yields a *ConfigError for each problem.
	ErrInvalidConfig = errors.New("webhook: invalid configuration")

	// ErrInvalidURL is matched by a ConfigError for an endpoint URL that
	// is not absolute http or https with a host, and by the delivery error
	// of an event whose ad-hoc URL is not.
	ErrInvalidURL = errors.New("invalid URL")

	// ErrNoSecret is matched by a ConfigError for an endpoint without a
	// signing secret.
	ErrNoSecret = errors.New("no signing secret")

	// ErrInvalidSecret is matched by a ConfigError for a secret that is not
	// "whsec_" followed by standard base64 of at least MinSecretBytes bytes.
	ErrInvalidSecret = errors.New("invalid signing secret")

	// ErrInvalidHeader is matched by a ConfigError for an endpoint header
	// with an invalid name or value, or one the handler sets itself.
	ErrInvalidHeader = errors.New("invalid header")

	// ErrForbiddenAddress is matched by the error of a delivery refused
	// because the endpoint's address (resolved at dial time) is loopback,
	// private, link-local or otherwise internal, and by a ConfigError for
	// an endpoint URL whose host is such an IP literal. errors.As yields an
	// *AddressError. Set Config.AllowPrivateNetworks to allow them. The
	// delivery error is permanent: the entry is dead-lettered.
	ErrForbiddenAddress = errors.New("webhook: address not allowed")

	// ErrUnknownEndpoint is matched by the (permanent) error of an event
	// whose Endpoint is not in Config.Endpoints.
	ErrUnknownEndpoint = errors.New("webhook: unknown endpoint")

	// ErrAdHocNotAllowed is matched by the (permanent) error of an event
	// that gives a URL when Config.AdHoc is nil.
	ErrAdHocNotAllowed = errors.New("webhook: ad-hoc URLs are not allowed (Config.AdHoc is nil)")

	// ErrInvalidEvent is matched by the (permanent) error of an event that
	// cannot be delivered as it is: no endpoint or both an endpoint and a
	// URL, no type, data that is not JSON, an invalid ad-hoc URL.
	ErrInvalidEvent = errors.New("webhook: invalid event")

	// ErrTimeout is matched by the error of a request that did not finish
	// within Config.Timeout. The entry is retried.
	ErrTimeout = errors.New("request timed out")
)

// ConfigError is one problem with a Config. New and Register return all
// problems found, joined (errors.Join); each matches ErrInvalidConfig and
// its specific sentinel (ErrInvalidURL, ErrNoSecret, ErrInvalidSecret,
// ErrInvalidHeader, ErrForbiddenAddress) with errors.Is.
type ConfigError struct {
	// Endpoint names the endpoint: its key in Config.Endpoints, "AdHoc"
	// for Config.AdHoc, "" for a Config-wide field.
	Endpoint string
	// Field is the field at fault, e.g. "URL", "Secrets[1]",
	// "Headers[X-Token]", "Timeout".
	Field string
	// Reason says what is wrong, without the secret or header value.
	Reason string
	// Err is the specific sentinel (or *AddressError), if any.
	Err error
}

func (e *ConfigError) Error() string {
	where := e.Field
	if e.Endpoint != "" {
		where = fmt.Sprintf("endpoint %q: %s", e.Endpoint, e.Field)
	}
	msg := "webhook: invalid config: " + where + ": "
	if e.Err != nil {
		msg += e.Err.Error()
		if e.Reason != "" {
			msg += ": "
		}
	}
	return msg + e.Reason
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the specific sentinel or *AddressError.
func (e *ConfigError) Unwrap() error { return e.Err }

// AddressError is a refused address: the IP a connection was about to be
// made to (after DNS resolution), or an IP literal in an endpoint URL.
type AddressError struct {
	// Addr is the refused IP address (invalid if it could not be parsed).
	Addr netip.Addr
	// Reason names the range it falls in, e.g. "loopback", "private",
	// "link-local (cloud metadata service)".
	Reason string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("address %s not allowed: %s; set Config.AllowPrivateNetworks to deliver to internal networks", e.Addr, e.Reason)
}

// Is reports whether target is ErrForbiddenAddress.
func (e *AddressError) Is(target error) bool { return target == ErrForbiddenAddress }

// StatusError is a response that is not a 2xx. Handle wraps it with
// relay.Permanent (3xx, and 4xx other than 408, 409, 425 and 429) or, for
// the retryable ones carrying a usable Retry-After, with relay.RetryAfter;
// errors.As finds it through either.
type StatusError struct {
	// Endpoint is the endpoint's name, or "" for an ad-hoc URL.
	Endpoint string
	// Host is the host (and port, if any) the request went to.
	Host string
	// StatusCode is the response's status code, Status its status line
	// (e.g. "503 Service Unavailable").
	StatusCode int
	Status     string
	// Body is the start of the response body (at most 512 bytes of the
	// at most Config.MaxResponseBytes read), with control characters
	// replaced, for the error message.
	Body string
	// RetryAfter is the Retry-After hint honoured (capped at
	// Config.MaxRetryAfter); zero when there was none or it was not used.
	RetryAfter time.Duration
	// Location is the redirect target of a 3xx not followed, reduced to
	// scheme and host (the path may hold a token).
	Location string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook: %s answered %s", describe(e.Endpoint, e.Host), e.Status)
	if e.StatusCode >= 300 && e.StatusCode < 400 {
		msg += "; redirect"
		if e.Location != "" {
			msg += " to " + e.Location
		}
		msg += " not followed (point the endpoint at the final URL, or set Config.FollowRedirects for 307/308)"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// describe names a delivery target in messages: the endpoint's name, or
// the host of an ad-hoc URL. Never the whole URL, whose path or query may
// hold a token.
func describe(endpoint, host string) string {
	if endpoint != "" {
		return fmt.Sprintf("endpoint %q (%s)", endpoint, host)
	}
	return fmt.Sprintf("ad-hoc endpoint %s", host)
}
