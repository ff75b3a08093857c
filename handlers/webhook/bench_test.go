package webhook_test

// BenchmarkWebhookThroughput runs only with -bench, e.g.
//
//	go test -run '^$' -bench WebhookThroughput -benchtime 1x -count 3 ./handlers/webhook/
//
// It takes its database from outboxtest, as the tests do
// (TXOUTBOX_TEST_DATABASE_URL, else a container, else local binaries).
// TXOUTBOX_BENCH_WEBHOOK_N sets the entries per iteration (2000).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// BenchmarkWebhookThroughput measures signed deliveries per second from a
// backlog to a local receiver that answers 204, with the relay at 1, 8 and
// 64 workers (otherwise its default configuration). Per iteration, N
// entries are inserted while no relay runs (untimed); then a relay starts
// and the timer runs until N entries are done. Each delivery is a real
// HTTP request over loopback, signed with one secret, plus the relay's
// claim and completion statements.
func BenchmarkWebhookThroughput(b *testing.B) {
	n := 2000
	if s := os.Getenv("TXOUTBOX_BENCH_WEBHOOK_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("TXOUTBOX_BENCH_WEBHOOK_N=%q: want a positive integer", s)
		}
		n = v
	}
	for _, workers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchThroughput(b, n, workers)
		})
	}
}

// doneCounter closes reached when target entries are done, and counts
// anything else that should not happen.
type doneCounter struct {
	target  int64
	done    atomic.Int64
	other   atomic.Int64
	reached chan struct{}
}

func (c *doneCounter) Observe(e relay.Event) {
	switch e.Kind {
	case relay.EventDone:
		if c.done.Add(1) == c.target {
			close(c.reached)
		}
	case relay.EventRetry, relay.EventDead, relay.EventError, relay.EventFenced, relay.EventSkipped:
		c.other.Add(1)
	}
}

func benchThroughput(b *testing.B, n, workers int) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	db := outboxtest.New(b)
	h := relay.NewHandlers()
	if err := webhook.Register(h, oneEndpoint(srv.URL, newSecret(b))); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var elapsed time.Duration
	b.StopTimer()
	b.ResetTimer()
	for range b.N {
		if _, err := db.Pool.Exec(ctx, `TRUNCATE outbox_entries, outbox_processed_keys`); err != nil {
			b.Fatal(err)
		}
		rows := make([][]any, n)
		for i := range rows {
			ev, _ := json.Marshal(webhook.Event{Endpoint: "recv", Type: "bench.tick", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
			rows[i] = []any{webhook.Topic, json.RawMessage(ev)}
		}
		if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"outbox_entries"}, []string{"topic", "payload"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE outbox_entries`); err != nil {
			b.Fatal(err)
		}
		obs := &doneCounter{target: int64(n), reached: make(chan struct{})}
		requests.Store(0)
		r, err := relay.New(db.Pool, relay.Config{
			Handlers: h,
			Queues:   map[string]relay.QueueConfig{outbox.DefaultQueue: {MaxWorkers: workers}},
			Logger:   slog.New(slog.DiscardHandler),
			Observer: obs,
		})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		t0 := time.Now()
		b.StartTimer()
		go func() { stopped <- r.Run(runCtx) }()
		select {
		case <-obs.reached:
		case <-time.After(5 * time.Minute): // a hang guard, not a timing assertion
			b.Fatalf("only %d of %d entries done", obs.done.Load(), n)
		}
		b.StopTimer()
		elapsed += time.Since(t0)
		stop()
		if err := <-stopped; err != nil {
			b.Fatalf("relay.Run: %v", err)
		}
		if got := obs.other.Load(); got != 0 {
			b.Fatalf("%d retries, deaths or errors", got)
		}
		if got := requests.Load(); got != int64(n) {
			b.Fatalf("%d requests for %d entries", got, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(0, "ns/op") // entries/s is the figure; ns/op counts untimed setup poorly
}

// BenchmarkHandle measures the handler alone, without the relay: signed
// POSTs to a local receiver answering 204, from GOMAXPROCS goroutines. Set
// against BenchmarkWebhookThroughput, it shows how much of a delivery is
// the HTTP request and how much the relay's bookkeeping.
func BenchmarkHandle(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	h := newHandler(b, oneEndpoint(srv.URL, newSecret(b)))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		e := entry("bench-key", webhook.Event{Endpoint: "recv", Type: "bench.tick", Data: json.RawMessage(`{"n":1}`)})
		for pb.Next() {
			if err := h.Handle(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}
