package nats

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/relay"
)

// Result is what a successful publish records on its entry (read it with
// outbox.Get or outbox.GetByKey).
type Result struct {
	// Stream and Sequence say where JetStream stored the message.
	Stream   string `json:"stream"`
	Sequence uint64 `json:"seq"`
	// Subject is the subject it was published to.
	Subject string `json:"subject"`
	// Duplicate is true when JetStream had already stored a message with
	// this Nats-Msg-Id within the stream's duplicate window (an earlier
	// attempt's, whose ack was lost): nothing new was stored, and
	// Stream/Sequence are the earlier message's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Publisher publishes outbox entries to JetStream. Build it with New or
// Register; it is safe for concurrent use.
type Publisher struct {
	cfg         Config
	subject     *template.Template
	usesPayload bool
	nc          *natsio.Conn
	owned       bool // nc was made by New; Close closes it
	js          jetstream.JetStream
	denied      *violations
}

// New validates cfg, connects (or adopts Config.Conn) and returns a
// Publisher. Config.Topics is not required. The error joins every
// configuration problem, each a *ConfigError matching ErrInvalidConfig;
// with Config.URL, a connection that cannot be set up at all (a URL that
// does not parse, unreadable credentials) is reported too. A server that
// does not answer yet is not an error: the connection keeps trying, and
// entries are retried meanwhile.
func New(cfg Config) (*Publisher, error) {
	return newPublisher(cfg, false)
}

func newPublisher(cfg Config, needTopics bool) (*Publisher, error) {
	cfg, tmpl, usesPayload, err := cfg.withDefaults(needTopics)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, subject: tmpl, usesPayload: usesPayload, denied: newViolations()}
	if cfg.Conn != nil {
		p.nc = cfg.Conn
		prev := p.nc.ErrorHandler()
		p.nc.SetErrorHandler(func(nc *natsio.Conn, sub *natsio.Subscription, err error) {
			p.denied.observe(err)
			if prev != nil {
				prev(nc, sub, err)
			}
		})
	} else {
		opts := append([]natsio.Option{
			natsio.Name(DefaultName),
			natsio.MaxReconnects(-1),
			natsio.RetryOnFailedConnect(true),
			natsio.ErrorHandler(func(_ *natsio.Conn, _ *natsio.Subscription, err error) { p.denied.observe(err) }),
		}, cfg.Options...)
		nc, err := natsio.Connect(cfg.URL, opts...)
		if err != nil {
			return nil, &ConfigError{Field: "URL", Reason: fmt.Sprintf("cannot connect: %v", err)}
		}
		p.nc, p.owned = nc, true
	}
	js, err := jetstream.New(p.nc)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("nats: JetStream context: %w", err)
	}
	p.js = js
	return p, nil
}

// Register builds a Publisher from cfg and registers its Handle for each
// of cfg.Topics on h, with opts (relay.WithTimeout, relay.WithRetryPolicy,
// relay.WithOutcomeBeforeNext). It returns New's errors, and one for an
// empty Topics. Close the Publisher after the relay's Run has returned.
func Register(h *relay.Handlers, cfg Config, opts ...relay.HandlerOption) (*Publisher, error) {
	if h == nil {
		return nil, &ConfigError{Field: "Handlers", Reason: "nil *relay.Handlers"}
	}
	p, err := newPublisher(cfg, true)
	if err != nil {
		return nil, err
	}
	for _, topic := range p.cfg.Topics {
		relay.HandleRaw(h, topic, p.Handle, opts...)
	}
	return p, nil
}

// Close closes the connection New made from Config.URL, after flushing
// what it buffered; a Config.Conn is left open.
func (p *Publisher) Close() {
	if p.owned && p.nc != nil {
		p.nc.Close()
	}
}

// Conn returns the connection the Publisher publishes on.
func (p *Publisher) Conn() *natsio.Conn { return p.nc }

// CheckStream checks that JetStream answers and that Config.Stream, when
// set, exists: nil, an error matching ErrNoStream, or the error of the
// request (a server that does not answer). Without Config.Stream it checks
// only that JetStream answers on the connection's account.
func (p *Publisher) CheckStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	if p.cfg.Stream == "" {
		if _, err := p.js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil
	}
	if _, err := p.js.Stream(ctx, p.cfg.Stream); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: stream %q does not exist", ErrNoStream, p.cfg.Stream)
		}
		return fmt.Errorf("%w: looking up stream %q: %w", ErrUnavailable, p.cfg.Stream, err)
	}
	return nil
}

