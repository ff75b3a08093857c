package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults and limits of Config.
const (
	// DefaultTimeout bounds one request: connecting, TLS, sending, and
	// reading the (capped) response.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxResponseBytes bounds the response body read per request.
	DefaultMaxResponseBytes = 64 << 10
	// DefaultMaxRetryAfter caps a receiver's Retry-After hint.
	DefaultMaxRetryAfter = 24 * time.Hour
	// DefaultUserAgent is the User-Agent of every request unless
	// Config.UserAgent says otherwise.
	DefaultUserAgent = "txoutbox-webhook/1"
	// MinSecretBytes is the shortest decoded secret accepted (128 bits).
	// The Standard Webhooks spec recommends 24 to 64 bytes.
	MinSecretBytes = 16
	// SecretPrefix starts every secret, as the spec serializes them.
	SecretPrefix = "whsec_"
	// maxRedirects bounds the 307/308 redirects followed per request.
	maxRedirects = 5
)

// Endpoint is one receiver of webhooks.
type Endpoint struct {
	// URL is where events are POSTed: absolute, http or https, with a host.
	// Required in Config.Endpoints; must be empty in Config.AdHoc, where
	// the event gives it. The URL is never written into error messages or
	// the entry's last error (its path or query may hold a token): only
	// the endpoint's name and host are.
	URL string

	// Secrets sign every request. At least one; each is "whsec_" followed
	// by the standard (padded) base64 of at least MinSecretBytes random
	// bytes. A request carries one signature per secret, space-separated
	// in webhook-signature, so a secret is rotated without downtime: add
	// the new one, let the receiver switch to it, then remove the old one.
	Secrets []string

	// Headers are added to every request to this endpoint (an
	// Authorization token, say). They cannot replace the headers the
	// handler sets: webhook-id, webhook-timestamp, webhook-signature,
	// Content-Type, Content-Length, User-Agent and the hop-by-hop ones.
	Headers map[string]string

	// RawBody sends Event.Data as the request body exactly as it is,
	// instead of the Standard Webhooks envelope
	// {"type": ..., "timestamp": ..., "data": ...}. The event type is then
	// not sent. For receivers that expect a body of their own shape.
	RawBody bool
}

// Config configures a Handler. The zero value of every field but
// Endpoints/AdHoc is a documented default; New validates the whole and
// reports every problem.
type Config struct {
	// Endpoints are the receivers events name, by name. Names are chosen
	// by the application and stored in entries, so keep them stable; an
	// event naming an endpoint that is not here is dead-lettered
	// (ErrUnknownEndpoint). At least one endpoint, or AdHoc, is required.
	Endpoints map[string]Endpoint

	// AdHoc, when set, allows events that give a URL instead of an
	// endpoint name: such requests are signed with AdHoc.Secrets and carry
	// AdHoc.Headers (AdHoc.URL must be empty). Default nil: an event with
	// a URL is dead-lettered (ErrAdHocNotAllowed). Ad-hoc URLs are checked
	// when delivered (absolute http/https with a host), and the address
	// checks below apply to them as to every request.
	AdHoc *Endpoint

	// Timeout bounds one request: connecting, TLS, sending the body and
	// reading the response, which is capped at MaxResponseBytes. A request
	// that runs out of time fails with ErrTimeout and is retried. The
	// relay's per-attempt timeout (relay.WithTimeout, default 1m) also
	// applies. Default DefaultTimeout (10s).
	Timeout time.Duration

	// MaxResponseBytes bounds the response body read: at most this much is
	// read (so a small response leaves the connection reusable), the rest
	// is left unread and the connection closed. The first 512 bytes go into
	// the error of a non-2xx response. Default DefaultMaxResponseBytes
	// (64 KiB).
	MaxResponseBytes int64

	// MaxRetryAfter caps the delay a Retry-After header can ask for.
	// Default DefaultMaxRetryAfter (24h).
	MaxRetryAfter time.Duration

	// FollowRedirects follows 307 and 308 redirects (which keep the method,
	// body and signature), at most 5, within the endpoint's origin only:
	// the same scheme, host name and port (see RedirectError). A 307 or 308
	// to another origin is refused with ErrCrossOriginRedirect and
	// dead-letters the entry, because the request carries the endpoint's
	// Headers (an API key, say) and its signature, which must not reach
	// another host. Other redirects (301, 302, 303 would turn the POST into
	// a body-less GET) are never followed. Default false: no redirect is
	// followed. A 3xx that is not followed dead-letters the entry: the
	// endpoint's URL is out of date, and retrying will not change that.
	FollowRedirects bool

	// AllowPrivateNetworks allows requests to any address. Default false:
	// only global unicast addresses are allowed, and everything in the
	// IANA special-purpose registries is refused — loopback, private
	// (RFC 1918, fc00::/7), link-local (including the cloud metadata
	// address 169.254.169.254), shared (100.64.0.0/10), documentation,
	// benchmarking, multicast, reserved, and IPv6 forms that carry an IPv4
	// address (IPv4-mapped, NAT64, 6to4, Teredo). An endpoint URL with such
	// an IP literal fails New; an ad-hoc URL with one is dead-lettered
	// before any request; a host name is resolved by the handler when the
	// connection is about to be made, and refused if any of its addresses
	// is such an address, so a name that resolves (or is rebound) to an
	// internal address is caught too. Refused deliveries are dead-lettered
	// with ErrForbiddenAddress. Proxies from the environment (HTTP_PROXY)
	// are not used, since the check would then see the proxy's address,
	// not the endpoint's.
	AllowPrivateNetworks bool

	// UserAgent is the User-Agent header. Default DefaultUserAgent.
	UserAgent string

	// Clock returns the current time, for webhook-timestamp, the envelope's
	// timestamp when the entry has none, and Retry-After dates. Default
	// time.Now.
	Clock func() time.Time
}

