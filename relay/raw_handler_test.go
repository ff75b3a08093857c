package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// HandleRaw serves a topic named at run time and hands the handler the
// stored JSON exactly, with the entry's metadata; its result is recorded.
func TestHandleRawGetsTheStoredJSON(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	got := make(chan *relay.Entry[outbox.Raw], 1)
	h := relay.NewHandlers()
	relay.HandleRaw(h, "orders.placed", func(_ context.Context, e *relay.Entry[outbox.Raw]) error {
		e.SetResult(map[string]int{"n": 1})
		got <- e
		return nil
	})
	ev := newEvents()
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, outbox.Raw{TopicName: "orders.placed", Payload: json.RawMessage(`{"order": 17, "b": [1, 2]}`)},
		outbox.WithKey("k-17"), outbox.WithOrderingKey("order-17"), outbox.WithHeaders(map[string]string{"traceparent": "tp"}))
	ev.wait(t, entryKind(id, relay.EventDone))
	e := <-got
	// jsonb normalises the text; the handler sees what the table holds.
	stored := scalar[string](t, db.Pool, `SELECT payload::text FROM outbox_entries WHERE id = $1`, id)
	if string(e.Payload.Payload) != stored || e.Payload.TopicName != "orders.placed" || e.Topic != "orders.placed" {
		t.Fatalf("payload %s topic %q; want %s under orders.placed", e.Payload.Payload, e.Payload.TopicName, stored)
	}
	if e.Key != "k-17" || e.OrderingKey != "order-17" || e.Headers["traceparent"] != "tp" || e.Attempt != 1 {
		t.Fatalf("entry metadata %+v", e)
	}
	if r := getEntry(t, db.Pool, id).Result; string(r) != `{"n": 1}` && string(r) != `{"n":1}` {
		t.Fatalf("result %s", r)
	}
}

// Registration errors of HandleRaw come from New, like Handle's.
func TestHandleRawRegistrationErrors(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	fn := func(context.Context, *relay.Entry[outbox.Raw]) error { return nil }
	for name, reg := range map[string]func(h *relay.Handlers){
		"empty topic": func(h *relay.Handlers) { relay.HandleRaw(h, "", fn) },
		"nil func":    func(h *relay.Handlers) { relay.HandleRaw(h, "t", nil) },
		"twice":       func(h *relay.Handlers) { relay.HandleRaw(h, "t", fn); relay.HandleRaw(h, "t", fn) },
		"long topic":  func(h *relay.Handlers) { relay.HandleRaw(h, strings.Repeat("t", outbox.MaxTopicLen+1), fn) },
	} {
		h := relay.NewHandlers()
		reg(h)
		_, err := relay.New(db.Pool, relay.Config{Handlers: h})
		if !errors.Is(err, relay.ErrInvalidConfig) || !strings.Contains(err.Error(), "handler") {
			t.Errorf("%s: New: %v; want ErrInvalidConfig", name, err)
		}
	}
}
