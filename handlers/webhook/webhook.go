package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/relay"
)

// Topic is the topic of Event entries.
const Topic = "webhook.deliver"

// Event is the payload of one webhook delivery. Enqueue it in the
// transaction that makes the change it reports, with outbox.WithKey set to
// the business identity of the event (the key becomes webhook-id, so the
// receiver can drop duplicates):
//
//	outbox.Enqueue(ctx, tx, webhook.Event{
//		Endpoint: "billing",
//		Type:     "invoice.paid",
//		Data:     json.RawMessage(`{"invoice":"inv_17"}`),
//	}, outbox.WithKey("invoice.paid:inv_17"))
//
// Its topic is always Topic ("webhook.deliver"); choose a queue or priority
// with the enqueue options. Producers without Go write the same JSON:
// {"endpoint": "billing", "type": "invoice.paid", "data": {...}}.
type Event struct {
	// Endpoint names the receiver in Config.Endpoints. Exactly one of
	// Endpoint and URL is set.
	Endpoint string `json:"endpoint,omitempty"`
	// URL is an ad-hoc receiver, allowed only when Config.AdHoc is set.
	URL string `json:"url,omitempty"`
	// Type is the event type, e.g. "invoice.paid": the envelope's "type".
	// Required unless the endpoint sends RawBody.
	Type string `json:"type,omitempty"`
	// Data is the event's JSON: the envelope's "data", or the whole body
	// for a RawBody endpoint.
	Data json.RawMessage `json:"data,omitempty"`
}

// Topic returns Topic.
func (Event) Topic() string { return Topic }

// Result is what a successful delivery records on its entry (read it with
// outbox.Get or outbox.GetByKey).
type Result struct {
	// Status is the receiver's 2xx status code.
	Status int `json:"status"`
}

// Handler delivers Event entries. Build it with New; it is safe for
// concurrent use.
type Handler struct {
	cfg       Config
	endpoints map[string]*endpoint
	adhoc     *endpoint
	client    *http.Client
}

// New validates cfg and returns a Handler. The error joins every problem
// found; each matches ErrInvalidConfig and a specific sentinel with
// errors.Is, and is a *ConfigError naming the endpoint and field.
func New(cfg Config) (*Handler, error) {
	return newHandler(cfg, defaultLookup, nil)
}

// newHandler is New with the network's seams: lookup resolves host names
// for the address guard, dial connects (to an address the guard checked,
// unless Config.AllowPrivateNetworks is set). A nil dial is a net.Dialer.
// Tests replace both, so that no test connects anywhere but loopback.
func newHandler(cfg Config, lookup lookupFunc, dial dialFunc) (*Handler, error) {
	cfg, endpoints, adhoc, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if dial == nil {
		dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
		if !cfg.AllowPrivateNetworks {
			dialer.ControlContext = guardDial
		}
		dial = dialer.DialContext
	}
	if !cfg.AllowPrivateNetworks {
		dial = guard{lookup: lookup, dial: dial}.DialContext
	}
	transport := &http.Transport{
		Proxy:                  nil, // see Config.AllowPrivateNetworks
		DialContext:            dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    128,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.Timeout,
		DisableCompression:     true, // read exactly what the cap says
		MaxResponseHeaderBytes: 64 << 10,
	}
	follow := cfg.FollowRedirects
	client := &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			code := 0
			if req.Response != nil {
				code = req.Response.StatusCode
			}
			switch {
			case !follow,
				code != http.StatusTemporaryRedirect && code != http.StatusPermanentRedirect,
				len(via) > maxRedirects:
				return http.ErrUseLastResponse
			}
			if from, to := origin(via[0].URL), origin(req.URL); from != to {
				return &RedirectError{StatusCode: code, From: from, To: to}
			}
			return nil
		},
	}
	return &Handler{cfg: cfg, endpoints: endpoints, adhoc: adhoc, client: client}, nil
}

// origin returns u's origin as "scheme://host:port": the scheme, the host
// name in lower case, and the port, or the scheme's default (80, 443).
// Host names are compared as written, without DNS: "localhost" and
// "127.0.0.1" are different origins, and so are "[::1]" and "[0::1]".
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// Register builds a Handler from cfg and registers it on h for Topic, with
// opts (relay.WithTimeout, relay.WithRetryPolicy). It returns New's error;
// registration errors (Topic registered twice) come from relay.New, as for
// every handler.
func Register(h *relay.Handlers, cfg Config, opts ...relay.HandlerOption) error {
	if h == nil {
		return &ConfigError{Field: "Handlers", Reason: "nil *relay.Handlers"}
	}
	wh, err := New(cfg)
	if err != nil {
		return err
	}
	relay.Handle(h, wh.Handle, opts...)
	return nil
}

// CloseIdleConnections closes the handler's idle keep-alive connections.
// The handler stays usable.
func (h *Handler) CloseIdleConnections() { h.client.CloseIdleConnections() }