// Subject returns the subject the Config.Subject template yields for e.
func (p *Publisher) Subject(e *relay.Entry[json.RawMessage]) (string, error) {
	data := SubjectData{Topic: e.Topic, Key: e.Key, OrderingKey: e.OrderingKey, Queue: e.Queue, Headers: e.Headers}
	if p.usesPayload {
		dec := json.NewDecoder(bytes.NewReader(e.Payload))
		dec.UseNumber() // "{{.Payload.id}}" of 12345678901234567890 stays as written
		if err := dec.Decode(&data.Payload); err != nil {
			return "", fmt.Errorf("%w: the payload is not JSON: %w", ErrInvalidSubject, err)
		}
	}
	var b strings.Builder
	if err := p.subject.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%w: template: %s", ErrInvalidSubject, strings.TrimPrefix(err.Error(), "template: "))
	}
	s := b.String()
	if why := checkSubject(s); why != "" {
		return "", fmt.Errorf("%w: %q %s", ErrInvalidSubject, s, why)
	}
	return s, nil
}

// Handle publishes one entry: its payload bytes as they are, to the
// subject the template yields, with the headers described in the package
// documentation, and waits for JetStream's ack. It returns nil when the
// message is stored (or was already, within the duplicate window),
// recording a Result; a relay.Permanent error for what a retry cannot fix
// (ErrInvalidSubject, ErrNoStream, ErrPermission, ErrRejected); and a
// retryable error otherwise (ErrAckTimeout, ErrUnavailable, a lost
// connection). Use it with relay.HandleRaw to compose your own
// registration.
func (p *Publisher) Handle(ctx context.Context, e *relay.Entry[json.RawMessage]) error {
	if e == nil {
		return relay.Permanent(&PublishError{Err: fmt.Errorf("%w: nil entry", ErrInvalidSubject)})
	}
	fail := func(subject string, err error) error {
		return &PublishError{Topic: e.Topic, Key: e.Key, Subject: subject, Err: err}
	}
	subject, err := p.Subject(e)
	if err != nil {
		return relay.Permanent(fail("", err))
	}
	msg := &natsio.Msg{Subject: subject, Data: e.Payload, Header: natsio.Header{}}
	for k, v := range e.Headers {
		if validHeaderName(k) && validHeaderValue(v) && !strings.HasPrefix(strings.ToLower(k), "nats-") {
			msg.Header.Set(k, v)
		}
	}
	msg.Header.Set(HeaderTopic, e.Topic)
	msg.Header.Set(HeaderEntryID, strconv.FormatInt(e.ID, 10))
	if validHeaderValue(e.Key) {
		msg.Header.Set(HeaderKey, e.Key)
	}
	if e.OrderingKey != "" && validHeaderValue(e.OrderingKey) {
		msg.Header.Set(HeaderOrderingKey, e.OrderingKey)
	}
	if len(msg.Data) == 0 {
		msg.Data = []byte("null")
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(MsgID(e.Topic, e.Key))}
	if p.cfg.Stream != "" {
		opts = append(opts, jetstream.WithExpectStream(p.cfg.Stream))
	}

	started := time.Now()
	pubCtx, cancel := context.WithTimeoutCause(ctx, p.cfg.AckTimeout, ErrAckTimeout)
	defer cancel()
	ack, err := p.js.PublishMsg(pubCtx, msg, opts...)
	if err != nil {
		return p.classify(ctx, pubCtx, subject, started, err, fail)
	}
	e.SetResult(Result{Stream: ack.Stream, Sequence: ack.Sequence, Subject: subject, Duplicate: ack.Duplicate})
	return nil
}

