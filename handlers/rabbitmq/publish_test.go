package rabbitmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/internal/rabbittest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// An entry is done only once the broker confirmed its message: a nack (a
// queue that refuses it) is retried with ErrNacked, and the moment the
// entry is done the message is in the queue, with no wait.
func TestDoneOnlyAfterTheConfirm(t *testing.T) {
	t.Parallel()
	tp := rabbittest.NewTopology(t, "topic")
	full := tp.FullQueue(t, "orders.placed")
	// Unroutable messages are retried, so that the switch below (unbind
	// the refusing queue, then bind one that takes the message) never
	// dead-letters the entry, nor leaves a nacked copy in q.
	p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange, RetryUnroutable: true})
	db, rec := runRelay(t, p, []string{"orders.placed"})
	id := enqueue(t, db.Pool, "orders.placed", `{"order":17}`, outbox.WithKey("order-17"))
	retry := rec.Wait(t, id, relay.EventRetry)
	if !errors.Is(retry.Err, rabbitmq.ErrNacked) {
		t.Fatalf("retry error %v; want ErrNacked", retry.Err)
	}
	if n := rec.Count(id, relay.EventDone); n != 0 {
		t.Fatal("done although the broker nacked")
	}
	tp.Unbind(t, full, "orders.placed")
	q := tp.Queue(t, nil, "orders.placed")
	rec.Wait(t, id, relay.EventDone)
	got := tp.Get(t, q)
	if len(got) != 1 || got[0].MessageId != "order-17" {
		t.Fatalf("queue holds %d messages right after done; want the confirmed one", len(got))
	}
	var res rabbitmq.Result
	if err := json.Unmarshal(getEntry(t, db.Pool, id).Result, &res); err != nil || res.Exchange != tp.Exchange || res.RoutingKey != "orders.placed" {
		t.Fatalf("result %+v (%v)", res, err)
	}
}

// A mandatory message that no binding routes is returned by the broker:
// the entry is dead after one attempt, its last error naming the exchange
// and routing key. With RetryUnroutable it is retried instead, and done
// once a queue is bound.
func TestUnroutable(t *testing.T) {
	t.Parallel()
	t.Run("DeadLettered", func(t *testing.T) {
		t.Parallel()
		tp := rabbittest.NewTopology(t, "topic")
		p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange})
		db, rec := runRelay(t, p, []string{"orders.placed"})
		id := enqueue(t, db.Pool, "orders.placed", `{}`)
		dead := rec.Wait(t, id, relay.EventDead)
		var uerr *rabbitmq.UnroutableError
		if dead.Attempt != 1 || !errors.As(dead.Err, &uerr) || !errors.Is(dead.Err, rabbitmq.ErrUnroutable) || uerr.ReplyCode != amqp.NoRoute {
			t.Fatalf("dead at attempt %d with %v; want at once, unroutable (312)", dead.Attempt, dead.Err)
		}
		e := getEntry(t, db.Pool, id)
		if e.LastError == nil || !strings.Contains(*e.LastError, tp.Exchange) || !strings.Contains(*e.LastError, `"orders.placed"`) || !strings.Contains(*e.LastError, "no queue is bound") {
			t.Fatalf("last error %v", e.LastError)
		}
	})
	t.Run("Retried", func(t *testing.T) {
		t.Parallel()
		tp := rabbittest.NewTopology(t, "topic")
		p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange, RetryUnroutable: true})
		db, rec := runRelay(t, p, []string{"orders.placed"})
		id := enqueue(t, db.Pool, "orders.placed", `{}`)
		if retry := rec.Wait(t, id, relay.EventRetry); !errors.Is(retry.Err, rabbitmq.ErrUnroutable) {
			t.Fatalf("retry with %v", retry.Err)
		}
		q := tp.Queue(t, nil, "orders.#")
		rec.Wait(t, id, relay.EventDone)
		if got := tp.Get(t, q); len(got) != 1 {
			t.Fatalf("%d messages", len(got))
		}
	})
	t.Run("Allowed", func(t *testing.T) {
		t.Parallel()
		tp := rabbittest.NewTopology(t, "topic")
		p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange, AllowUnroutable: true})
		db, rec := runRelay(t, p, []string{"orders.placed"})
		rec.Wait(t, enqueue(t, db.Pool, "orders.placed", `{}`), relay.EventDone)
	})
}

// Publishing to an exchange that does not exist (404) or without write
// access is dead-lettered at once with the broker's reason; the publisher
// keeps working for the next entry.
func TestMissingExchangeIsDeadLettered(t *testing.T) {
	t.Parallel()
	tp := rabbittest.NewTopology(t, "topic")
	missing := rabbittest.Name(t, "missing")
	p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: missing})
	db, rec := runRelay(t, p, []string{"orders.placed"})
	for i := range 3 { // the broker closes the channel each time
		dead := rec.Wait(t, enqueue(t, db.Pool, "orders.placed", fmt.Sprintf(`{"n":%d}`, i)), relay.EventDead)
		var berr *rabbitmq.BrokerError
		if dead.Attempt != 1 || !errors.As(dead.Err, &berr) || berr.Err.Code != amqp.NotFound || !strings.Contains(dead.Err.Error(), missing) {
			t.Fatalf("dead at attempt %d with %v; want at once with 404 NOT_FOUND", dead.Attempt, dead.Err)
		}
	}
}

