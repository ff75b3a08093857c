package txotel_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/txotel"
)

// Both sides of a trace: the producer stores the request's trace context
// with the entry, the relay continues it around the handler.
func Example() {
	var pool *pgxpool.Pool
	ctx := context.Background() // a request's context, carrying its span

	// Producer: every entry written through p carries traceparent.
	p := outbox.Producer{Headers: txotel.Headers}
	if _, err := p.Enqueue(ctx, pool, welcome{Email: "ada@example.com"}); err != nil {
		log.Fatal(err)
	}

	// Relay: a span per handler attempt, child of the request's span.
	tracer, err := txotel.NewTracer(txotel.Config{}) // the global TracerProvider
	if err != nil {
		log.Fatal(err)
	}
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[welcome]) error { return nil })
	r, err := relay.New(pool, relay.Config{Handlers: h, Tracer: tracer})
	if err != nil {
		log.Fatal(err)
	}
	_ = r.Run(ctx)
}
