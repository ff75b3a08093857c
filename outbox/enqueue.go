package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Message is a payload that names its topic. The topic selects the handler
// in the relay; the value itself is stored as JSON.
type Message interface {
	Topic() string
}

// Raw is a Message whose topic and JSON payload are given as they are, for
// producers that do not have a Go type (the CLI, bridges, tests).
type Raw struct {
	TopicName string
	Payload   json.RawMessage
}

// Topic returns r.TopicName.
func (r Raw) Topic() string { return r.TopicName }

// MarshalJSON returns the payload unchanged.
func (r Raw) MarshalJSON() ([]byte, error) {
	if len(r.Payload) == 0 {
		return []byte("{}"), nil
	}
	return r.Payload, nil
}

// Enqueued is the outcome of enqueueing one entry.
type Enqueued struct {
	// ID is the entry's id: the new entry's, or the existing one's for a
	// duplicate.
	ID int64
	// Duplicate is true when an entry with the same topic and key already
	// existed, so nothing new was written.
	Duplicate bool
}

// Producer writes entries with its limits. The zero value is ready to use
// and applies the documented defaults.
type Producer struct {
	// MaxPayloadBytes bounds the encoded JSON payload of one entry.
	// Zero means DefaultMaxPayloadBytes; larger entries are refused with
	// ErrPayloadTooLarge before anything is written.
	MaxPayloadBytes int

	// Headers, when set, is called with the context of every Enqueue and
	// EnqueueBatch, and the headers it returns are stored with each entry
	// in the same insert; headers given with WithHeaders win over them.
	// Use it to carry the request's trace context to the handler:
	// txotel.Headers stores the W3C traceparent and tracestate. Default
	// nil: nothing is added, at no cost.
	Headers func(ctx context.Context) map[string]string
}

// Enqueue writes one entry with a zero Producer. See Producer.Enqueue.
func Enqueue(ctx context.Context, q Querier, msg Message, opts ...Option) (Enqueued, error) {
	return Producer{}.Enqueue(ctx, q, msg, opts...)
}

// Item is one entry of a batch: a message and its options.
type Item struct {
	Message Message
	Options []Option
}

// NewItem returns an Item for msg with opts.
func NewItem(msg Message, opts ...Option) Item { return Item{Message: msg, Options: opts} }

// EnqueueBatch writes many entries in one round trip with a zero Producer.
// See Producer.EnqueueBatch.
func EnqueueBatch(ctx context.Context, q Querier, items []Item) ([]Enqueued, error) {
	return Producer{}.EnqueueBatch(ctx, q, items)
}

// row is one validated, encoded entry ready to insert.
type row struct {
	topic        string
	payload      []byte
	key          string
	keyGenerated bool // key made by generateKey: no producer chose it
	orderingKey  *string
	queue        string
	priority     int16
	maxAttempts  int32
	runAt        *time.Time
	delayMicros  int64
	headers      []byte
}

// contextHeaders returns p.Headers(ctx), or nil without a Headers hook.
func (p Producer) contextHeaders(ctx context.Context) map[string]string {
	if p.Headers == nil {
		return nil
	}
	return p.Headers(ctx)
}

func (p Producer) limit() int {
	if p.MaxPayloadBytes > 0 {
		return p.MaxPayloadBytes
	}
	return DefaultMaxPayloadBytes
}

