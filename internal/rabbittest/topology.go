package rabbittest

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology is a test's own exchange and queues on the test broker, deleted
// when the test ends. Its methods fail the test on an error, and must be
// called from the test's goroutine (Consume's channel may be read from
// anywhere).
type Topology struct {
	// URL is the broker's AMQP URI.
	URL string
	// Exchange is the test's exchange.
	Exchange string

	conn *amqp.Connection
}

// NewTopology declares an exchange of kind ("topic", "direct", "fanout")
// with a name of the test's own, on the test broker.
func NewTopology(t testing.TB, kind string) *Topology {
	t.Helper()
	u := URL(t)
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		t.Fatalf("rabbittest: connect: %v", err)
	}
	tp := &Topology{URL: u, Exchange: Name(t, "x"), conn: conn}
	t.Cleanup(func() { _ = conn.CloseDeadline(time.Now().Add(10 * time.Second)) })
	tp.do(t, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(tp.Exchange, kind, true, false, false, false, nil)
	})
	t.Cleanup(func() {
		tp.do(t, func(ch *amqp.Channel) error { return ch.ExchangeDelete(tp.Exchange, false, false) })
	})
	return tp
}

// do runs fn on a fresh channel (a broker error closes the channel it
// happens on).
func (tp *Topology) do(t testing.TB, fn func(ch *amqp.Channel) error) {
	t.Helper()
	ch, err := tp.conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: open a channel: %v", err)
	}
	defer func() { _ = ch.Close() }()
	if err := fn(ch); err != nil {
		t.Fatalf("rabbittest: %v", err)
	}
}

// DeleteExchange deletes the test's exchange now (publishing to it then
// fails with 404 NOT_FOUND, and its bindings are gone).
func (tp *Topology) DeleteExchange(t testing.TB) {
	t.Helper()
	tp.do(t, func(ch *amqp.Channel) error { return ch.ExchangeDelete(tp.Exchange, false, false) })
}

// Queue declares a durable queue of the test's own with args (nil for a
// plain one), bound to the exchange with each of keys, and deleted when
// the test ends. It returns the queue's name.
func (tp *Topology) Queue(t testing.TB, args amqp.Table, keys ...string) string {
	t.Helper()
	name := Name(t, "q")
	tp.do(t, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		return err
	})
	t.Cleanup(func() {
		tp.do(t, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(name, false, false, false); return err })
	})
	for _, k := range keys {
		tp.Bind(t, name, k)
	}
	return name
}

// FullQueue declares a queue that refuses every message (x-max-length 0,
// x-overflow reject-publish): a publish routed to it is nacked.
func (tp *Topology) FullQueue(t testing.TB, keys ...string) string {
	t.Helper()
	return tp.Queue(t, amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"}, keys...)
}

// Bind binds queue to the exchange with key.
func (tp *Topology) Bind(t testing.TB, queue, key string) {
	t.Helper()
	tp.do(t, func(ch *amqp.Channel) error { return ch.QueueBind(queue, key, tp.Exchange, false, nil) })
}

// Unbind removes the binding of queue to the exchange with key.
func (tp *Topology) Unbind(t testing.TB, queue, key string) {
	t.Helper()
	tp.do(t, func(ch *amqp.Channel) error { return ch.QueueUnbind(queue, key, tp.Exchange, nil) })
}

// Get takes every message in queue now, acknowledged, in queue order.
// Messages the broker confirmed are in the queue, so after a confirmed
// publish, Get sees it.
func (tp *Topology) Get(t testing.TB, queue string) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	tp.do(t, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(queue, true)
			if err != nil || !ok {
				return err
			}
			out = append(out, d)
		}
	})
	return out
}

// Consume starts a consumer on queue, auto-acknowledging, on a connection
// of its own that the test's end closes (which closes the channel
// returned).
func (tp *Topology) Consume(t testing.TB, queue string) <-chan amqp.Delivery {
	t.Helper()
	conn, err := amqp.DialConfig(tp.URL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		t.Fatalf("rabbittest: connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.CloseDeadline(time.Now().Add(10 * time.Second)) })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: open a channel: %v", err)
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		t.Fatalf("rabbittest: qos: %v", err)
	}
	d, err := ch.ConsumeWithContext(context.Background(), queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("rabbittest: consume %s: %v", queue, err)
	}
	return d
}