// Every message carries the entry's key as message-id, the topic as type,
// persistent delivery, application/json, the correlation id (property and
// header) and trace context headers, and the payload bytes as stored. A
// re-send (the first attempt was nacked after the queue took a copy)
// carries the same message-id and body, so a consumer can drop it.
func TestMessageAndResend(t *testing.T) {
	t.Parallel()
	tp := rabbittest.NewTopology(t, "topic")
	q := tp.Queue(t, nil, "orders.placed")
	full := tp.FullQueue(t, "orders.placed") // the first attempt: a copy in q, and a nack
	p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange, AppID: "shop"})
	db, rec := runRelay(t, p, []string{"orders.placed"})
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	id := enqueue(t, db.Pool, "orders.placed", `{"order": 17, "lines": [{"sku": "a", "qty": 2}], "note": "<&>"}`,
		outbox.WithKey("order.placed:17"), outbox.WithCorrelationID("req-9"),
		outbox.WithHeaders(map[string]string{"traceparent": tp1, "tracestate": "vendor=1"}))
	rec.Wait(t, id, relay.EventRetry)
	tp.Unbind(t, full, "orders.placed")
	rec.Wait(t, id, relay.EventDone)

	var stored string
	if err := db.Pool.QueryRow(context.Background(), `SELECT payload::text FROM outbox_entries WHERE id = $1`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// Each nacked attempt left a copy in q (the relay may retry more than
	// once before the full queue is unbound), and the last one was acked.
	got := tp.Get(t, q)
	if attempts := getEntry(t, db.Pool, id).Attempt; len(got) < 2 || len(got) != attempts {
		t.Fatalf("%d messages after %d attempts; want one per attempt, at least the nacked copy and the re-send", len(got), attempts)
	}
	for i, d := range got {
		switch {
		case d.MessageId != "order.placed:17":
			t.Errorf("message %d: message-id %q; want the entry's key", i, d.MessageId)
		case d.Type != "orders.placed" || d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent || d.AppId != "shop":
			t.Errorf("message %d: type %q content-type %q delivery mode %d app-id %q", i, d.Type, d.ContentType, d.DeliveryMode, d.AppId)
		case d.CorrelationId != "req-9" || d.Headers["correlation_id"] != "req-9":
			t.Errorf("message %d: correlation id %q / %v", i, d.CorrelationId, d.Headers["correlation_id"])
		case d.Headers["traceparent"] != tp1 || d.Headers["tracestate"] != "vendor=1":
			t.Errorf("message %d: headers %v", i, d.Headers)
		case string(d.Body) != stored:
			t.Errorf("message %d: body %s; want the stored payload %s", i, d.Body, stored)
		}
	}
	for _, d := range got[1:] {
		if !d.Timestamp.Equal(got[0].Timestamp) {
			t.Errorf("timestamps differ between attempts: %s, %s", got[0].Timestamp, d.Timestamp)
		}
	}
}

// The routing key template reads the topic and payload fields; an entry
// whose payload lacks a field the template names is dead-lettered with
// ErrRoutingKey, without publishing.
func TestRoutingKeyTemplate(t *testing.T) {
	t.Parallel()
	tp := rabbittest.NewTopology(t, "topic")
	eu := tp.Queue(t, nil, "eu.orders.placed")
	us := tp.Queue(t, nil, "us.#")
	p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange, RoutingKey: "{{.Payload.customer.region}}.{{.Topic}}"})
	db, rec := runRelay(t, p, []string{"orders.placed"})
	rec.Wait(t, enqueue(t, db.Pool, "orders.placed", `{"customer": {"region": "eu"}, "n": 1}`), relay.EventDone)
	rec.Wait(t, enqueue(t, db.Pool, "orders.placed", `{"customer": {"region": "us"}, "n": 2}`), relay.EventDone)
	bad := rec.Wait(t, enqueue(t, db.Pool, "orders.placed", `{"customer": {}}`), relay.EventDead)
	if !errors.Is(bad.Err, rabbitmq.ErrRoutingKey) || bad.Attempt != 1 {
		t.Fatalf("dead at attempt %d with %v; want ErrRoutingKey", bad.Attempt, bad.Err)
	}
	if a, b := tp.Get(t, eu), tp.Get(t, us); len(a) != 1 || len(b) != 1 || a[0].RoutingKey != "eu.orders.placed" {
		t.Fatalf("eu %d, us %d messages", len(a), len(b))
	}
}

