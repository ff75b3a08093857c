package rabbitmq_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/internal/rabbittest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// The conformance suite, against the real broker through a proxy: the
// message's queue bound when OK; only a queue that refuses every message
// bound when Retryable (the broker nacks); the exchange deleted when
// Permanent (404 NOT_FOUND); the proxy stalled when Hang. An effect is a
// message in the queue with the key as message-id. Bindings cannot change
// at once, so unroutable messages are retried (RetryUnroutable): a retry
// that falls between unbinding one queue and binding the other is then
// harmless, and a switch to OK unbinds the refusing queue first, so that
// no nacked attempt leaves a copy in the message's queue.
func TestConformance(t *testing.T) {
	t.Parallel()
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		const topic = "conformance.test"
		tp := rabbittest.NewTopology(t, "topic")
		main := tp.Queue(t, nil, topic)
		full := tp.FullQueue(t)
		proxy := rabbittest.NewProxy(t)
		p := newPublisher(t, rabbitmq.Config{URL: proxy.URL, Exchange: tp.Exchange, RetryUnroutable: true})
		var (
			mu      sync.Mutex
			effects = map[string]int{}
			bound   = map[string]bool{main: true}
		)
		bind := func(q string, on bool) {
			if bound[q] == on {
				return
			}
			if on {
				tp.Bind(t, q, topic)
			} else {
				tp.Unbind(t, q, topic)
			}
			bound[q] = on
		}
		return handlertest.Harness{
			Register: func(h *relay.Handlers) {
				if err := rabbitmq.Register(h, p, []string{topic}); err != nil {
					t.Fatal(err)
				}
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, outbox.Raw{TopicName: topic, Payload: []byte(`{"n":1}`)}, outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int {
				mu.Lock()
				defer mu.Unlock()
				for _, d := range tp.Get(t, main) {
					effects[d.MessageId]++
				}
				return effects[key]
			},
			SetMode: func(m handlertest.Mode) {
				switch m {
				case handlertest.OK:
					bind(full, false)
					bind(main, true)
					proxy.Resume()
				case handlertest.Retryable:
					bind(main, false)
					bind(full, true)
				case handlertest.Permanent:
					tp.DeleteExchange(t)
				case handlertest.Hang:
					proxy.Stall()
				}
			},
		}
	})
}
