package faultsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/internal/natstest"
	"github.com/txoutbox/txoutbox/outbox"
)

// natsTopic is the topic relay processes publish to NATS.
const natsTopic = "fault.nats"

// A relay process publishing entries to a JetStream stream is killed with
// SIGKILL at random moments, each time a new one takes over. A consumer
// then reads the stream: every entry is there (none missing), exactly once
// (the re-sends of entries a killed process held, or had published without
// recording, came within the stream's duplicate window and were dropped),
// and each ordering key's entries are in commit order.
func TestNatsPublisherKilledAtRandomMoments(t *testing.T) {
	n, kills := natsEntries.get(t), natsKills.get(t)
	rng := seededRand(t)
	logTimeScale(t)
	url := natstest.URL(t)
	// The window covers the whole run: every re-send comes within it.
	st := natstest.NewStream(t, natstest.Connect(t, url), time.Hour)
	db := newDB(t)
	ctx := context.Background()

	// Three entries in four under one of 64 ordering keys, with their
	// position in the key; the rest without a key.
	const orderingKeys = 64
	seqs := make([]int, orderingKeys)
	items := make([]outbox.Item, 0, 1000)
	flush := func() {
		if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
			t.Fatal(err)
		}
		items = items[:0]
	}
	keyed := 0
	for i := range n {
		opts := []outbox.Option{outbox.WithKey(fmt.Sprintf("nats-%d", i))}
		payload := fmt.Sprintf(`{"n": %d}`, i)
		if i%4 != 3 {
			k := i % orderingKeys
			seqs[k]++
			keyed++
			opts = append(opts, outbox.WithOrderingKey(fmt.Sprintf("order-%d", k)))
			payload = fmt.Sprintf(`{"n": %d, "seq": %d}`, i, seqs[k])
		}
		items = append(items, outbox.NewItem(outbox.Raw{TopicName: natsTopic, Payload: json.RawMessage(payload)}, opts...))
		if len(items) == cap(items) {
			flush()
		}
	}
	if len(items) > 0 {
		flush()
	}

	cfg := childConfig{
		URL: db.URL, MaxConns: 24,
		Queues:  map[string]int{"default": 16},
		LeaseMS: int(scaled(time.Second).Milliseconds()), PollMS: 100,
		NatsURL: url, NatsSubject: st.Prefix + ".{{.Topic}}",
	}
	began := time.Now()
	proc, held := killWhilePublishing(t, db, rng, cfg, "nats-relay", n, kills)
	waitSettled(t, db.Pool)
	elapsed := time.Since(began)
	proc.stop(t)

	states, summary := stateCounts(t, db.Pool)
	if states["done"] != int64(n) {
		t.Fatalf("states: %s; want all %d done", summary, n)
	}
	dropped := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE (result->>'duplicate')::bool`)
	reran := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE attempt > 1`)

	// The consumer: every entry once, each key in order.
	msgs := st.All(t)
	seen := make(map[string]int, n)
	next := map[string]int{}
	var missing, dups, disorder int
	for _, m := range msgs {
		id := m.Headers().Get(nats.HeaderMsgID)
		seen[id]++
		if seen[id] > 1 {
			dups++
		}
		if okey := m.Headers().Get(nats.HeaderOrderingKey); okey != "" {
			var v struct {
				Seq int `json:"seq"`
			}
			if err := json.Unmarshal(m.Data(), &v); err != nil {
				t.Fatal(err)
			}
			if v.Seq != next[okey]+1 && disorder < 20 {
				t.Errorf("ordering key %s: seq %d after %d", okey, v.Seq, next[okey])
			}
			if v.Seq != next[okey]+1 {
				disorder++
			}
			next[okey] = v.Seq
		}
	}
	for i := range n {
		if seen[nats.MsgID(natsTopic, fmt.Sprintf("nats-%d", i))] == 0 {
			missing++
		}
	}
	if missing > 0 || dups > 0 || disorder > 0 || len(msgs) != n {
		t.Fatalf("%d messages for %d entries: %d missing, %d duplicates, %d out of order", len(msgs), n, missing, dups, disorder)
	}
	t.Logf("%d entries (%d under %d ordering keys) published through %d SIGKILLs in %s (%.0f entries/s); killed processes held %d entries; %d entries ran more than once",
		n, keyed, orderingKeys, kills, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), held, reran)
	t.Logf("the consumer read %d messages: none missing, no duplicate, every key in order; JetStream dropped %d re-sends as duplicates (Result.Duplicate)", len(msgs), dropped)
}
