package nats_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/internal/natstest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// conformanceTopic is the topic the conformance harness publishes.
const conformanceTopic = "conformance.nats"

// The conformance suite against a real JetStream stream whose behaviour
// the harness changes:
//
//   - OK: the stream captures the entries' subject and takes messages;
//   - Retryable: the stream is full (MaxMsgs reached, DiscardNew) and
//     refuses new messages, as a stream does until consumers catch up or
//     limits are raised;
//   - Permanent: no stream captures the subject (the stream was changed
//     to capture another);
//   - Hang: no stream captures the subject, but a subscriber that never
//     answers does, so the publish waits for an ack that never comes.
func TestConformance(t *testing.T) {
	url := natstest.URL(t)
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		nc := natstest.Connect(t, url)
		st := natstest.NewStream(t, nc, 0)
		subject := st.Prefix + ".events"
		ctx := context.Background()
		base := jetstream.StreamConfig{
			Name: st.Name, Subjects: []string{st.Prefix + ".>"}, Storage: jetstream.FileStorage,
			Discard: jetstream.DiscardNew, MaxMsgs: -1,
		}
		if _, err := st.JS.UpdateStream(ctx, base); err != nil {
			t.Fatal(err)
		}
		var silent *natsio.Subscription
		setMode := func(m handlertest.Mode) {
			cfg := base
			switch m {
			case handlertest.Retryable:
				// MaxMsgs 0 would mean no limit: hold one message first.
				if _, err := st.JS.Publish(ctx, st.Prefix+".filler", []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
				cfg.MaxMsgs = int64(st.Count(t))
			case handlertest.Permanent, handlertest.Hang:
				cfg.Subjects = []string{st.Prefix + "-elsewhere.>"}
			}
			if _, err := st.JS.UpdateStream(ctx, cfg); err != nil {
				t.Fatalf("setting mode %d: %v", m, err)
			}
			if silent != nil {
				_ = silent.Unsubscribe()
				silent = nil
			}
			if m == handlertest.Hang {
				var err error
				if silent, err = nc.Subscribe(subject, func(*natsio.Msg) {}); err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		return handlertest.Harness{
			Register: func(h *relay.Handlers) {
				pub, err := nats.Register(h, nats.Config{
					URL:        url,
					Topics:     []string{conformanceTopic},
					Subject:    subject,
					AckTimeout: 10 * time.Second, // longer than the suite's attempt timeout: the relay cancels a hung publish
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pub.Close)
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, outbox.Raw{TopicName: conformanceTopic, Payload: json.RawMessage(`{"n": 1}`)}, outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int {
				n := 0
				for _, m := range st.All(t) {
					if m.Headers().Get(nats.HeaderKey) == key {
						n++
					}
				}
				return n
			},
			SetMode: setMode,
		}
	})
}