// endpoint is a validated Endpoint, ready to use.
type endpoint struct {
	name    string // "" for AdHoc
	url     *url.URL
	keys    [][]byte
	headers http.Header
	rawBody bool
}

// reservedHeaders are set by the handler or the transport; endpoint
// Headers cannot replace them (canonical form).
var reservedHeaders = map[string]bool{
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true,
	"Transfer-Encoding": true, "Host": true, "Connection": true, "Keep-Alive": true,
	"Te": true, "Trailer": true, "Upgrade": true, "User-Agent": true,
	"Proxy-Connection": true, "Expect": true,
}

// withDefaults fills in defaults and validates c, returning every problem
// joined.
func (c Config) withDefaults() (Config, map[string]*endpoint, *endpoint, error) {
	var errs []error
	bad := func(ep, field string, sentinel error, format string, args ...any) {
		errs = append(errs, &ConfigError{Endpoint: ep, Field: field, Err: sentinel, Reason: fmt.Sprintf(format, args...)})
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 {
		bad("", "Timeout", nil, "negative (%s)", c.Timeout)
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxResponseBytes < 0 {
		bad("", "MaxResponseBytes", nil, "negative (%d)", c.MaxResponseBytes)
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.MaxRetryAfter < 0 {
		bad("", "MaxRetryAfter", nil, "negative (%s)", c.MaxRetryAfter)
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if !validHeaderValue(c.UserAgent) {
		bad("", "UserAgent", ErrInvalidHeader, "contains a control character or surrounding space")
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if len(c.Endpoints) == 0 && c.AdHoc == nil {
		bad("", "Endpoints", nil, "no endpoint and no AdHoc: the handler could deliver nothing")
	}

	names := make([]string, 0, len(c.Endpoints))
	for name := range c.Endpoints {
		names = append(names, name)
	}
	sort.Strings(names)
	endpoints := make(map[string]*endpoint, len(names))
	for _, name := range names {
		if name == "" {
			bad("", "Endpoints", nil, "an endpoint has an empty name")
			continue
		}
		ep, epErrs := c.endpoint(name, c.Endpoints[name], false)
		errs = append(errs, epErrs...)
		endpoints[name] = ep
	}
	var adhoc *endpoint
	if c.AdHoc != nil {
		var epErrs []error
		adhoc, epErrs = c.endpoint("", *c.AdHoc, true)
		errs = append(errs, epErrs...)
	}
	if len(errs) > 0 {
		return c, nil, nil, errors.Join(errs...)
	}
	return c, endpoints, adhoc, nil
}

// endpoint validates one Endpoint; name is "" for AdHoc.
func (c Config) endpoint(name string, e Endpoint, adhoc bool) (*endpoint, []error) {
	var errs []error
	label := name
	if adhoc {
		label = "AdHoc"
	}
	bad := func(field string, sentinel error, format string, args ...any) {
		errs = append(errs, &ConfigError{Endpoint: label, Field: field, Err: sentinel, Reason: fmt.Sprintf(format, args...)})
	}
	ep := &endpoint{name: name, rawBody: e.RawBody, headers: http.Header{}}
	switch {
	case adhoc && e.URL != "":
		bad("URL", ErrInvalidURL, "must be empty in AdHoc: ad-hoc events give their own URL")
	case !adhoc:
		u, err := parseURL(e.URL)
		if err != nil {
			bad("URL", ErrInvalidURL, "%s", err)
			break
		}
		ep.url = u
		if !c.AllowPrivateNetworks {
			if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
				if reason := refused(ip); reason != "" {
					errs = append(errs, &ConfigError{Endpoint: label, Field: "URL", Err: &AddressError{Addr: ip, Reason: reason}})
				}
			}
		}
	}
	if len(e.Secrets) == 0 {
		bad("Secrets", ErrNoSecret, "at least one %s secret is required", SecretPrefix)
	}
	for i, s := range e.Secrets {
		key, err := decodeSecret(s)
		if err != nil {
			bad(fmt.Sprintf("Secrets[%d]", i), ErrInvalidSecret, "%s", err)
			continue
		}
		ep.keys = append(ep.keys, key)
	}
	hnames := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		hnames = append(hnames, k)
	}
	sort.Strings(hnames)
	for _, k := range hnames {
		v := e.Headers[k]
		field := fmt.Sprintf("Headers[%s]", k)
		switch {
		case !validHeaderName(k):
			bad(field, ErrInvalidHeader, "not a valid header name")
		case reservedHeaders[http.CanonicalHeaderKey(k)]:
			bad(field, ErrInvalidHeader, "set by the handler; it cannot be replaced")
		case !validHeaderValue(v):
			bad(field, ErrInvalidHeader, "value contains a control character or surrounding space")
		default:
			ep.headers.Set(k, v)
		}
	}
	return ep, errs
}

// parseURL accepts an absolute http or https URL with a host and no user
// information (credentials belong in Headers, where they are not logged).
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("does not parse") // url.Error would echo the URL
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("no host")
	case u.User != nil:
		return nil, errors.New("contains user information; put credentials in Headers")
	case u.Fragment != "":
		return nil, errors.New("contains a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q out of range", p)
		}
	}
	return u, nil
}

// decodeSecret returns the key bytes of a "whsec_<base64>" secret. The
// error never contains the secret.
func decodeSecret(s string) ([]byte, error) {
	enc, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("does not start with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("the part after %q is not standard base64", SecretPrefix)
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("decodes to %d bytes; at least %d are required", len(key), MinSecretBytes)
	}
	return key, nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value and
// read back unchanged: no control characters, no surrounding whitespace
// (which receivers trim).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(s) == s
}
