package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/internal/natstest"
	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// OrderCreated is a domain event the application publishes.
type OrderCreated struct {
	ID     string `json:"id"`
	Region string `json:"region"`
}

// Topic names the event's topic.
func (OrderCreated) Topic() string { return "order.created" }

// An order is created; its event reaches the EXAMPLE_ORDERS stream if and
// only if the order committed, and a consumer reads it.
func Example() {
	ctx := context.Background()
	// The servers the package's tests use (outboxtest's and natstest's
	// choice: the configured ones, else local or throwaway servers).
	server, err := outboxtest.ServerURL()
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, cleanup, err := scratchdb.Create(ctx, server, "txoutbox_example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()
	broker, err := natstest.Find()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Stop()

	// The stream is the application's: the publisher never creates one.
	nc, err := natsio.Connect(broker.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	name := fmt.Sprintf("EXAMPLE_ORDERS_%d", time.Now().UnixNano())
	subjects := "example-" + name[len("EXAMPLE_ORDERS_"):] + ".orders"
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subjects + ".>"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = js.DeleteStream(ctx, name) }()

	// The relay side: one call registers the publisher for the topics.
	h := relay.NewHandlers()
	pub, err := nats.Register(h, nats.Config{
		URL:     broker.URL,
		Topics:  []string{"order.created"},
		Subject: subjects + ".{{.Payload.region}}.{{.Topic}}",
		Stream:  name,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()

	// The producer side: the event commits with the order, or not at all.
	tx, err := pool.Begin(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... INSERT INTO orders ...
	if _, err := outbox.Enqueue(ctx, tx, OrderCreated{ID: "o-17", Region: "eu"},
		outbox.WithKey("o-17"), outbox.WithOrderingKey("order:o-17")); err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		fmt.Println(err)
		return
	}

	r, err := relay.New(pool, relay.Config{Handlers: h, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(runCtx) }()
	defer func() { stop(); <-stopped }()

	// A consumer reads the stream.
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(time.Minute))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("subject", msg.Subject()[len(subjects):])
	fmt.Println("data", string(msg.Data()))
	fmt.Println("Nats-Msg-Id", msg.Headers().Get(nats.HeaderMsgID))
	// Output:
	// subject .eu.order.created
	// data {"id": "o-17", "region": "eu"}
	// Nats-Msg-Id order.created:o-17
}
