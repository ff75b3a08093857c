package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// The claim measures payloads and headers in the database: an entry over a
// limit is claimed with only its sizes, so the relay never holds its bytes,
// and the claim stops taking entries once their bytes reach the budget,
// leaving the rest pending for the next claim.
func TestClaimMeasuresAndBudgetsBytes(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	// In claim order (id): small, too large a payload, too large headers,
	// then three entries of about 400 bytes each.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_entries (topic, key, payload, headers) VALUES
		('t', 'small', '{"n": 1}', '{}'),
		('t', 'big-payload', jsonb_build_object('pad', repeat('p', 5000)), '{}'),
		('t', 'big-headers', '{"n": 2}', jsonb_build_object('h', repeat('h', 3000))),
		('t', 'a', jsonb_build_object('pad', repeat('a', 400)), '{}'),
		('t', 'b', jsonb_build_object('pad', repeat('b', 400)), '{}'),
		('t', 'c', jsonb_build_object('pad', repeat('c', 400)), '{}')`); err != nil {
		t.Fatal(err)
	}
	params := store.ClaimParams{
		Queue: "default", Topics: []string{"t"}, Limit: 100, Lease: time.Minute, Owner: "test",
		MaxPayloadBytes: 1000, MaxHeadersBytes: 1000, MaxBytes: 1000,
	}
	first, more, err := store.Claim(ctx, db.Pool, params)
	if err != nil {
		t.Fatal(err)
	}
	if !more {
		t.Error("a claim cut short by the budget does not say so")
	}
	got := map[string]store.Claimed{}
	for _, c := range first {
		got[c.Key] = c
	}
	// small (10 bytes, payload and headers) + a (~412) + b (~412) fit in
	// 1,000; the oversized two count nothing; c would pass the budget.
	for _, key := range []string{"small", "big-payload", "big-headers", "a", "b"} {
		if _, ok := got[key]; !ok {
			t.Errorf("entry %q not claimed; claimed %d entries", key, len(first))
		}
	}
	if _, ok := got["c"]; ok || len(first) != 5 {
		t.Errorf("claimed %d entries, including c: %v; the budget allows 5", len(first), ok)
	}
	if c := got["big-payload"]; c.Payload != nil || c.Headers != nil || c.PayloadBytes < 5000 {
		t.Errorf("oversized payload: fetched %d payload bytes, %d header bytes, measured %d", len(c.Payload), len(c.Headers), c.PayloadBytes)
	}
	if c := got["big-headers"]; c.Payload != nil || c.Headers != nil || c.HeadersBytes < 3000 {
		t.Errorf("oversized headers: fetched %d payload bytes, %d header bytes, measured %d", len(c.Payload), len(c.Headers), c.HeadersBytes)
	}
	if c := got["small"]; string(c.Payload) != `{"n": 1}` || string(c.Headers) != `{}` || c.PayloadBytes != 8 || c.HeadersBytes != 2 {
		t.Errorf("small entry: payload %s (%d bytes), headers %s (%d bytes)", c.Payload, c.PayloadBytes, c.Headers, c.HeadersBytes)
	}

	// The next claim takes the rest; over budget on its own, a first
	// entry is still claimed.
	params.MaxBytes = 10
	second, more, err := store.Claim(ctx, db.Pool, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 1 || second[0].Key != "c" || more {
		t.Fatalf("second claim: %d entries, more %v; want c alone, and no more", len(second), more)
	}
}

// ClaimAfterCheck's quiet is false exactly while a transaction that
// inserted entries of the queue is committing (holds the schema's shared
// commit lock), and only for that queue.
func TestClaimAfterCheckSeesCommittingProducers(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	quiet := func(queue string) bool {
		t.Helper()
		// A topic nobody enqueues: the claim after the check takes nothing.
		_, _, q, err := store.ClaimAfterCheck(ctx, db.Pool, store.ClaimParams{
			Queue: queue, Topics: []string{"no.such.topic"}, Limit: 1, Lease: time.Minute, Owner: "test",
		})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	if !quiet("default") {
		t.Fatal("not quiet with no producer")
	}
	// A transaction that fired the commit trigger early (as SET
	// CONSTRAINTS ALL IMMEDIATE does) holds the lock until it ends.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO outbox_entries (topic) VALUES ('t')`); err != nil {
		t.Fatal(err)
	}
	if !quiet("default") {
		t.Fatal("not quiet before the inserting transaction commits")
	}
	if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if quiet("default") {
		t.Error("quiet while a producer of the queue is committing")
	}
	if !quiet("other") {
		t.Error("another queue is not quiet")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !quiet("default") {
		t.Error("not quiet after the commit")
	}
}
