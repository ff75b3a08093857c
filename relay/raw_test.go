package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// HandleRaw serves a topic named by a string: the handler gets the payload
// as stored, the entry's metadata, and its result and processed key are
// recorded as for Handle.
func TestHandleRawServesATopicByName(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	got := make(chan *relay.Entry[json.RawMessage], 1)
	h := relay.NewHandlers()
	relay.HandleRaw(h, "raw.event", func(_ context.Context, e *relay.Entry[json.RawMessage]) error {
		got <- e
		e.SetResult(map[string]int{"len": len(e.Payload)})
		return nil
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, outbox.Raw{TopicName: "raw.event", Payload: json.RawMessage(`{"a": 1}`)},
		outbox.WithKey("k-1"), outbox.WithOrderingKey("o-1"), outbox.WithCorrelationID("c-1"))
	ev.wait(t, entryKind(id, relay.EventDone))
	e := <-got
	if e.Topic != "raw.event" || e.Key != "k-1" || e.OrderingKey != "o-1" || e.Headers[outbox.HeaderCorrelationID] != "c-1" {
		t.Fatalf("entry %+v", e)
	}
	if string(e.Payload) != `{"a": 1}` {
		t.Fatalf("payload %s, want the stored JSON", e.Payload)
	}
	stored := getEntry(t, db.Pool, id)
	if string(stored.Result) != `{"len": 8}` && string(stored.Result) != `{"len":8}` {
		t.Fatalf("result %s", stored.Result)
	}
	if !scalar[bool](t, db.Pool, `SELECT EXISTS (SELECT 1 FROM outbox_processed_keys WHERE scope = 'raw.event' AND key = 'k-1')`) {
		t.Fatal("processed key not recorded")
	}
}

// Registration errors of HandleRaw are reported by New, like Handle's.
func TestHandleRawRegistrationErrors(t *testing.T) {
	t.Parallel()
	noop := func(context.Context, *relay.Entry[json.RawMessage]) error { return nil }
	for name, reg := range map[string]func(h *relay.Handlers){
		"empty topic": func(h *relay.Handlers) { relay.HandleRaw(h, "", noop) },
		"nil func":    func(h *relay.Handlers) { relay.HandleRaw(h, "raw.x", nil) },
		"twice": func(h *relay.Handlers) {
			relay.HandleRaw(h, "test.ping", noop)
			relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
		},
	} {
		h := relay.NewHandlers()
		relay.Handle(h, func(context.Context, *relay.Entry[pong]) error { return nil }) // so the registry is not empty
		reg(h)
		err := relay.Config{Handlers: h}.Validate()
		if !errors.Is(err, relay.ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}
