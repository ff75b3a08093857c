package nats_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// register registers a publisher for topics on h, closed when t ends.
func register(t *testing.T, h *relay.Handlers, cfg nats.Config, opts ...relay.HandlerOption) *nats.Publisher {
	t.Helper()
	pub, err := nats.Register(h, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return pub
}

// enqueue writes a raw entry and returns its id.
func enqueue(t testing.TB, pool *pgxpool.Pool, topic, payload string, opts ...outbox.Option) int64 {
	t.Helper()
	res, err := outbox.Enqueue(context.Background(), pool, outbox.Raw{TopicName: topic, Payload: json.RawMessage(payload)}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// seqOf reads {"seq": n} from a message's data.
func seqOf(t testing.TB, data []byte) int {
	t.Helper()
	var v struct {
		Seq *int `json:"seq"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.Seq == nil {
		t.Fatalf("message data %s: no seq (%v)", data, err)
	}
	return *v.Seq
}

// checkOnceInOrder checks that the messages of each ordering key in msgs
// carry seq 1, 2, ... n in stream order, each exactly once, and that there
// are want messages in all.
func checkOnceInOrder(t testing.TB, msgs []jetstream.Msg, want int) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, m := range msgs {
		id := m.Headers().Get(nats.HeaderMsgID)
		if seen[id] {
			t.Errorf("message %s stored twice", id)
		}
		seen[id] = true
		okey := m.Headers().Get(nats.HeaderOrderingKey)
		if okey == "" {
			continue
		}
		seq := seqOf(t, m.Data())
		if seq != next[okey]+1 {
			t.Errorf("ordering key %s: seq %d after %d", okey, seq, next[okey])
		}
		next[okey] = seq
	}
	if len(msgs) != want {
		t.Errorf("%d messages in the stream, want %d", len(msgs), want)
	}
}
