package relay

import (
	"context"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// Tracer instruments handler attempts, typically with a tracing span (see
// package txotel for OpenTelemetry). Set it in Config.Tracer; nil, the
// default, costs nothing.
//
// StartAttempt is called just before the handler runs, with the context the
// handler would get and a snapshot of the entry: its id, topic, key,
// ordering key, queue, priority, attempt (counted against MaxAttempts),
// max attempts, headers (where the producer stored trace context) and
// creation time, in state running; Payload and Result are not set. The
// returned context is passed to the handler — for a transactional handler,
// also to its transaction. The returned function, if not nil, is called
// exactly once when the attempt's outcome is decided, with the outcome's
// event name — "done", "skipped", "retry", "dead", "handed_back" or
// "fenced" (see EventKind) — and the handler's error (nil when done). An
// outcome that the completion statement later finds fenced (the lease was
// lost while the handler ran) is reported as decided; the Observer sees
// EventFenced.
//
// StartAttempt is called concurrently from the relay's workers and must be
// safe for concurrent use.
type Tracer interface {
	StartAttempt(ctx context.Context, e *outbox.Entry) (context.Context, func(outcome string, err error))
}

// attemptEntry is the snapshot of a claimed entry handed to a Tracer.
func attemptEntry(c *store.Claimed) *outbox.Entry {
	return &outbox.Entry{
		ID:          c.ID,
		Topic:       c.Topic,
		Key:         c.Key,
		OrderingKey: c.OrderingKey,
		Queue:       c.Queue,
		Priority:    int(c.Priority),
		State:       outbox.StateRunning,
		Attempt:     c.EffectiveAttempt(),
		MaxAttempts: int(c.MaxAttempts),
		RunAt:       c.RunAt,
		Headers:     decodeHeaders(c.Headers),
		CreatedAt:   c.CreatedAt,
	}
}

// endAttempt reports an attempt's outcome to the Tracer's end function.
func endAttempt(end func(string, error), kind EventKind, err error) {
	if end != nil {
		end(kind.String(), err)
	}
}