// One ordering key: a consumer sees its entries in commit order, with the
// head entry's first attempts nacked (a forced retry) and the relay
// stopped and started again midway.
func TestPerKeyOrderAcrossRetryAndRestart(t *testing.T) {
	t.Parallel()
	const n = 300
	tp := rabbittest.NewTopology(t, "topic")
	full := tp.FullQueue(t, "orders.placed")
	p := newPublisher(t, rabbitmq.Config{URL: tp.URL, Exchange: tp.Exchange, RetryUnroutable: true}) // see TestDoneOnlyAfterTheConfirm
	db := newDB(t)
	rec := handlertest.NewRecorder()
	ids := make([]int64, n)
	items := make([]outbox.Item, n)
	for i := range n {
		items[i] = outbox.NewItem(outbox.Raw{TopicName: "orders.placed", Payload: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, i))},
			outbox.WithKey(fmt.Sprintf("order-17:%d", i)), outbox.WithOrderingKey("order-17"))
	}
	res, err := outbox.EnqueueBatch(context.Background(), db.Pool, items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		ids[i] = r.ID
	}
	first := startRelay(t, db.Pool, p, []string{"orders.placed"}, rec)
	rec.Wait(t, ids[0], relay.EventRetry) // the head entry is nacked: nothing behind it may pass
	tp.Unbind(t, full, "orders.placed")
	q := tp.Queue(t, nil, "orders.placed")
	rec.Wait(t, ids[n/2], relay.EventDone)
	first.stop()
	startRelay(t, db.Pool, p, []string{"orders.placed"}, rec)
	rec.Wait(t, ids[n-1], relay.EventDone)

	var seqs []int
	for _, d := range tp.Get(t, q) {
		var body struct{ Seq int }
		if err := json.Unmarshal(d.Body, &body); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("order-17:%d", body.Seq); d.MessageId != want {
			t.Fatalf("message-id %q for seq %d", d.MessageId, body.Seq)
		}
		seqs = append(seqs, body.Seq)
	}
	if len(seqs) != n {
		t.Fatalf("%d messages; want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != i {
			t.Fatalf("message %d is seq %d: out of commit order (%v...)", i, s, seqs[max(0, i-3):min(len(seqs), i+3)])
		}
	}
}

// The connection is cut (from the network's side, by the proxy) again and
// again while entries are published: attempts fail and are retried, the
// publisher reconnects, and every entry reaches the queue. Cuts between a
// publish and its confirm can duplicate a message; each duplicate has the
// message-id of its entry.
func TestConnectionCutMidRun(t *testing.T) {
	t.Parallel()
	const n, cuts = 2000, 5
	tp := rabbittest.NewTopology(t, "topic")
	q := tp.Queue(t, nil, "#")
	proxy := rabbittest.NewProxy(t)
	p := newPublisher(t, rabbitmq.Config{URL: proxy.URL, Exchange: tp.Exchange})
	db, rec := runRelay(t, p, []string{"orders.placed"})
	items := make([]outbox.Item, n)
	for i := range n {
		items[i] = outbox.NewItem(outbox.Raw{TopicName: "orders.placed", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))},
			outbox.WithKey(fmt.Sprintf("k-%d", i)))
	}
	if _, err := outbox.EnqueueBatch(context.Background(), db.Pool, items); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var mu sync.Mutex
	deliveries := tp.Consume(t, q)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for d := range deliveries {
			mu.Lock()
			seen[d.MessageId]++
			total := len(seen)
			mu.Unlock()
			if total == n {
				return
			}
		}
	}()
	doneCount := func() int64 {
		var c int64
		_ = db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_entries WHERE state = 'done'`).Scan(&c)
		return c
	}
	for k := 1; k <= cuts; k++ {
		waitFor(t, fmt.Sprintf("%d entries done before cut %d", k*n/(cuts+2), k), func() bool { return doneCount() >= int64(k*n/(cuts+2)) })
		t.Logf("cut %d: %d connections", k, proxy.Cut())
	}
	waitFor(t, "every entry done", func() bool { return doneCount() == n })
	waitFor(t, "every message consumed", func() bool {
		select {
		case <-consumed:
			return true
		default:
			return false
		}
	})
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for i := range n {
		c := seen[fmt.Sprintf("k-%d", i)]
		if c == 0 {
			t.Fatalf("entry k-%d done, its message never consumed", i)
		}
		dups += c - 1
	}
	retries := 0
	for _, e := range rec.Events() {
		if e.Kind == relay.EventRetry {
			retries++
		}
	}
	if retries == 0 {
		t.Fatal("no attempt failed: the cuts missed every publish")
	}
	if len(seen) != n {
		t.Fatalf("%d distinct message-ids; want %d", len(seen), n)
	}
	t.Logf("%d entries, %d cuts: %d failed attempts retried, %d duplicates so far (each with its entry's message-id)", n, cuts, retries, dups)
}