// prepare validates msg and opts and encodes them; ctxHeaders (from
// p.Headers) come first, so that the options' headers win.
func (p Producer) prepare(msg Message, ctxHeaders map[string]string, opts []Option) (row, error) {
	if isNil(msg) {
		return row{}, invalid("message", "nil message")
	}
	var o options
	if len(ctxHeaders) > 0 {
		WithHeaders(ctxHeaders)(&o)
	}
	if d, ok := msg.(OptionsProvider); ok {
		for _, opt := range d.EnqueueOptions() {
			if opt != nil {
				opt(&o)
			}
		}
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	topic := msg.Topic()
	if err := checkName("topic", topic, MaxTopicLen); err != nil {
		return row{}, err
	}
	r := row{topic: topic, queue: DefaultQueue, maxAttempts: DefaultMaxAttempts}
	if o.key != "" {
		if err := checkName("key", o.key, MaxKeyLen); err != nil {
			return row{}, err
		}
		r.key = o.key
	} else {
		r.key, r.keyGenerated = generateKey(), true
	}
	if o.orderingKey != "" {
		if err := checkName("ordering key", o.orderingKey, MaxKeyLen); err != nil {
			return row{}, err
		}
		r.orderingKey = &o.orderingKey
	}
	if o.queue != "" {
		if err := checkName("queue", o.queue, MaxQueueLen); err != nil {
			return row{}, err
		}
		r.queue = o.queue
	}
	if o.priority < math.MinInt16 || o.priority > math.MaxInt16 {
		return row{}, invalid("priority", "%d is outside [%d, %d]", o.priority, math.MinInt16, math.MaxInt16)
	}
	r.priority = int16(o.priority)
	if o.maxAttempts != 0 {
		if o.maxAttempts < 1 || o.maxAttempts > MaxAttemptsLimit {
			return row{}, invalid("max attempts", "%d is outside [1, %d]", o.maxAttempts, MaxAttemptsLimit)
		}
		r.maxAttempts = int32(o.maxAttempts)
	}
	if o.delay < 0 {
		return row{}, invalid("delay", "negative delay %s", o.delay)
	}
	if !o.runAt.IsZero() {
		t := o.runAt
		r.runAt = &t
	} else {
		r.delayMicros = o.delay.Microseconds()
	}
	headers := o.headers
	if headers == nil {
		headers = map[string]string{}
	}
	hb, err := json.Marshal(headers)
	if err != nil {
		return row{}, invalid("headers", "%v", err)
	}
	if len(hb) > MaxHeadersBytes {
		return row{}, invalid("headers", "%d bytes encoded, over the limit of %d", len(hb), MaxHeadersBytes)
	}
	if hasEscapedNUL(hb) {
		return row{}, invalid("headers", "contains a NUL character, which PostgreSQL's jsonb cannot store")
	}
	r.headers = hb
	payload, err := json.Marshal(msg)
	if err != nil {
		return row{}, &InvalidError{Field: "payload", Reason: fmt.Sprintf("cannot encode %T as JSON: %v", msg, err)}
	}
	if !json.Valid(payload) {
		return row{}, invalid("payload", "%T did not encode to valid JSON", msg)
	}
	if len(payload) > p.limit() {
		return row{}, &PayloadTooLargeError{Topic: topic, Size: len(payload), Limit: p.limit()}
	}
	// jsonb refuses what json.Valid lets through in a Raw payload (invalid
	// UTF-8) or in any payload (the escape \u0000); refuse it here, before
	// the insert would abort the caller's transaction.
	if !utf8.Valid(payload) {
		return row{}, invalid("payload", "%T did not encode to valid UTF-8", msg)
	}
	if hasEscapedNUL(payload) {
		return row{}, invalid("payload", "contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot store")
	}
	r.payload = payload
	return r, nil
}

// hasEscapedNUL reports whether the valid JSON text b contains the escape
// \u0000, which jsonb refuses ("unsupported Unicode escape sequence"). An
// escaped backslash followed by "u0000" is not one.
func hasEscapedNUL(b []byte) bool {
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

func checkName(field, v string, max int) error {
	switch {
	case v == "":
		return invalid(field, "must not be empty")
	case len(v) > max:
		return invalid(field, "%d bytes, over the limit of %d", len(v), max)
	case !utf8.ValidString(v):
		return invalid(field, "not valid UTF-8")
	}
	for _, c := range v {
		if c == 0 {
			return invalid(field, "contains a NUL character")
		}
	}
	return nil
}

// Enqueue writes one entry through q, normally the caller's transaction, so
// that the entry commits or rolls back with the caller's own writes. It costs
// one round trip. When an entry with the same topic and idempotency key
// already exists, nothing is written and the existing id is returned with
// Duplicate set.
func (p Producer) Enqueue(ctx context.Context, q Querier, msg Message, opts ...Option) (Enqueued, error) {
	if err := checkQuerier(q); err != nil {
		return Enqueued{}, err
	}
	r, err := p.prepare(msg, p.contextHeaders(ctx), opts)
	if err != nil {
		return Enqueued{}, err
	}
	var res Enqueued
	var id *int64
	var dup *bool
	err = q.QueryRow(ctx, sqlInsertOne,
		r.topic, string(r.payload), r.key, r.orderingKey, r.queue, r.priority,
		r.maxAttempts, r.runAt, r.delayMicros, string(r.headers), r.keyGenerated,
	).Scan(&id, &dup)
	if err != nil {
		return Enqueued{}, wrapDBError("enqueue", err)
	}
	if id != nil {
		res.ID, res.Duplicate = *id, *dup
		return res, nil
	}
	// The conflicting entry committed while this statement ran, after its
	// snapshot was taken: read it with a fresh statement.
	if r.keyGenerated {
		return Enqueued{}, fmt.Errorf("outbox: enqueue: topic %q: generated key collided; retry", r.topic)
	}
	if err := q.QueryRow(ctx, sqlSelectIDByKey, r.topic, r.key).Scan(&res.ID); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return Enqueued{}, fmt.Errorf("outbox: enqueue: topic %q key %q conflicted with an entry that is not visible; retry the transaction", r.topic, r.key)
		}
		return Enqueued{}, wrapDBError("enqueue", err)
	}
	res.Duplicate = true
	return res, nil
}

