package relay

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
)

// HandleRaw registers fn for topic, a name known only at run time (a
// configuration file's list of topics, say), without decoding the payload:
// the handler gets an [outbox.Raw] whose TopicName is the entry's topic and
// whose Payload is the entry's JSON exactly as it is stored. It is for
// handlers that forward entries as they are (broker publishers, bridges);
// a handler that reads the payload should take a typed Handle instead.
// Registration errors (an empty or too long topic, a topic registered
// twice) are returned by New, as for Handle.
func HandleRaw(h *Handlers, topic string, fn HandlerFunc[outbox.Raw], opts ...HandlerOption) {
	const typ = "outbox.Raw"
	if fn == nil {
		h.errs = append(h.errs, configErr("handler", "nil handler function for topic %q", topic))
		return
	}
	h.add(topic, typ, false, opts, func(ctx context.Context, run *attemptRun) error {
		e, err := rawEntry(run.claimed, typ)
		if err != nil {
			return err
		}
		if err := fn(ctx, e); err != nil {
			return err
		}
		return run.setResult(e.hasRes, e.result)
	})
}

// rawEntry is decodeEntry for HandleRaw: the payload is copied, not
// decoded.
func rawEntry(c *store.Claimed, typ string) (*Entry[outbox.Raw], error) {
	if c.Payload == nil || !json.Valid(c.Payload) {
		return nil, &DecodeError{Topic: c.Topic, Type: typ, Err: errors.New("the payload is not valid JSON")}
	}
	e := &Entry[outbox.Raw]{
		ID:          c.ID,
		Topic:       c.Topic,
		Key:         c.Key,
		Queue:       c.Queue,
		Priority:    int(c.Priority),
		Attempt:     c.EffectiveAttempt(),
		MaxAttempts: int(c.MaxAttempts),
		CreatedAt:   c.CreatedAt,
		Headers:     decodeHeaders(c.Headers),
		Payload:     outbox.Raw{TopicName: c.Topic, Payload: append(json.RawMessage(nil), c.Payload...)},
	}
	if c.OrderingKey != nil {
		e.OrderingKey = *c.OrderingKey
	}
	return e, nil
}
