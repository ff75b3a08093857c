// Package nats is txoutbox's built-in publisher to NATS JetStream: each
// outbox entry of the configured topics becomes one message in a stream,
// published when the producer's transaction has committed, acknowledged by
// JetStream before the entry is done, and deduplicated by JetStream when a
// crash makes the relay send it again.
//
// # Use
//
// Name the topics to publish and where their messages go, register the
// publisher on the relay's registry, and enqueue entries as usual:
//
//	h := relay.NewHandlers()
//	pub, err := nats.Register(h, nats.Config{
//		URL:     "nats://nats.internal:4222",
//		Options: []natsio.Option{natsio.UserCredentials("/etc/nats/relay.creds")},
//		Topics:  []string{"order.created", "order.paid"},
//		Subject: "events.{{.Topic}}",  // the default is "{{.Topic}}"
//		Stream:  "EVENTS",             // optional: the stream every message must land in
//	})
//	if err != nil { ... } // every problem, each a *ConfigError
//	defer pub.Close()     // after the relay's Run has returned
//	r, err := relay.New(pool, relay.Config{Handlers: h})
//
//	// In the producer's transaction:
//	outbox.Enqueue(ctx, tx, OrderCreated{ID: "o-17", ...},
//		outbox.WithKey("o-17"), outbox.WithOrderingKey("order:o-17"))
//
// The stream itself is the application's (or its operators') to create,
// with the subjects the template yields; the publisher never creates or
// changes streams. [New] builds a [Publisher] without registering it; its
// Handle serves relay.HandleRaw.
//
// # The message
//
//   - Subject: the Config.Subject template (text/template) over
//     [SubjectData]: the entry's topic, key, ordering key, queue, headers
//     and decoded payload, e.g. "orders.{{.Payload.region}}.{{.Topic}}".
//   - Data: the entry's payload, the JSON text as the relay read it from
//     the table (PostgreSQL's jsonb text), not re-encoded.
//   - Nats-Msg-Id: "<topic>:<key>" ([MsgID]), the same on every attempt.
//     The topic is part of it because keys are unique per topic, and one
//     stream often captures several topics.
//   - Txoutbox-Topic, Txoutbox-Key, Txoutbox-Ordering-Key (when set) and
//     Txoutbox-Entry-Id.
//   - The entry's own headers: the trace context that txotel.Headers
//     stored (traceparent, tracestate), the correlation id
//     (outbox.WithCorrelationID, header "correlation_id"), and any other,
//     except names starting with "Nats-" (they would steer JetStream) and
//     names or values a NATS header cannot carry unchanged.
//   - Nats-Expected-Stream: Config.Stream, when set.
//
// # Guarantees
//
// Into the stream, delivery is at least once: an entry is done only after
// JetStream acknowledged its message (PubAck), so nothing committed is
// lost across relay crashes, broker restarts or dropped connections; the
// entry is retried until acknowledged or dead.
//
// Duplicates: a message is sent again when its ack was lost (a timeout, a
// dropped connection) or when the relay died between the ack and the
// entry's completion. The re-send carries the same Nats-Msg-Id, and
// JetStream drops it if it comes within the stream's duplicate window
// (StreamConfig.Duplicates, 2 minutes by default); the ack then says
// Duplicate, which the publisher counts as success (Result.Duplicate). A
// re-send after the window is stored a second time. Re-sends come within
// seconds of the first send unless the entry waits out retries longer than
// the window (a broker down for longer, say), so size the window to cover
// your longest outage, or let consumers drop repeats by Nats-Msg-Id.
// Entries whose key was already processed are skipped by the relay before
// any publish, whatever the window.
//
// Order: entries sharing an ordering key are published one at a time, the
// next only after the previous one's ack, so the stream holds one key's
// messages in commit order, across retries and relay restarts. (The relay
// runs them in order; see docs/guarantees.md for what a dead entry does to
// its key.) A consumer that reads the stream, or one subject of it, in
// order sees them in that order.
//
// # Outcomes
//
//	acked, or Duplicate within the window   done; a Result with stream, sequence, subject
//	no stream captures the subject          dead-lettered (ErrNoStream)
//	Config.Stream missing or not the one    dead-lettered (ErrNoStream)
//	publish permission denied               dead-lettered (ErrPermission)
//	message over the stream's/server's max  dead-lettered (ErrRejected)
//	template fails, invalid subject         dead-lettered (ErrInvalidSubject)
//	no ack within Config.AckTimeout         retried (ErrAckTimeout)
//	connection down, reconnecting, no
//	responders while the stream exists,
//	other JetStream errors (stream full)    retried (ErrUnavailable)
//
// "No responders" is ambiguous: no stream captures the subject, or the
// stream cannot answer now (no leader, JetStream restarting). The
// publisher asks JetStream which stream captures the subject and
// dead-letters only when JetStream answers "none"; when it cannot answer,
// the entry is retried. A permission violation is reported by the server
// asynchronously; the publisher notes it from the connection's error
// handler and dead-letters the entry whose ack it left waiting. After
// creating a missing stream or granting a permission, replay the dead
// entries (outbox.Replay, `txoutbox dead retry`).
//
// # Testing
//
// The package's tests run against a real server found as
// internal/natstest describes: TXOUTBOX_TEST_NATS_URL, else 127.0.0.1:4222
// when it answers with JetStream, else a server inside the test binary.
// See docs/brokers.md.
package nats
