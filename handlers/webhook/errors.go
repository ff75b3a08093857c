package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
	ErrInvalidURL = errors.New("webhook: invalid URL")

	// ErrNoSecret is matched by a ConfigError for an endpoint without a
	// signing secret.
	ErrNoSecret = errors.New("webhook: no signing secret")

	// ErrInvalidSecret is matched by a ConfigError for a secret that is not
	// "whsec_" followed by standard base64 of at least MinSecretBytes bytes.
	ErrInvalidSecret = errors.New("webhook: invalid signing secret")

	// ErrInvalidHeader is matched by a ConfigError for an endpoint header
	// with an invalid name or value, or one the handler sets itself.
	ErrInvalidHeader = errors.New("webhook: invalid header")

	// ErrForbiddenAddress is matched by the error of a delivery refused
	// because the endpoint's address (an IP literal in the URL, or any
	// address its name resolves to at dial time) is not global unicast:
	// loopback, private, link-local, an IPv6 form carrying an IPv4 address,
	// or any other special-purpose address (see the package documentation).
	// It is also matched by a ConfigError for an endpoint URL whose host is
	// such an IP literal. errors.As yields an *AddressError. Set
	// Config.AllowPrivateNetworks to allow them. The delivery error is
	// permanent: the entry is dead-lettered.
	ErrForbiddenAddress = errors.New("webhook: address not allowed")

	// ErrCrossOriginRedirect is matched by the (permanent) error of a
	// delivery that Config.FollowRedirects would have followed to another
	// origin: a different scheme, host or port. errors.As yields a
	// *RedirectError. The endpoint's headers and signature are never sent
	// to another origin; point the endpoint at the final URL.
	ErrCrossOriginRedirect = errors.New("webhook: redirect to another origin refused")

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
	ErrTimeout = errors.New("webhook: request timed out")
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

// Error returns "webhook: invalid config <where>: <reason>", where is the
// field's path in Config: "Timeout", `Endpoints["billing"].URL`,
// "AdHoc.Secrets[0]".
func (e *ConfigError) Error() string {
	where := e.Field
	switch {
	case e.Endpoint == "AdHoc":
		where = "AdHoc." + e.Field
	case e.Endpoint != "":
		where = fmt.Sprintf("Endpoints[%q].%s", e.Endpoint, e.Field)
	}
	msg := "webhook: invalid config " + where + ": "
	if e.Err != nil {
		msg += strings.TrimPrefix(e.Err.Error(), "webhook: ")
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

// AddressError is a refused address: an IP literal in a URL, or an
// address a host name resolved to when the connection was about to be
// made.
type AddressError struct {
	// Addr is the refused IP address (invalid if it could not be parsed).
	Addr netip.Addr
	// Host is the name that resolved to Addr; "" for an IP literal.
	Host string
	// Reason names the block it falls in, e.g. "loopback (127.0.0.0/8)",
	// "private (10.0.0.0/8)", "link-local (cloud metadata service)".
	Reason string
}

func (e *AddressError) Error() string {
	of := ""
	if e.Host != "" {
		of = " (of " + e.Host + ")"
	}
	return fmt.Sprintf("address %s%s not allowed: %s; only global unicast addresses are, unless Config.AllowPrivateNetworks is set", e.Addr, of, e.Reason)
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
		msg += " not followed (point the endpoint at the final URL, or set Config.FollowRedirects for 307/308 within the same origin)"
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

// RedirectError is a redirect that Config.FollowRedirects refused to
// follow because it leads to another origin. It matches
// ErrCrossOriginRedirect. Two URLs have the same origin when their
// schemes, host names (compared without regard to case, with no DNS
// lookup: "localhost" and "127.0.0.1" are different hosts) and ports
// (the scheme's default, 80 or 443, when none is given) are equal.
type RedirectError struct {
	// StatusCode is the redirect's status, 307 or 308.
	StatusCode int
	// From is the origin the request went to, To the origin of the
	// redirect's Location, each as "scheme://host:port".
	From, To string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("redirect (%d) from %s to another origin %s refused: the endpoint's headers and signature go only to its own scheme, host and port; point the endpoint at the final URL",
		e.StatusCode, e.From, e.To)
}

// Is reports whether target is ErrCrossOriginRedirect.
func (e *RedirectError) Is(target error) bool { return target == ErrCrossOriginRedirect }
