package relay_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// WelcomeEmail is an example payload.
type WelcomeEmail struct {
	Email string `json:"email"`
}

func (WelcomeEmail) Topic() string { return "email.welcome" }

func Example() {
	ctx := context.Background()
	pool, cleanup, err := exampleDatabase(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	// Producer: enqueue inside the transaction that writes the domain rows.
	tx, _ := pool.Begin(ctx)
	res, _ := outbox.Enqueue(ctx, tx, WelcomeEmail{Email: "ada@example.com"}, outbox.WithKey("welcome:ada"))
	_ = tx.Commit(ctx)

	// Relay: a typed handler per topic.
	sent := make(chan string, 1)
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[WelcomeEmail]) error {
		sent <- fmt.Sprintf("to %s, Message-ID <%s@example.com>", e.Payload.Email, e.Key)
		return nil
	})
	done := make(chan struct{}, 1)
	r, err := relay.New(pool, relay.Config{
		Handlers: h,
		Logger:   slog.New(slog.DiscardHandler),
		Observer: relay.ObserverFunc(func(e relay.Event) {
			if e.Kind == relay.EventDone && e.EntryID == res.ID {
				done <- struct{}{}
			}
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- r.Run(runCtx) }()

	fmt.Println("sent", <-sent)
	<-done
	stop()
	<-stopped

	e, _ := outbox.Get(ctx, pool, res.ID)
	fmt.Println("entry", e.State, "after", e.Attempt, "attempt")
	// Output:
	// sent to ada@example.com, Message-ID <welcome:ada@example.com>
	// entry done after 1 attempt
}

// exampleDatabase makes a migrated scratch database for an Example (which
// cannot use outboxtest, having no *testing.T).
func exampleDatabase(ctx context.Context) (*pgxpool.Pool, func(), error) {
	server, err := outboxtest.ServerURL()
	if err != nil {
		return nil, nil, err
	}
	return scratchdb.Create(ctx, server, "txoutbox_example")
}
