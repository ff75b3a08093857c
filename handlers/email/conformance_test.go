package email_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// The conformance suite, against a real SMTP server: OK accepts, Retryable
// answers 451 to the message, Permanent answers 550 to the recipient, Hang
// never answers the message until the client closes the connection.
func TestConformance(t *testing.T) {
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		s := startServer(t, serverOptions{})
		cfg := testConfig(s)
		ids := newHandler(t, cfg) // Message-IDs, as the registered handler makes them
		return handlertest.Harness{
			Register: func(hs *relay.Handlers) {
				if err := email.Register(hs, cfg); err != nil {
					t.Fatalf("email.Register: %v", err)
				}
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, welcome("ada@example.com"), outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int { return s.acceptedWithID(ids.MessageID(key)) },
			SetMode: func(m handlertest.Mode) {
				switch m {
				case handlertest.OK:
					s.setAnswer(accept)
				case handlertest.Retryable:
					s.setAnswer(tempFailData)
				case handlertest.Permanent:
					s.setAnswer(permFailRcpt)
				case handlertest.Hang:
					s.setAnswer(hangData)
				}
			},
		}
	})
}
