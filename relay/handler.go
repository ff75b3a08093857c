package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// Entry is one claimed outbox entry with its payload decoded into T, as a
// handler receives it.
type Entry[T any] struct {
	ID    int64
	Topic string
	// Key is the entry's idempotency key. Hand it to the outside world
	// (webhook id, email Message-ID, object name): it is the same for every
	// attempt of the entry.
	Key         string
	OrderingKey string // empty when the entry has none
	Queue       string
	Priority    int
	// Attempt is this attempt's number, from 1; MaxAttempts is the limit.
	Attempt     int
	MaxAttempts int
	Headers     map[string]string
	CreatedAt   time.Time
	Payload     T

	result any
	hasRes bool
}

// SetResult records a small JSON-encodable result of the effect (say, where
// a document was stored). It is saved with the entry and its processed key
// when the attempt succeeds, and read back with outbox.Get.
func (e *Entry[T]) SetResult(v any) {
	e.result, e.hasRes = v, true
}

// HandlerFunc handles entries of payload type T. Return nil when the effect
// happened; Permanent(err) to dead-letter; RetryAfter(d, err) to suggest a
// delay; any other error to retry by the policy. The context is cancelled
// when the per-entry timeout passes, when the lease is lost (cause
// ErrLeaseLost) or at shutdown (cause ErrShutdown).
type HandlerFunc[T outbox.Message] func(ctx context.Context, e *Entry[T]) error

// TxHandlerFunc is a transactional handler: its writes through tx, the
// entry's processed key and the entry's completion commit together, or not
// at all. It must not commit or roll back tx itself.
type TxHandlerFunc[T outbox.Message] func(ctx context.Context, tx pgx.Tx, e *Entry[T]) error

// HandlerOption configures one handler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	timeout  time.Duration
	retry    RetryPolicy
	noDedupe bool
	syncDone bool
}

// WithTimeout bounds one attempt of this handler (default
// Config.HandlerTimeout). The context passed to the handler is cancelled
// with cause ErrHandlerTimeout when it passes, and the attempt fails.
func WithTimeout(d time.Duration) HandlerOption { return func(o *handlerOptions) { o.timeout = d } }

// WithRetryPolicy overrides Config.RetryPolicy for this handler's topic.
func WithRetryPolicy(p RetryPolicy) HandlerOption { return func(o *handlerOptions) { o.retry = p } }

// WithoutProcessedKeys stops the relay from consulting and recording
// processed keys for this topic: re-enqueueing a key after its entry was
// deleted by retention then runs the effect again. Use it only for effects
// that are naturally idempotent, to save a write per entry.
func WithoutProcessedKeys() HandlerOption { return func(o *handlerOptions) { o.noDedupe = true } }

// WithOutcomeBeforeNext makes each worker of this handler wait until the
// attempt's outcome is committed before it takes its next entry. By
// default a worker hands the outcome to the batched completer and moves
// on, so a relay that crashes can take several finished-but-unrecorded
// attempts per worker with it, and each of them runs again. With this
// option a crash repeats at most one finished effect per worker of the
// handler's queue (one in total with MaxWorkers 1), at the cost of a
// commit's latency per entry in each worker. Use it for external effects
// whose duplicates are costly and cannot be deduplicated downstream.
// Transactional handlers always commit their outcome with their writes and
// need it not. See docs/guarantees.md.
func WithOutcomeBeforeNext() HandlerOption { return func(o *handlerOptions) { o.syncDone = true } }

// handler is the type-erased form the executor runs.
type handler struct {
	topic  string
	typ    string
	tx     bool
	opts   handlerOptions
	invoke func(ctx context.Context, run *attemptRun) error
}

// attemptRun carries what one attempt needs and what it produces.
type attemptRun struct {
	claimed *store.Claimed
	tx      pgx.Tx // set for transactional handlers
	result  []byte // encoded result set by the handler, if any
}

// Handlers is a registry of handlers by topic, passed to New in
// Config.Handlers. Register with Handle and HandleTx. Registration errors
// (a duplicate topic, an invalid option) are collected and returned by New.
type Handlers struct {
	byTopic map[string]*handler
	errs    []error
}

// NewHandlers returns an empty registry.
func NewHandlers() *Handlers { return &Handlers{byTopic: map[string]*handler{}} }

