package rabbitmq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Result is what a confirmed publish records on its entry (read it with
// outbox.Get or outbox.GetByKey).
type Result struct {
	Exchange   string `json:"exchange"`
	RoutingKey string `json:"routing_key"`
}

// Register registers p on h for each of topics, with opts
// (relay.WithTimeout, relay.WithRetryPolicy, ...): entries of those topics
// are published as they are. Registration errors (a topic registered
// twice) come from relay.New, as for every handler.
func Register(h *relay.Handlers, p *Publisher, topics []string, opts ...relay.HandlerOption) error {
	switch {
	case h == nil:
		return &ConfigError{Field: "Handlers", Reason: "nil *relay.Handlers"}
	case p == nil:
		return &ConfigError{Field: "Publisher", Reason: "nil *Publisher"}
	case len(topics) == 0:
		return &ConfigError{Field: "topics", Reason: "none: name the topics whose entries are published"}
	}
	for _, t := range topics {
		relay.HandleRaw(h, t, p.Handle, opts...)
	}
	return nil
}

// Handle publishes one entry and waits for the broker's confirm. It
// returns nil once the broker confirmed the message (recording a Result);
// a relay.Permanent error for what a retry cannot fix (ErrRoutingKey, an
// unroutable message unless Config.RetryUnroutable, a missing exchange,
// refused access: see BrokerError.Permanent); and a retryable error
// otherwise (a nack, ErrConfirmTimeout, a lost connection or channel, a
// failed dial). Use it with relay.HandleRaw to compose your own
// registration.
func (p *Publisher) Handle(ctx context.Context, e *relay.Entry[json.RawMessage]) error {
	if e == nil {
		return relay.Permanent(errors.New("rabbitmq: nil entry"))
	}
	key, err := p.routingKey(e)
	if err != nil {
		return relay.Permanent(err)
	}
	msg := p.message(e)

	pc, err := p.borrow(ctx)
	if err != nil {
		return err
	}
	for drained := false; !drained; { // returns of an earlier publish, if any
		select {
		case _, ok := <-pc.returns:
			drained = !ok // closed with its channel
		default:
			drained = true
		}
	}
	dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, p.s.Exchange, key, !p.s.AllowUnroutable, false, msg)
	if err != nil {
		p.release(pc, false)
		return p.channelError(pc, fmt.Errorf("rabbitmq: publishing to %s: %w", p.s.addr, err))
	}
	wctx, cancel := context.WithTimeoutCause(ctx, p.s.ConfirmTimeout, ErrConfirmTimeout)
	acked, err := dc.WaitContext(wctx)
	cancel()
	if err != nil {
		p.release(pc, false)
		if ctx.Err() == nil {
			return fmt.Errorf("%w: exchange %s on %s, after %s", ErrConfirmTimeout, exchangeName(p.s.Exchange), p.s.addr, p.s.ConfirmTimeout)
		}
		return fmt.Errorf("rabbitmq: waiting for the confirm from %s: %w", p.s.addr, context.Cause(ctx))
	}
	if !acked {
		if pc.ch.IsClosed() {
			// Closing a channel nacks what it had in flight.
			p.release(pc, false)
			return p.channelError(pc, fmt.Errorf("rabbitmq: the channel to %s closed before the confirm", p.s.addr))
		}
		p.release(pc, true)
		return fmt.Errorf("%w: exchange %s, routing key %q", ErrNacked, exchangeName(p.s.Exchange), key)
	}
	// The broker sends basic.return before the basic.ack of the same
	// message, and the client hands it to pc.returns (buffered) before it
	// processes the ack: an unroutable message is there now.
	var ret *amqp.Return
	select {
	case r, ok := <-pc.returns:
		if ok && r.MessageId == msg.MessageId {
			ret = &r
		}
	default:
	}
	p.release(pc, true)
	if ret != nil {
		uerr := &UnroutableError{Exchange: ret.Exchange, RoutingKey: ret.RoutingKey, ReplyCode: ret.ReplyCode, ReplyText: ret.ReplyText}
		if p.s.RetryUnroutable {
			return uerr
		}
		return relay.Permanent(uerr)
	}
	e.SetResult(Result{Exchange: p.s.Exchange, RoutingKey: key})
	return nil
}

// channelError classifies the failure of a publish on pc: the broker's
// reason for closing the channel, when it gave one, as a *BrokerError
// (permanent or not by its code); else fallback, retried.
func (p *Publisher) channelError(pc *pubChannel, fallback error) error {
	select {
	case aerr, ok := <-pc.closes:
		if ok && aerr != nil {
			berr := &BrokerError{Exchange: p.s.Exchange, Err: aerr}
			if berr.Permanent() {
				return relay.Permanent(berr)
			}
			return berr
		}
	default:
	}
	return fallback
}

// routingKey renders the routing key template for e.
func (p *Publisher) routingKey(e *relay.Entry[json.RawMessage]) (string, error) {
	data := RouteData{
		Topic: e.Topic, Key: e.Key, OrderingKey: e.OrderingKey, Queue: e.Queue,
		Priority: e.Priority, Headers: e.Headers,
	}
	if p.s.needPayload {
		dec := json.NewDecoder(bytes.NewReader(e.Payload))
		dec.UseNumber()
		if err := dec.Decode(&data.Payload); err != nil {
			return "", fmt.Errorf("%w for topic %q: the payload is not JSON: %w", ErrRoutingKey, e.Topic, err)
		}
	}
	var b strings.Builder
	if err := p.s.route.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%w for topic %q: %w", ErrRoutingKey, e.Topic, err)
	}
	if b.Len() > maxShortString {
		return "", fmt.Errorf("%w for topic %q: %d bytes, over AMQP's %d", ErrRoutingKey, e.Topic, b.Len(), maxShortString)
	}
	return b.String(), nil
}

// message builds the AMQP message of e: the same on every attempt.
func (p *Publisher) message(e *relay.Entry[json.RawMessage]) amqp.Publishing {
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    e.Key, // at most 255 bytes (outbox.MaxKeyLen), AMQP's limit
		Timestamp:    e.CreatedAt,
		Type:         e.Topic,
		AppId:        p.s.AppID,
		Body:         e.Payload,
	}
	if len(e.Headers) > 0 {
		msg.Headers = make(amqp.Table, len(e.Headers))
		for k, v := range e.Headers {
			msg.Headers[k] = v
		}
		if id := e.Headers[outbox.HeaderCorrelationID]; id != "" && len(id) <= maxShortString {
			msg.CorrelationId = id
		}
	}
	return msg
}