// classify turns a publish error into the handler's error.
func (p *Publisher) classify(ctx, pubCtx context.Context, subject string, started time.Time, err error, fail func(string, error) error) error {
	err = clientError{err}
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		switch {
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound,
			apiErr.ErrorCode == jsErrCodeStreamNotMatch:
			return relay.Permanent(fail(subject, fmt.Errorf("%w: %w", ErrNoStream, err)))
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return relay.Permanent(fail(subject, fmt.Errorf("%w: %w", ErrRejected, err)))
		}
		return fail(subject, fmt.Errorf("%w: %w", ErrUnavailable, err))
	case errors.Is(err, natsio.ErrMaxPayload):
		return relay.Permanent(fail(subject, fmt.Errorf("%w: %w", ErrRejected, err)))
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsio.ErrNoResponders):
		// Nobody answered on the subject: no stream captures it, or the
		// stream is there but cannot answer now (no leader, JetStream
		// restarting). Ask JetStream which; only its answer "none"
		// dead-letters the entry.
		if p.noStreamFor(ctx, subject) {
			return relay.Permanent(fail(subject, fmt.Errorf("%w: no stream captures it (create one, then replay the entry)", ErrNoStream)))
		}
		return fail(subject, fmt.Errorf("%w: no responders on the subject: %w", ErrUnavailable, err))
	}
	if p.denied.since(subject, started) {
		return relay.Permanent(fail(subject, fmt.Errorf("%w: permissions violation for publish to %q", ErrPermission, subject)))
	}
	if ctx.Err() == nil && errors.Is(context.Cause(pubCtx), ErrAckTimeout) {
		return fail(subject, fmt.Errorf("%w: none after %s", ErrAckTimeout, p.cfg.AckTimeout))
	}
	if ctx.Err() != nil {
		return fail(subject, fmt.Errorf("publish cancelled: %w", context.Cause(ctx)))
	}
	return fail(subject, fmt.Errorf("%w: %w", ErrUnavailable, err))
}

// jsErrCodeStreamNotMatch is JetStream's error code for a message whose
// Nats-Expected-Stream is not the stream that captured it (the client
// library names no constant for it).
const jsErrCodeStreamNotMatch jetstream.ErrorCode = 10060

// noStreamFor reports whether JetStream says that no stream (or not
// Config.Stream) captures subject. Any failure to get an answer is not
// such an answer.
func (p *Publisher) noStreamFor(ctx context.Context, subject string) bool {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	name, err := p.js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return true
	}
	return err == nil && p.cfg.Stream != "" && name != p.cfg.Stream
}

// MsgID returns the Nats-Msg-Id of an entry's messages: "<topic>:<key>".
// Keys are unique per topic, not across topics, and one stream often
// captures several topics; with the key alone, JetStream would drop
// order.paid "order-17" as a duplicate of order.created "order-17". An id
// a header would not carry unchanged (control characters, surrounding
// spaces) is replaced by "txkey_" and the hex SHA-256 of it.
func MsgID(topic, key string) string {
	id := topic + ":" + key
	if validHeaderValue(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "txkey_" + hex.EncodeToString(sum[:])
}

// violations remembers the subjects the server refused publishes to, for
// a short while, so that a publish that got no ack because of one is
// recognised as refused rather than retried as a timeout.
type violations struct {
	mu sync.Mutex
	at map[string]time.Time // subject → when the last refusal arrived
}

// violationMemory bounds how long and how many refusals are remembered.
const (
	violationTTL = 10 * time.Minute
	violationMax = 1024
)

var publishViolation = regexp.MustCompile(`Permissions Violation for Publish to "([^"]+)"`)

func newViolations() *violations { return &violations{at: map[string]time.Time{}} }

// observe records err if it is a publish permission violation.
func (v *violations) observe(err error) {
	if !errors.Is(err, natsio.ErrPermissionViolation) {
		return
	}
	m := publishViolation.FindStringSubmatch(err.Error())
	if m == nil {
		return
	}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.at) >= violationMax {
		for s, t := range v.at {
			if now.Sub(t) > violationTTL || len(v.at) >= violationMax {
				delete(v.at, s)
			}
		}
	}
	v.at[m[1]] = now
}

// since reports whether a publish to subject was refused at or after t.
func (v *violations) since(subject string, t time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	at, ok := v.at[subject]
	return ok && !at.Before(t)
}

// clientError is an error of the client library, whose messages may repeat
// its "nats: " prefix ("nats: nats: API error ..."); it prints without it.
type clientError struct{ err error }

func (e clientError) Error() string {
	msg := e.err.Error()
	for strings.HasPrefix(msg, "nats: ") {
		msg = strings.TrimPrefix(msg, "nats: ")
	}
	return msg
}

func (e clientError) Unwrap() error { return e.err }
