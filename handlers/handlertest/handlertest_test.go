package handlertest_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

type note struct {
	Text string `json:"text"`
}

func (note) Topic() string { return "test.note" }

// receiver is a toy effect target: it counts deliveries per key and fails
// or hangs as told.
type receiver struct {
	mu      sync.Mutex
	mode    handlertest.Mode
	effects map[string]int
}

func (r *receiver) deliver(ctx context.Context, key string) error {
	r.mu.Lock()
	mode := r.mode
	r.mu.Unlock()
	switch mode {
	case handlertest.Retryable:
		return errors.New("busy, try later")
	case handlertest.Permanent:
		return relay.Permanent(errors.New("rejected"))
	case handlertest.Hang:
		<-ctx.Done()
		return ctx.Err()
	}
	r.mu.Lock()
	r.effects[key]++
	r.mu.Unlock()
	return nil
}

// The suite itself, run against a handler that does what it asks.
func TestConformanceSuite(t *testing.T) {
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		r := &receiver{effects: map[string]int{}}
		return handlertest.Harness{
			Register: func(h *relay.Handlers) {
				relay.Handle(h, func(ctx context.Context, e *relay.Entry[note]) error {
					return r.deliver(ctx, e.Key)
				})
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, note{Text: "hi"}, outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int {
				r.mu.Lock()
				defer r.mu.Unlock()
				return r.effects[key]
			},
			SetMode: func(m handlertest.Mode) {
				r.mu.Lock()
				r.mode = m
				r.mu.Unlock()
			},
		}
	})
}
