package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// The conformance suite, against a real receiver: 200 when OK, 503 when
// Retryable, 400 when Permanent, and no answer at all when Hang.
func TestConformance(t *testing.T) {
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		var (
			mu      sync.Mutex
			mode    handlertest.Mode
			effects = map[string]int{}
			rc      *receiver
		)
		rc = newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			mu.Lock()
			m := mode
			mu.Unlock()
			switch m {
			case handlertest.Retryable:
				w.WriteHeader(http.StatusServiceUnavailable)
			case handlertest.Permanent:
				w.WriteHeader(http.StatusBadRequest)
			case handlertest.Hang:
				rc.hang(r)
			default:
				mu.Lock()
				effects[r.Header.Get("webhook-id")]++
				mu.Unlock()
				w.WriteHeader(http.StatusOK)
			}
		})
		cfg := oneEndpoint(rc.srv.URL, newSecret(t))
		return handlertest.Harness{
			Register: func(h *relay.Handlers) {
				if err := webhook.Register(h, cfg); err != nil {
					t.Fatal(err)
				}
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, webhook.Event{Endpoint: "recv", Type: "conformance.test", Data: json.RawMessage(`{"n":1}`)}, outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int {
				mu.Lock()
				defer mu.Unlock()
				return effects[key]
			},
			SetMode: func(m handlertest.Mode) {
				mu.Lock()
				mode = m
				mu.Unlock()
			},
		}
	})
}

// A 429 with Retry-After: 120 makes the relay (with its default retry
// policy, whose first delay would be about 1s) retry in exactly 2m.
func TestRetryAfterThroughTheRelay(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	db, rec := runRelay(t, oneEndpoint(rc.srv.URL, newSecret(t)), func(c *relay.Config) { c.RetryPolicy = nil })
	res, err := outbox.Enqueue(context.Background(), db.Pool, webhook.Event{Endpoint: "recv", Type: "t"}, outbox.WithKey("rate-limited"))
	if err != nil {
		t.Fatal(err)
	}
	ev := rec.Wait(t, res.ID, relay.EventRetry)
	if ev.RetryIn != 2*time.Minute {
		t.Fatalf("retry in %s; want 2m from Retry-After", ev.RetryIn)
	}
	e, err := outbox.Get(context.Background(), db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != outbox.StatePending || e.Attempt != 1 {
		t.Fatalf("entry %s after attempt %d; want pending after 1", e.State, e.Attempt)
	}
}

// Every attempt of an entry carries the same webhook-id (the entry's key)
// and body, with a fresh timestamp and a valid signature; the 2xx status is
// recorded as the entry's result.
func TestRetryKeepsTheIDAndRecordsTheResult(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 0 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	db, rec := runRelay(t, oneEndpoint(rc.srv.URL, secret))
	ctx := context.Background()
	res, err := outbox.Enqueue(ctx, db.Pool, webhook.Event{Endpoint: "recv", Type: "order.paid", Data: json.RawMessage(`{"order":17}`)}, outbox.WithKey("order.paid:17"))
	if err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, res.ID, relay.EventRetry)
	rec.Wait(t, res.ID, relay.EventDone)

	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests; want 2", len(reqs))
	}
	for i, r := range reqs {
		if id := r.Header.Get("webhook-id"); id != "order.paid:17" {
			t.Errorf("attempt %d: webhook-id %q; want the entry key", i+1, id)
		}
		if _, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64); err != nil {
			t.Errorf("attempt %d: webhook-timestamp %q", i+1, r.Header.Get("webhook-timestamp"))
		}
		if err := verify(secret, r.Header, r.Body, time.Now(), time.Minute); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	if string(reqs[0].Body) != string(reqs[1].Body) {
		t.Errorf("the body changed between attempts:\n%s\n%s", reqs[0].Body, reqs[1].Body)
	}
	e, err := outbox.Get(ctx, db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got webhook.Result
	if err := json.Unmarshal(e.Result, &got); err != nil || got.Status != http.StatusAccepted {
		t.Fatalf("result %s (%v); want status 202", e.Result, err)
	}
}

// A 410 (the receiver is gone) dead-letters the entry after one attempt,
// with the status in its last error.
func TestGoneIsDeadLettered(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusGone) })
	db, rec := runRelay(t, oneEndpoint(rc.srv.URL, newSecret(t)))
	ctx := context.Background()
	gone, err := outbox.Enqueue(ctx, db.Pool, webhook.Event{Endpoint: "recv", Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := rec.Wait(t, gone.ID, relay.EventDead); ev.Attempt != 1 {
		t.Fatalf("410 dead after attempt %d; want 1", ev.Attempt)
	}
	e, err := outbox.Get(ctx, db.Pool, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != outbox.StateDead || e.LastError == nil || !strings.Contains(*e.LastError, `endpoint "recv"`) || !strings.Contains(*e.LastError, "410 Gone") {
		t.Fatalf("entry %s, last error %v; want dead with the endpoint and status", e.State, e.LastError)
	}
}
