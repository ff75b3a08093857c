package faultsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/rabbittest"
	"github.com/txoutbox/txoutbox/outbox"
)

// rabbitTopic is the topic the RabbitMQ publisher serves in the relay
// processes.
const rabbitTopic = "fault.rabbit"

// rabbitWork is one event published to RabbitMQ.
type rabbitWork struct {
	N   int    `json:"n"`
	Key string `json:"key,omitempty"` // ordering key, if any
	Seq int    `json:"seq,omitempty"` // position within Key, from 1
}

// A relay process publishing to RabbitMQ is killed with SIGKILL at random
// moments, and each time a new process takes over; a consumer in the test
// reads the queue throughout. Afterwards every entry is done and its
// message was consumed; every delivery, duplicates included, carries its
// entry's key as message-id (so a consumer can drop repeats: RabbitMQ
// itself does not deduplicate); a message was delivered twice only for an
// entry that ran more than once (a kill took its outcome, or its confirm);
// and each ordering key's first deliveries came in commit order.
func TestRabbitRelayKilled(t *testing.T) {
	n, kills := rabbitEntries.get(t), rabbitKills.get(t)
	rng := seededRand(t)
	logTimeScale(t)
	db := newDB(t)
	tp := rabbittest.NewTopology(t, "topic")
	queue := tp.Queue(t, nil, "#")
	ctx := context.Background()

	// Half the entries under 32 ordering keys, half without one.
	const orderingKeys = 32
	seqs := make([]int, orderingKeys)
	items := make([]outbox.Item, 0, 1000)
	flush := func() {
		if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
			t.Fatal(err)
		}
		items = items[:0]
	}
	keyed := 0
	for i := range n {
		w := rabbitWork{N: i}
		opts := []outbox.Option{outbox.WithKey(fmt.Sprintf("rabbit-%d", i))}
		if i%2 == 0 {
			k := (i / 2) % orderingKeys
			seqs[k]++
			w.Key, w.Seq = fmt.Sprintf("order-%d", k), seqs[k]
			opts = append(opts, outbox.WithOrderingKey(w.Key))
			keyed++
		}
		raw, _ := json.Marshal(w)
		items = append(items, outbox.NewItem(outbox.Raw{TopicName: rabbitTopic, Payload: raw}, opts...))
		if len(items) == cap(items) {
			flush()
		}
	}
	if len(items) > 0 {
		flush()
	}

	// The consumer: every delivery, in the order the queue gives them.
	var (
		mu         sync.Mutex
		deliveries = map[int]int{} // n -> deliveries
		badIDs     []string
		lastFirst  = map[string]int{} // ordering key -> seq of its latest first delivery
		orderErrs  []string
		total      int
	)
	consumed := make(chan struct{})
	msgs := tp.Consume(t, queue)
	go func() {
		closed := false
		for d := range msgs {
			var w rabbitWork
			err := json.Unmarshal(d.Body, &w)
			mu.Lock()
			total++
			if err != nil || d.MessageId != fmt.Sprintf("rabbit-%d", w.N) {
				badIDs = append(badIDs, fmt.Sprintf("message-id %q for body %s", d.MessageId, d.Body))
			}
			deliveries[w.N]++
			if deliveries[w.N] == 1 && w.Key != "" {
				if w.Seq != lastFirst[w.Key]+1 {
					orderErrs = append(orderErrs, fmt.Sprintf("%s: seq %d first delivered after seq %d", w.Key, w.Seq, lastFirst[w.Key]))
				}
				lastFirst[w.Key] = w.Seq
			}
			if len(deliveries) == n && !closed {
				close(consumed)
				closed = true
			}
			mu.Unlock()
		}
	}()

	cfg := childConfig{
		URL: db.URL, MaxConns: 24, Queues: map[string]int{"default": 16},
		LeaseMS: int(scaled(time.Second).Milliseconds()), PollMS: 100,
		RabbitURL: tp.URL, RabbitExchange: tp.Exchange,
	}
	began := time.Now()
	proc, held := killWhilePublishing(t, db, rng, cfg, "rabbit-relay", n, kills)
	waitSettled(t, db.Pool)
	elapsed := time.Since(began)
	proc.stop(t)
	select {
	case <-consumed:
	case <-time.After(hangGuard()):
		mu.Lock()
		got := len(deliveries)
		mu.Unlock()
		t.Fatalf("the consumer saw %d of %d messages", got, n)
	}

	states, summary := stateCounts(t, db.Pool)
	if states["done"] != int64(n) {
		t.Fatalf("states: %s; want all %d done", summary, n)
	}
	attempts := map[int]int32{}
	rows, err := db.Pool.Query(ctx, `SELECT (payload->>'n')::int, attempt FROM outbox_entries`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var i int
		var a int32
		if err := rows.Scan(&i, &a); err != nil {
			t.Fatal(err)
		}
		attempts[i] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rerun := 0
	for _, a := range attempts {
		if a > 1 {
			rerun++
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(badIDs) > 0 {
		t.Fatalf("%d deliveries without their entry's key as message-id, e.g. %s", len(badIDs), badIDs[0])
	}
	duplicates, duplicated := 0, 0
	var unexplained []string
	for i := range n {
		c := deliveries[i]
		if c == 0 {
			t.Fatalf("rabbit-%d done but never consumed", i)
		}
		if c > 1 {
			duplicates += c - 1
			duplicated++
			if attempts[i] < int32(c) {
				unexplained = append(unexplained, fmt.Sprintf("rabbit-%d: %d deliveries, %d attempts", i, c, attempts[i]))
			}
		}
	}
	sort.Strings(unexplained)
	if len(unexplained) > 0 {
		t.Errorf("%d messages delivered more often than their entry ran: %s", len(unexplained), strings.Join(unexplained[:min(20, len(unexplained))], ", "))
	}
	if len(orderErrs) > 0 {
		t.Errorf("%d per-key order violations among first deliveries: %s", len(orderErrs), strings.Join(orderErrs[:min(20, len(orderErrs))], "; "))
	}
	t.Logf("%d entries (%d under %d ordering keys) published through %d SIGKILLs in %s (%.0f entries/s); killed processes held %d entries; %d entries ran more than once",
		n, keyed, orderingKeys, kills, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), held, rerun)
	t.Logf("consumer: %d deliveries, none missing; %d duplicates of %d entries, every one with its entry's key as message-id and explained by a re-run; per-key order held for first deliveries",
		total, duplicates, duplicated)
}
