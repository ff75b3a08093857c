package rabbitmq_test

import (
	"context"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// OrderPlaced is a domain event; its topic is the default routing key.
type OrderPlaced struct {
	Order  int    `json:"order"`
	Region string `json:"region"`
}

func (OrderPlaced) Topic() string { return "orders.placed" }

// Publish order events to the "events" exchange, routed by region and
// topic ("eu.orders.placed"), once each producer transaction commits.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	pub, err := rabbitmq.New(rabbitmq.Config{
		URL:        os.Getenv("RABBITMQ_URL"), // amqp://user:password@host:5672/vhost
		Exchange:   "events",
		RoutingKey: "{{.Payload.region}}.{{.Topic}}",
	})
	if err != nil {
		log.Fatal(err) // every problem, each a *rabbitmq.ConfigError
	}
	defer pub.Close()

	h := relay.NewHandlers()
	if err := rabbitmq.Register(h, pub, []string{OrderPlaced{}.Topic()}); err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(pool, relay.Config{Handlers: h})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = r.Run(ctx) }()

	// In the producer's transaction: the key becomes the message-id.
	tx, _ := pool.Begin(ctx)
	_, _ = outbox.Enqueue(ctx, tx, OrderPlaced{Order: 17, Region: "eu"},
		outbox.WithKey("order.placed:17"), outbox.WithOrderingKey("order-17"))
	_ = tx.Commit(ctx)
}