// Topics returns the registered topics, sorted.
func (h *Handlers) Topics() []string {
	out := make([]string, 0, len(h.byTopic))
	for t := range h.byTopic {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (h *Handlers) add(topic, typ string, tx bool, opts []HandlerOption, invoke func(context.Context, *attemptRun) error) {
	if h.byTopic == nil {
		h.byTopic = map[string]*handler{}
	}
	hd := &handler{topic: topic, typ: typ, tx: tx, invoke: invoke}
	for _, o := range opts {
		if o != nil {
			o(&hd.opts)
		}
	}
	switch {
	case topic == "":
		h.errs = append(h.errs, configErr("handler", "%s has an empty Topic()", typ))
		return
	case len(topic) > outbox.MaxTopicLen:
		h.errs = append(h.errs, configErr("handler", "topic %q of %s is longer than %d bytes", topic, typ, outbox.MaxTopicLen))
		return
	case hd.opts.timeout < 0:
		h.errs = append(h.errs, configErr("handler", "negative timeout for topic %q", topic))
		return
	}
	if prev, ok := h.byTopic[topic]; ok {
		h.errs = append(h.errs, configErr("handler", "topic %q registered twice (%s and %s)", topic, prev.typ, typ))
		return
	}
	h.byTopic[topic] = hd
}

func (h *Handlers) err() error { return errors.Join(h.errs...) }

// topicOf returns the topic of T's zero value. T must be usable as a zero
// value (Topic with a value receiver, or a pointer type whose Topic does not
// dereference).
func topicOf[T outbox.Message]() (topic string, typ string, err error) {
	var zero T
	typ = reflect.TypeFor[T]().String()
	defer func() {
		if r := recover(); r != nil {
			err = configErr("handler", "%s.Topic() panicked on the zero value (%v); give it a value receiver", typ, r)
		}
	}()
	return zero.Topic(), typ, nil
}

// Handle registers fn for the topic of payload type T.
func Handle[T outbox.Message](h *Handlers, fn HandlerFunc[T], opts ...HandlerOption) {
	topic, typ, err := topicOf[T]()
	if err != nil || fn == nil {
		if fn == nil {
			err = configErr("handler", "nil handler function for %s", typ)
		}
		h.errs = append(h.errs, err)
		return
	}
	h.add(topic, typ, false, opts, func(ctx context.Context, run *attemptRun) error {
		e, err := decodeEntry[T](run.claimed, typ)
		if err != nil {
			return err
		}
		if err := fn(ctx, e); err != nil {
			return err
		}
		return run.setResult(e.hasRes, e.result)
	})
}

// HandleTx registers a transactional handler for the topic of payload type
// T. The relay opens a transaction, records the entry's processed key in it
// (skipping the handler when the key is already processed), runs fn with it,
// marks the entry done in it — fenced by the attempt — and commits. Any
// error rolls all of it back, and the entry is retried.
func HandleTx[T outbox.Message](h *Handlers, fn TxHandlerFunc[T], opts ...HandlerOption) {
	topic, typ, err := topicOf[T]()
	if err != nil || fn == nil {
		if fn == nil {
			err = configErr("handler", "nil handler function for %s", typ)
		}
		h.errs = append(h.errs, err)
		return
	}
	h.add(topic, typ, true, opts, func(ctx context.Context, run *attemptRun) error {
		e, err := decodeEntry[T](run.claimed, typ)
		if err != nil {
			return err
		}
		if err := fn(ctx, run.tx, e); err != nil {
			return err
		}
		return run.setResult(e.hasRes, e.result)
	})
}

func (run *attemptRun) setResult(has bool, v any) error {
	if !has {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return Permanent(fmt.Errorf("handler result is not JSON-encodable: %w", err))
	}
	run.result = b
	return nil
}

func decodeEntry[T outbox.Message](c *store.Claimed, typ string) (*Entry[T], error) {
	e := newEntry[T](c)
	if err := json.Unmarshal(c.Payload, &e.Payload); err != nil {
		return nil, &DecodeError{Topic: c.Topic, Type: typ, Err: err}
	}
	return e, nil
}

// newEntry is the handler's view of a claimed entry, without its payload.
func newEntry[T any](c *store.Claimed) *Entry[T] {
	e := &Entry[T]{
		ID:          c.ID,
		Topic:       c.Topic,
		Key:         c.Key,
		Queue:       c.Queue,
		Priority:    int(c.Priority),
		Attempt:     c.EffectiveAttempt(),
		MaxAttempts: int(c.MaxAttempts),
		CreatedAt:   c.CreatedAt,
		Headers:     decodeHeaders(c.Headers),
	}
	if c.OrderingKey != nil {
		e.OrderingKey = *c.OrderingKey
	}
	return e
}

// decodeHeaders reads the headers column leniently: it is written by plain
// SQL producers too, so non-string values are kept as their JSON text and a
// non-object is ignored rather than failing the entry.
func decodeHeaders(raw []byte) map[string]string {
	if len(raw) == 0 || string(raw) == "{}" { // the column default: most entries
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[k] = s
		} else {
			out[k] = string(v)
		}
	}
	return out
}
