package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/internal/natstest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// streamWait bounds waits on a stream's contents: a guard, not a timing
// assertion.
const streamWait = time.Minute

// The message carries the payload as stored, the entry's identity, and the
// producer's trace context and correlation id; the subject comes from the
// template over the topic and a payload field.
func TestMessageCarriesPayloadAndHeaders(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	st := natstest.NewStream(t, natstest.Connect(t, url), 0)
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	register(t, h, nats.Config{URL: url, Topics: []string{"order.created"}, Subject: st.Prefix + ".{{.Payload.region}}.{{.Topic}}"})
	rec := handlertest.StartRelay(t, db.Pool, h)

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	id := enqueue(t, db.Pool, "order.created", `{"region": "eu", "id": "o-17",  "total": 12.50}`,
		outbox.WithKey("o-17"), outbox.WithOrderingKey("order:o-17"), outbox.WithCorrelationID("req-9"),
		outbox.WithHeaders(map[string]string{"traceparent": tp, "tracestate": "vendor=1", "Nats-Rollup": "all"}))
	rec.Wait(t, id, relay.EventDone)

	msgs := st.All(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if want := st.Prefix + ".eu.order.created"; m.Subject() != want {
		t.Errorf("subject %q, want %q", m.Subject(), want)
	}
	var stored string
	if err := db.Pool.QueryRow(context.Background(), `SELECT payload::text FROM outbox_entries WHERE id = $1`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(m.Data()) != stored {
		t.Errorf("data %s, want the stored payload %s", m.Data(), stored)
	}
	hd := m.Headers()
	for name, want := range map[string]string{
		nats.HeaderMsgID: "order.created:o-17", nats.HeaderTopic: "order.created", nats.HeaderKey: "o-17",
		nats.HeaderOrderingKey: "order:o-17", nats.HeaderEntryID: fmt.Sprint(id),
		"traceparent": tp, "tracestate": "vendor=1", outbox.HeaderCorrelationID: "req-9",
	} {
		if got := hd.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if v := hd.Get("Nats-Rollup"); v != "" {
		t.Errorf("the entry's Nats-Rollup header was sent (%q): entry headers must not steer JetStream", v)
	}

	e, err := outbox.Get(context.Background(), db.Pool, id)
	if err != nil {
		t.Fatal(err)
	}
	var res nats.Result
	if err := json.Unmarshal(e.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Stream != st.Name || res.Sequence != 1 || res.Subject != m.Subject() || res.Duplicate {
		t.Errorf("result %+v", res)
	}
}

// A re-delivered entry (its processed key gone, as after a crash between
// the publish and the completion) is published again with the same
// Nats-Msg-Id, and JetStream drops it: the consumer sees one message, and
// the second entry is done with Result.Duplicate. After the duplicate
// window, the same id is stored again.
func TestRedeliveryIsDroppedWithinTheDuplicateWindow(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	const window = time.Second
	st := natstest.NewStream(t, natstest.Connect(t, url), window)
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	register(t, h, nats.Config{URL: url, Topics: []string{"dedupe.event"}, Subject: st.Prefix + ".{{.Topic}}"},
		relay.WithoutProcessedKeys()) // the relay's own key check would skip the re-delivery
	rec := handlertest.StartRelay(t, db.Pool, h)
	ctx := context.Background()

	redeliver := func() (int64, nats.Result) {
		first := enqueue(t, db.Pool, "dedupe.event", `{"n": 1}`, outbox.WithKey("k-1"))
		rec.Wait(t, first, relay.EventDone)
		e, err := outbox.Get(ctx, db.Pool, first)
		if err != nil {
			t.Fatal(err)
		}
		var res nats.Result
		if err := json.Unmarshal(e.Result, &res); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `DELETE FROM outbox_entries WHERE id = $1`, first); err != nil {
			t.Fatal(err)
		}
		return first, res
	}
	started := time.Now()
	_, r1 := redeliver()
	_, r2 := redeliver()
	if r1.Duplicate || !r2.Duplicate || r2.Sequence != r1.Sequence {
		t.Fatalf("first %+v, second %+v; want the second a duplicate of the first", r1, r2)
	}
	if n := st.Count(t); n != 1 {
		t.Fatalf("%d messages after a re-delivery within the window; want 1", n)
	}
	if time.Since(started) >= window {
		t.Logf("the two deliveries took longer than the window; the duplicate was still recognised")
	}

	// After the window: stored again. (Waiting for the window to pass is
	// the condition; JetStream forgets ids on its own schedule, so the
	// re-delivery repeats until it is stored, within a guard.)
	deadline := time.Now().Add(streamWait)
	for st.Count(t) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a re-delivery after the %s window was never stored", window)
		}
		time.Sleep(window / 2)
		redeliver()
	}
	if n := st.Count(t); n != 2 {
		t.Fatalf("%d messages; want 2 (the original and one re-send after the window)", n)
	}
}

// Entries of one ordering key reach the stream in commit order, exactly
// once each, although attempts fail (before and after publishing) and the
// relay is restarted midway; entries without a key flow beside them.
func TestPerKeyOrderAcrossRetriesAndRestarts(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	st := natstest.NewStream(t, natstest.Connect(t, url), 0)
	db := outboxtest.New(t)
	const perKey, keys, unkeyed = 60, 3, 60
	pub, err := nats.New(nats.Config{URL: url, Subject: st.Prefix + ".{{.Topic}}"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	// Every 7th entry fails its first attempt before publishing, every
	// 11th after publishing (its ack then counts for nothing, and the
	// retry is a duplicate that JetStream drops).
	var failedBefore, failedAfter atomic.Int64
	flaky := func(ctx context.Context, e *relay.Entry[json.RawMessage]) error {
		n := seqOf(t, e.Payload)
		if e.Attempt == 1 && n%7 == 0 {
			failedBefore.Add(1)
			return errors.New("fails before publishing, by design")
		}
		if err := pub.Handle(ctx, e); err != nil {
			return err
		}
		if e.Attempt == 1 && n%11 == 0 {
			failedAfter.Add(1)
			return errors.New("fails after publishing, by design")
		}
		return nil
	}
	start := func() (*relay.Relay, context.CancelFunc, chan error, *handlertest.Recorder) {
		h := relay.NewHandlers()
		relay.HandleRaw(h, "order.event", flaky)
		rec := handlertest.NewRecorder()
		r, err := relay.New(db.Pool, relay.Config{
			Handlers: h, PollInterval: 20 * time.Millisecond, RetentionInterval: -1,
			ShutdownTimeout: time.Second, Observer: rec, Logger: slog.New(slog.DiscardHandler),
			RetryPolicy: relay.RetryPolicyFunc(func(int, error) time.Duration { return 10 * time.Millisecond }),
			Queues:      map[string]relay.QueueConfig{"default": {MaxWorkers: 16}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return r, cancel, done, rec
	}
	var items []outbox.Item
	for i := 1; i <= perKey; i++ {
		for k := range keys {
			items = append(items, outbox.NewItem(outbox.Raw{TopicName: "order.event", Payload: json.RawMessage(fmt.Sprintf(`{"seq": %d}`, i))},
				outbox.WithKey(fmt.Sprintf("k%d-%d", k, i)), outbox.WithOrderingKey(fmt.Sprintf("order-%d", k))))
		}
		items = append(items, outbox.NewItem(outbox.Raw{TopicName: "order.event", Payload: json.RawMessage(fmt.Sprintf(`{"seq": %d}`, 1000+i))},
			outbox.WithKey(fmt.Sprintf("free-%d", i))))
	}
	if _, err := outbox.EnqueueBatch(context.Background(), db.Pool, items); err != nil {
		t.Fatal(err)
	}
	total := perKey*keys + unkeyed

	_, stop, done, _ := start()
	st.WaitCount(t, uint64(total/3), streamWait)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	restartedAt := st.Count(t)
	_, stop, done, _ = start()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	st.WaitCount(t, uint64(total), streamWait)
	waitDone(t, db.Pool, total)
	checkOnceInOrder(t, st.All(t), total)
	t.Logf("%d entries (%d keys × %d, %d without a key); relay restarted after %d messages; %d attempts failed before publishing, %d after",
		total, keys, perKey, unkeyed, restartedAt, failedBefore.Load(), failedAfter.Load())
}

// waitDone waits until n entries are done.
func waitDone(t testing.TB, pool *pgxpool.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(streamWait)
	for {
		var done int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_entries WHERE state = 'done'`).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries done after %s", done, n, streamWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// What a retry cannot fix is dead-lettered on the first attempt, with the
// sentinel that says why: no stream for the subject, a Config.Stream that
// does not exist or is not the one capturing the subject, a template that
// fails on the entry, an invalid subject.
func TestPermanentFailuresAreDeadLettered(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	nc := natstest.Connect(t, url)
	st := natstest.NewStream(t, nc, 0)
	other := natstest.NewStream(t, nc, 0)
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	register(t, h, nats.Config{URL: url, Topics: []string{"no.stream"}, Subject: st.Prefix + "-nowhere.{{.Topic}}"})
	register(t, h, nats.Config{URL: url, Topics: []string{"wrong.stream"}, Subject: other.Prefix + ".{{.Topic}}", Stream: st.Name})
	missing := register(t, h, nats.Config{URL: url, Topics: []string{"missing.stream"}, Subject: st.Prefix + ".{{.Topic}}", Stream: st.Name + "_MISSING"})
	register(t, h, nats.Config{URL: url, Topics: []string{"bad.template"}, Subject: st.Prefix + ".{{.Payload.region}}"})
	register(t, h, nats.Config{URL: url, Topics: []string{"bad.subject"}, Subject: st.Prefix + ".{{.Payload.region}}.x"})
	rec := handlertest.StartRelay(t, db.Pool, h)

	for _, c := range []struct {
		topic, payload string
		want           error
		mention        string
	}{
		{"no.stream", `{}`, nats.ErrNoStream, "no stream captures it"},
		{"wrong.stream", `{}`, nats.ErrNoStream, ""},
		{"missing.stream", `{}`, nats.ErrNoStream, ""},
		{"bad.template", `{"other": 1}`, nats.ErrInvalidSubject, "region"},
		{"bad.subject", `{"region": "eu west"}`, nats.ErrInvalidSubject, "whitespace"},
	} {
		id := enqueue(t, db.Pool, c.topic, c.payload, outbox.WithKey("k"))
		dead := rec.Wait(t, id, relay.EventDead)
		if dead.Attempt != 1 || !errors.Is(dead.Err, c.want) || !strings.Contains(dead.Err.Error(), c.mention) {
			t.Errorf("%s: dead after attempt %d with %v; want attempt 1, %v mentioning %q", c.topic, dead.Attempt, dead.Err, c.want, c.mention)
		}
		var pe *nats.PublishError
		if !errors.As(dead.Err, &pe) || pe.Topic != c.topic {
			t.Errorf("%s: %v is not a *PublishError for the topic", c.topic, dead.Err)
		}
		t.Logf("%s: %v", c.topic, dead.Err)
	}
	if n := st.Count(t) + other.Count(t); n != 0 {
		t.Errorf("%d messages stored", n)
	}
	if err := missing.CheckStream(context.Background()); !errors.Is(err, nats.ErrNoStream) {
		t.Errorf("CheckStream of a missing stream: %v, want ErrNoStream", err)
	}
}

// The broker goes away while the relay publishes (the in-process server
// stops) and comes back on the same port with its store: publishes fail
// and are retried, and afterwards every entry is in the stream exactly
// once, each key's entries in order.
func TestBrokerGoingAwayLosesNothing(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	t.Logf("natstest: server %s (in-process server, stopped and restarted by the test)", srv.URL())
	st := natstest.NewStream(t, natstest.Connect(t, srv.URL()), time.Hour)
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	register(t, h, nats.Config{URL: srv.URL(), Topics: []string{"away.event"}, Subject: st.Prefix + ".{{.Topic}}", AckTimeout: time.Second})
	rec := handlertest.StartRelay(t, db.Pool, h)

	const n, keys = 300, 4
	var items []outbox.Item
	for i := 1; i <= n; i++ {
		items = append(items, outbox.NewItem(outbox.Raw{TopicName: "away.event", Payload: json.RawMessage(fmt.Sprintf(`{"seq": %d}`, (i+keys-1)/keys))},
			outbox.WithKey(fmt.Sprintf("e-%d", i)), outbox.WithOrderingKey(fmt.Sprintf("k-%d", i%keys))))
	}
	if _, err := outbox.EnqueueBatch(context.Background(), db.Pool, items); err != nil {
		t.Fatal(err)
	}
	st.WaitCount(t, n/4, streamWait)
	srv.Stop()
	retries := func() int {
		c := 0
		for _, e := range rec.Events() {
			if e.Kind == relay.EventRetry {
				c++
			}
		}
		return c
	}
	deadline := time.Now().Add(streamWait)
	for retries() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no attempt failed while the broker was down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart()
	waitDone(t, db.Pool, n)
	// Keys: e-1..e-n, seq per ordering key 1..n/keys.
	msgs := st.All(t)
	checkOnceInOrder(t, msgs, n)
	t.Logf("%d entries through a broker restart; %d attempts failed and were retried", n, retries())
}
