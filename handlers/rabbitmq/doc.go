// Package rabbitmq is txoutbox's built-in handler that publishes outbox
// entries to RabbitMQ, with the maintained AMQP 0-9-1 client
// (github.com/rabbitmq/amqp091-go): an entry is done only once the broker
// has confirmed its message.
//
// # Use
//
// Build a [Publisher] (one connection, shared by every topic it serves),
// register it for the topics to publish, and enqueue events in the
// transactions that make the changes they report:
//
//	pub, err := rabbitmq.New(rabbitmq.Config{
//		URL:        os.Getenv("RABBITMQ_URL"), // amqp://user:password@host:5672/vhost
//		Exchange:   "events",
//		RoutingKey: "{{.Payload.region}}.{{.Topic}}", // default "{{.Topic}}"
//	})
//	if err != nil { ... } // every problem, each a *ConfigError naming the field
//	defer pub.Close()     // after the relay has stopped
//	h := relay.NewHandlers()
//	err = rabbitmq.Register(h, pub, []string{"orders.placed", "orders.shipped"})
//
//	// In the producer's transaction:
//	outbox.Enqueue(ctx, tx, OrderPlaced{Order: 17, Region: "eu"},
//		outbox.WithKey("order.placed:17"), outbox.WithOrderingKey("order-17"))
//
// Entries are published as they are stored, whatever their Go type (the
// relay hands them over undecoded, relay.HandleRaw), so plain-SQL
// producers work the same way. [Publisher.Handle] serves applications
// that compose their own registration.
//
// # The message
//
// Each attempt publishes to Config.Exchange, with the routing key that
// Config.RoutingKey renders from the entry ([RouteData]), and:
//
//   - body: the entry's JSON payload, byte for byte as stored;
//   - message-id: the entry's idempotency key, the same on every attempt,
//     so a consumer can drop a repeat;
//   - type: the topic; timestamp: when the entry was created; app-id:
//     Config.AppID; content-type application/json; delivery-mode 2
//     (persistent);
//   - headers: the entry's headers as strings — the trace context
//     (traceparent, tracestate; see txotel) and correlation_id among
//     them; the correlation id is also the correlation-id property.
//
// Every attempt of an entry publishes the same message.
//
// # Outcomes
//
//	broker confirm (basic.ack)             done; Result{Exchange, RoutingKey} recorded
//	negative confirm (basic.nack)          retried (ErrNacked)
//	no confirm within ConfirmTimeout       retried (ErrConfirmTimeout)
//	mandatory message returned (no route)  dead-lettered (ErrUnroutable), or retried with RetryUnroutable
//	404 exchange not found, 403 refused,   dead-lettered (*BrokerError; see BrokerError.Permanent)
//	406, 311 content too large, 530
//	connection or channel lost, 320, 504   retried
//	failed dial (broker down, bad login)   retried
//	routing key template fails on entry    dead-lettered (ErrRoutingKey)
//
// A failed dial is retried even when the broker refused the login: a
// credential being rotated should not dead-letter every entry. Ping checks
// the credentials at start-up.
//
// # Connections and channels
//
// The publisher dials when first needed and again after the connection
// closes (one dial at a time; a failed dial is reported to callers for a
// second before the next). Each publish takes a confirm-mode channel for
// itself from a pool of at most Config.MaxChannels, publishes with the
// mandatory flag (unless Config.AllowUnroutable), waits for the confirm,
// and gives the channel back; so a confirm and a returned message on a
// channel always belong to its one publish (the broker sends basic.return
// before the basic.ack of the same message). A channel whose publish
// failed or timed out is closed, never reused. A broker that does not
// open a channel within ConfirmTimeout has its connection replaced.
//
// # Guarantees
//
// At least once: an entry is done only after the broker confirmed its
// message, which for a persistent message on a durable queue means the
// queue has it (and, for a quorum queue, a majority of its replicas). A
// relay that crashes after the confirm and before the entry's outcome is
// written publishes the message again on the next attempt; so does an
// attempt whose confirm was lost with its connection, or timed out. Such
// duplicates carry the same message-id; RabbitMQ does not deduplicate, so
// consumers that must not act twice drop repeats by message-id.
// relay.WithOutcomeBeforeNext narrows the crash window to one message per
// worker.
//
// Per-key order: with an ordering key, the relay publishes entry N+1 only
// after entry N's confirm, so a queue receives one key's messages in
// commit order, across retries and relay restarts. A consumer sees them in
// that order when it is the queue's only consumer (with several, or with
// requeued deliveries, RabbitMQ's order is per delivery, not per key); a
// duplicate re-send comes after the messages published before it.
package rabbitmq
