package outbox

import (
	"maps"
	"time"
)

// Limits and defaults that the producer applies. They mirror the schema's
// CHECK constraints, so that invalid input fails before it reaches the
// database, with an error that names the field.
const (
	// DefaultQueue is the queue of entries enqueued without WithQueue.
	DefaultQueue = "default"
	// DefaultMaxAttempts is the attempt limit of entries enqueued without
	// WithMaxAttempts (and the column default for plain SQL inserts).
	DefaultMaxAttempts = 25
	// DefaultMaxPayloadBytes is the encoded payload limit of a zero Producer.
	DefaultMaxPayloadBytes = 1 << 20
	// MaxTopicLen, MaxKeyLen and MaxQueueLen bound those strings, in bytes.
	MaxTopicLen = 255
	// MaxKeyLen bounds idempotency and ordering keys, in bytes.
	MaxKeyLen = 255
	// MaxQueueLen bounds queue names, in bytes.
	MaxQueueLen = 64
	// MaxAttemptsLimit is the largest value WithMaxAttempts accepts.
	MaxAttemptsLimit = 10000
	// MaxHeadersBytes bounds the encoded headers of one entry.
	MaxHeadersBytes = 16 << 10
)

// Option sets one property of an entry being enqueued.
type Option func(*options)

type options struct {
	key         string
	orderingKey string
	queue       string
	priority    int
	prioritySet bool
	delay       time.Duration
	runAt       time.Time
	maxAttempts int
	headers     map[string]string
}

// WithKey sets the entry's idempotency key. Enqueueing the same topic and
// key again, while the first entry is still in the table, returns the first
// entry's id instead of creating a second one. The key is also what handlers
// hand to the outside world (a webhook id, an email Message-ID), so choose a
// business identity such as "welcome:user-42". Without it, Enqueue
// generates a key that cannot repeat (a time-ordered UUID, see key.go) and
// marks it as generated, so the relay spends no processed-key bookkeeping on
// it.
func WithKey(key string) Option { return func(o *options) { o.key = key } }

// WithOrderingKey makes the entry run only after every earlier entry (by id)
// with the same ordering key has finished — done or dead. Entries without an
// ordering key, or with different ones, run in parallel.
func WithOrderingKey(key string) Option { return func(o *options) { o.orderingKey = key } }

// WithQueue puts the entry in a named queue; each queue has its own worker
// pool in the relay, so bulk work in one never starves another. Default
// DefaultQueue.
func WithQueue(queue string) Option { return func(o *options) { o.queue = queue } }

// WithPriority orders entries within a queue: higher runs first. Default 0;
// the range is that of a Postgres smallint.
func WithPriority(p int) Option {
	return func(o *options) { o.priority, o.prioritySet = p, true }
}

// WithDelay makes the entry eligible only after d has passed, measured by
// the database clock at insert time. It is ignored when WithRunAt is given.
func WithDelay(d time.Duration) Option { return func(o *options) { o.delay = d } }

// WithRunAt makes the entry eligible only from t on.
func WithRunAt(t time.Time) Option { return func(o *options) { o.runAt = t } }

// WithMaxAttempts bounds how often the entry is tried before it is
// dead-lettered. Default DefaultMaxAttempts.
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// WithHeaders adds metadata (trace context, correlation id) stored with the
// entry and handed to its handler. Later calls add to earlier ones.
func WithHeaders(h map[string]string) Option {
	return func(o *options) {
		if o.headers == nil {
			o.headers = make(map[string]string, len(h))
		}
		maps.Copy(o.headers, h)
	}
}

// OptionsProvider may be implemented by a message type to supply default
// options for every entry of that type (a queue, a priority, a max attempts).
// Options passed to Enqueue are applied after these and win.
type OptionsProvider interface {
	EnqueueOptions() []Option
}