// EnqueueBatch writes all items in one statement and one round trip, and
// returns one result per item, in order. Items that repeat a topic and key
// (of each other or of an existing entry) are duplicates of that entry.
// Validation is all or nothing: if any item is invalid nothing is written.
func (p Producer) EnqueueBatch(ctx context.Context, q Querier, items []Item) ([]Enqueued, error) {
	if err := checkQuerier(q); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, nil
	}
	n := len(items)
	var (
		topics   = make([]string, n)
		payloads = make([]string, n)
		keys     = make([]string, n)
		okeys    = make([]*string, n)
		queues   = make([]string, n)
		prios    = make([]int16, n)
		maxes    = make([]int32, n)
		runAts   = make([]*time.Time, n)
		delays   = make([]int64, n)
		headers  = make([]string, n)
		genKeys  = make([]bool, n)
	)
	ctxHeaders := p.contextHeaders(ctx)
	for i, it := range items {
		r, err := p.prepare(it.Message, ctxHeaders, it.Options)
		if err != nil {
			return nil, fmt.Errorf("outbox: batch item %d: %w", i, err)
		}
		topics[i], payloads[i], keys[i], okeys[i] = r.topic, string(r.payload), r.key, r.orderingKey
		queues[i], prios[i], maxes[i] = r.queue, r.priority, r.maxAttempts
		runAts[i], delays[i], headers[i], genKeys[i] = r.runAt, r.delayMicros, string(r.headers), r.keyGenerated
	}
	var out []byte
	err := q.QueryRow(ctx, sqlInsertBatch,
		topics, payloads, keys, okeys, queues, prios, maxes, runAts, delays, headers, genKeys,
	).Scan(&out)
	if err != nil {
		return nil, wrapDBError("enqueue batch", err)
	}
	var rows []struct {
		Ord int64  `json:"ord"`
		ID  *int64 `json:"id"`
		Dup bool   `json:"dup"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, fmt.Errorf("outbox: enqueue batch: decoding result: %w", err)
	}
	res := make([]Enqueued, n)
	for _, r := range rows {
		i := int(r.Ord) - 1
		if i < 0 || i >= n {
			return nil, fmt.Errorf("outbox: enqueue batch: result for unknown item %d", r.Ord)
		}
		if r.ID == nil {
			// Conflicted with an entry committed after the snapshot.
			if err := q.QueryRow(ctx, sqlSelectIDByKey, topics[i], keys[i]).Scan(&res[i].ID); err != nil {
				return nil, wrapDBError("enqueue batch", err)
			}
			res[i].Duplicate = true
			continue
		}
		res[i] = Enqueued{ID: *r.ID, Duplicate: r.Dup}
	}
	return res, nil
}
