package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Poison payloads: each topic's handler misbehaves in one way.
type (
	failWork  struct{}
	panicWork struct{}
	hangWork  struct{}
)

func (failWork) Topic() string  { return "fault.poison.fail" }
func (panicWork) Topic() string { return "fault.poison.panic" }
func (hangWork) Topic() string  { return "fault.poison.hang" }

const (
	poisonAttempts = 3
	hangTimeout    = 300 * time.Millisecond
	maxPayload     = 4096
)

// poisonRelay runs a relay with the healthy transactional handler and the
// poison ones.
func poisonRelay(t *testing.T, db testDB) (stop func()) {
	h := relay.NewHandlers()
	relay.HandleTx(h, writeEffect("poison-relay"))
	relay.Handle(h, func(context.Context, *relay.Entry[failWork]) error { return errors.New("poison: always fails") })
	relay.Handle(h, func(context.Context, *relay.Entry[panicWork]) error { panic("poison: panics") })
	relay.Handle(h, func(ctx context.Context, _ *relay.Entry[hangWork]) error {
		<-ctx.Done() // hangs until the relay gives up on it
		return fmt.Errorf("poison: hung until %w", context.Cause(ctx))
	}, relay.WithTimeout(hangTimeout))
	return runRelay(t, openPool(t, db.URL, "poison-relay", 24), relay.Config{
		Handlers: h, ID: "poison-relay", Logger: logger(),
		Queues:          map[string]relay.QueueConfig{"default": {MaxWorkers: 16}},
		MaxPayloadBytes: maxPayload,
		PollInterval:    50 * time.Millisecond, RetentionInterval: -1, ShutdownTimeout: 5 * time.Second,
		RetryPolicy: noRetryDelay,
	})
}

// Poison entries — a handler that always fails, one that panics, one that
// hangs past its timeout, a payload that does not decode and one over the
// relay's size limit — are dead-lettered with their reason, and the healthy
// entries around them all complete, exactly once. The healthy throughput
// with and without poison is logged as a ratio (not asserted: timing).
func TestPoisonEntriesDeadLetterWithoutStallingTheQueue(t *testing.T) {
	healthy, perKind := poisonHealthy.get(t), poisonPerKind.get(t)
	ctx := context.Background()

	enqueueHealthy := func(db testDB, poison func(i int) []outbox.Item) {
		items := make([]outbox.Item, 0, 600)
		every := max(1, healthy/perKind)
		for i := range healthy {
			items = append(items, outbox.NewItem(txWork{N: i}))
			if poison != nil && i%every == every/2 {
				items = append(items, poison(i)...)
			}
			if len(items) >= 500 {
				if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
					t.Fatal(err)
				}
				items = items[:0]
			}
		}
		if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
			t.Fatal(err)
		}
	}
	healthyDone := func(db testDB) int64 {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE topic = 'fault.tx' AND state = 'done'`)
	}
	drain := func(db testDB) time.Duration {
		began := time.Now()
		stop := poisonRelay(t, db)
		waitUntil(t, "every healthy entry done", 20*time.Millisecond, func() bool { return healthyDone(db) == int64(healthy) })
		took := time.Since(began)
		waitSettled(t, db.Pool)
		stop()
		return took
	}

	// Without poison.
	clean := newDB(t)
	enqueueHealthy(clean, nil)
	base := drain(clean)

	// With poison spread among the healthy entries. The undecodable and
	// the oversized payloads come from plain SQL, as a producer in another
	// language could write them.
	dirty := newDB(t)
	big := `{"n": 1, "pad": "` + strings.Repeat("x", maxPayload) + `"}`
	n := 0
	enqueueHealthy(dirty, func(int) []outbox.Item {
		if n >= perKind {
			return nil
		}
		n++
		limit := outbox.WithMaxAttempts(poisonAttempts)
		return []outbox.Item{
			outbox.NewItem(failWork{}, limit),
			outbox.NewItem(panicWork{}, limit),
			outbox.NewItem(hangWork{}, limit),
			outbox.NewItem(outbox.Raw{TopicName: "fault.tx", Payload: []byte(`{"n": "not a number", "poison": "undecodable"}`)}, limit),
			outbox.NewItem(outbox.Raw{TopicName: "fault.tx", Payload: []byte(big)}, limit),
		}
	})
	withPoison := drain(dirty)

	// Healthy: all done, once. Poison: dead, with the reason, after the
	// attempts their kind calls for.
	if effects := scalar[int64](t, dirty.Pool, `SELECT count(*) FROM effects`); effects != int64(healthy) ||
		scalar[int64](t, dirty.Pool, `SELECT count(DISTINCT entry_id) FROM effects`) != int64(healthy) {
		t.Fatalf("%d effects; want exactly one for each of %d healthy entries", effects, healthy)
	}
	cases := []struct {
		what, where string
		attempt     int
		reason      string
	}{
		{"always failing", `topic = 'fault.poison.fail'`, poisonAttempts, fmt.Sprintf("attempt %d of %d failed: poison: always fails", poisonAttempts, poisonAttempts)},
		{"panicking", `topic = 'fault.poison.panic'`, poisonAttempts, fmt.Sprintf("attempt %d of %d failed: handler panicked: poison: panics", poisonAttempts, poisonAttempts)},
		{"hanging", `topic = 'fault.poison.hang'`, poisonAttempts, fmt.Sprintf("attempt %d of %d failed: poison: hung until relay: handler timeout", poisonAttempts, poisonAttempts)},
		{"undecodable", `payload->>'poison' = 'undecodable'`, 1, `cannot decode payload of topic "fault.tx" into faultsuite.txWork`},
		{"oversized", `payload ? 'pad'`, 1, "permanent: relay: payload too large"},
	}
	for _, c := range cases {
		var total, dead int64
		var sample string
		err := dirty.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'dead' AND attempt = $1 AND starts_with(last_error, $2)),
			coalesce(min(state || ' on attempt ' || attempt || ': ' || coalesce(last_error, '')), '')
			FROM outbox_entries WHERE `+c.where, c.attempt, c.reason).Scan(&total, &dead, &sample)
		if err != nil {
			t.Fatal(err)
		}
		if total != int64(perKind) || dead != total {
			t.Errorf("%s: %d of %d entries dead on attempt %d with %q; e.g. %s", c.what, dead, total, c.attempt, c.reason, sample)
		}
	}
	if _, summary := stateCounts(t, dirty.Pool); !t.Failed() {
		rate := func(d time.Duration) float64 { return float64(healthy) / d.Seconds() }
		t.Logf("%d healthy entries: %s alone (%.0f/s), %s among %d poison entries (%.0f/s): throughput ratio %.2f; final states: %s",
			healthy, base.Round(time.Millisecond), rate(base), withPoison.Round(time.Millisecond), 5*perKind, rate(withPoison), rate(withPoison)/rate(base), summary)
	}
}