// Handle delivers one entry: it POSTs the event, signed, to its endpoint
// and classifies the answer. It returns nil for a 2xx (recording a Result);
// a relay.Permanent error for what a retry cannot fix (an invalid event, a
// refused address, a 3xx not followed, a redirect to another origin, a 4xx
// other than 408, 409, 425 and 429); and a retryable error otherwise (5xx,
// 408, 409, 425, 429, network errors, ErrTimeout), wrapped with
// relay.RetryAfter when the response carried a usable Retry-After. Use it with relay.Handle to compose your
// own registration.
func (h *Handler) Handle(ctx context.Context, e *relay.Entry[Event]) error {
	if e == nil {
		return relay.Permanent(fmt.Errorf("%w: nil entry", ErrInvalidEvent))
	}
	ep, target, err := h.target(e.Payload)
	if err != nil {
		return relay.Permanent(err)
	}
	name, host := ep.name, target.Host
	body, err := h.body(ep, e)
	if err != nil {
		return relay.Permanent(fmt.Errorf("%w for %s: %w", ErrInvalidEvent, describe(name, host), err))
	}

	reqCtx, cancel := context.WithTimeoutCause(ctx, h.cfg.Timeout, ErrTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return relay.Permanent(fmt.Errorf("%w for %s: cannot build the request", ErrInvalidEvent, describe(name, host)))
	}
	id := messageID(e.Key)
	ts := strconv.FormatInt(h.cfg.Clock().Unix(), 10)
	req.Header = ep.headers.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.cfg.UserAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, signature(ep.keys, id, ts, body))

	resp, err := h.client.Do(req)
	if err != nil {
		return h.sendError(ctx, reqCtx, name, host, err)
	}
	snippet := readCapped(resp.Body, h.cfg.MaxResponseBytes)
	_ = resp.Body.Close()

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		e.SetResult(Result{Status: code})
		return nil
	}
	serr := &StatusError{Endpoint: name, Host: resp.Request.URL.Host, StatusCode: code, Status: resp.Status, Body: snippet}
	if serr.Status == "" {
		serr.Status = strconv.Itoa(code)
	}
	switch {
	case code >= 300 && code < 400:
		serr.Location = redactURL(resp.Header.Get("Location"), resp.Request.URL)
		return relay.Permanent(serr)
	case code == http.StatusRequestTimeout, code == http.StatusConflict,
		code == http.StatusTooEarly, code == http.StatusTooManyRequests:
	case code >= 400 && code < 500:
		return relay.Permanent(serr)
	}
	// 5xx, the retryable 4xx, and anything unexpected: retry.
	if d := retryAfter(resp.Header.Get("Retry-After"), h.cfg.Clock(), h.cfg.MaxRetryAfter); d > 0 {
		serr.RetryAfter = d
		return relay.RetryAfter(d, serr)
	}
	return serr
}

// target resolves the event's endpoint and URL.
func (h *Handler) target(ev Event) (*endpoint, *url.URL, error) {
	switch {
	case ev.Endpoint != "" && ev.URL != "":
		return nil, nil, fmt.Errorf("%w: both endpoint %q and a URL are set; set one", ErrInvalidEvent, ev.Endpoint)
	case ev.Endpoint != "":
		ep, ok := h.endpoints[ev.Endpoint]
		if !ok {
			return nil, nil, fmt.Errorf("%w %q (configured: %d endpoints)", ErrUnknownEndpoint, ev.Endpoint, len(h.endpoints))
		}
		return ep, ep.url, nil
	case ev.URL != "":
		if h.adhoc == nil {
			return nil, nil, ErrAdHocNotAllowed
		}
		u, err := parseURL(ev.URL)
		if err != nil {
			return nil, nil, &eventError{
				msg:  fmt.Sprintf("%s: url: %s: %s", ErrInvalidEvent, strings.TrimPrefix(ErrInvalidURL.Error(), "webhook: "), err),
				errs: []error{ErrInvalidEvent, ErrInvalidURL},
			}
		}
		if !h.cfg.AllowPrivateNetworks {
			// An IP literal is judged before any request, as for
			// configured endpoints in New; names are judged at dial time.
			if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
				if reason := refused(ip); reason != "" {
					return nil, nil, fmt.Errorf("webhook: %s: %w", describe("", u.Host), &AddressError{Addr: ip.WithZone(""), Reason: reason})
				}
			}
		}
		return h.adhoc, u, nil
	}
	return nil, nil, fmt.Errorf("%w: neither an endpoint nor a URL", ErrInvalidEvent)
}

// envelope is the Standard Webhooks payload shape.
type envelope struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// body returns the request body: the envelope, or the raw data. The
// envelope's timestamp is the entry's creation time, so the body is the
// same on every attempt.
func (h *Handler) body(ep *endpoint, e *relay.Entry[Event]) ([]byte, error) {
	data := e.Payload.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	if !json.Valid(data) {
		return nil, errors.New("data is not valid JSON")
	}
	if ep.rawBody {
		return data, nil
	}
	if e.Payload.Type == "" {
		return nil, errors.New("no type")
	}
	at := e.CreatedAt
	if at.IsZero() {
		at = h.cfg.Clock()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(envelope{Type: e.Payload.Type, Timestamp: at.UTC().Format(time.RFC3339Nano), Data: data}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// sendError classifies an error from Client.Do: a refused address or a
// cross-origin redirect is permanent; a timeout is ErrTimeout; anything
// else is retried. The URL (which url.Error would print) is dropped from
// the message.
func (h *Handler) sendError(ctx, reqCtx context.Context, name, host string, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var aerr *AddressError
	var rerr *RedirectError
	if errors.As(err, &aerr) || errors.As(err, &rerr) {
		return relay.Permanent(fmt.Errorf("webhook: %s: %w", describe(name, host), err))
	}
	if ctx.Err() == nil && errors.Is(context.Cause(reqCtx), ErrTimeout) {
		return fmt.Errorf("%w: %s, after %s", ErrTimeout, describe(name, host), h.cfg.Timeout)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("webhook: %s: request cancelled: %w", describe(name, host), context.Cause(ctx))
	}
	return fmt.Errorf("webhook: %s: %w", describe(name, host), err)
}

// eventError is an invalid event's error: one message, matching several
// sentinels.
type eventError struct {
	msg  string
	errs []error
}

func (e *eventError) Error() string   { return e.msg }
func (e *eventError) Unwrap() []error { return e.errs }
