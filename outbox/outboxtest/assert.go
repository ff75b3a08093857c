package outboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
)

// queryTimeout bounds each query an assertion helper runs.
const queryTimeout = 30 * time.Second

// describeMax is how many entries a failure message lists.
const describeMax = 5

// Querier is what the assertion helpers read outbox_entries through.
// pgx.Tx, *pgx.Conn and *pgxpool.Pool satisfy it. Pass the test's
// transaction to see entries it has not committed yet.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// idsSQL lists the ids of a topic's entries (every entry for ”); the
// entries themselves are read with outbox.GetMany, as an application would.
const idsSQL = `SELECT id FROM outbox_entries WHERE $1 = '' OR topic = $1 ORDER BY id`

const countSQL = `SELECT count(*) FROM outbox_entries WHERE $1 = '' OR topic = $1`

// Entries returns the entries of topic visible to q, in id order, as
// [outbox.Get] reads them; an empty topic returns every entry. It fails t
// if the query fails.
func Entries(t testing.TB, q Querier, topic string) []outbox.Entry {
	t.Helper()
	es, err := queryEntries(q, topic)
	if err != nil {
		t.Fatalf("outboxtest: %v", err)
		return nil
	}
	return es
}

// Count returns how many entries of topic are visible to q; an empty topic
// counts every entry. It fails t if the query fails.
func Count(t testing.TB, q Querier, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rows, err := q.Query(ctx, countSQL, topic)
	if err != nil {
		t.Fatalf("outboxtest: count entries of topic %q: %v", topic, err)
		return 0
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("outboxtest: count entries of topic %q: %v", topic, err)
		return 0
	}
	return n
}

// RequireEnqueued asserts that q sees at least one entry of T's topic whose
// payload, decoded from JSON into a T, satisfies match (nil matches any),
// and returns every such payload in id order. T is a payload type: its
// zero value's Topic() names the topic, so Topic must not dereference a nil
// pointer (use the value type, as when enqueueing). RequireEnqueued fails
// t, listing the entries of the topic it saw, if none matches or a payload
// does not decode.
func RequireEnqueued[T interface{ Topic() string }](t testing.TB, q Querier, match func(T) bool) []T {
	t.Helper()
	topic, ok := topicOf[T](t)
	if !ok {
		return nil
	}
	all, _, got, ok := matching(t, q, topic, match)
	if !ok {
		return nil
	}
	if len(got) == 0 {
		t.Fatalf("outboxtest: no entry of topic %q matched, out of %d of that topic%s", topic, len(all), describe(all))
		return nil
	}
	return got
}

// RequireNotEnqueued asserts that q sees no entry of T's topic whose
// payload satisfies match (nil matches any); see [RequireEnqueued] for T.
// It fails t, listing the matching entries, otherwise.
func RequireNotEnqueued[T interface{ Topic() string }](t testing.TB, q Querier, match func(T) bool) {
	t.Helper()
	topic, ok := topicOf[T](t)
	if !ok {
		return
	}
	_, hits, _, ok := matching(t, q, topic, match)
	if !ok || len(hits) == 0 {
		return
	}
	t.Fatalf("outboxtest: %d entries of topic %q matched, want none%s", len(hits), topic, describe(hits))
}

// topicOf returns T's topic, failing t if T's zero value cannot name one.
func topicOf[T interface{ Topic() string }](t testing.TB) (topic string, ok bool) {
	t.Helper()
	var zero T
	var perr any
	func() {
		defer func() { perr = recover() }()
		topic = zero.Topic()
	}()
	switch {
	case perr != nil:
		t.Fatalf("outboxtest: Topic() of the zero %T panicked (%v); use the payload's value type, whose Topic has a value receiver", zero, perr)
		return "", false
	case topic == "":
		t.Fatalf("outboxtest: Topic() of the zero %T is empty", zero)
		return "", false
	}
	return topic, true
}

// matching reads the entries of topic and decodes each payload into a T,
// returning all entries, the matching entries and their payloads. It fails
// t on a query or decode error and then returns ok=false.
func matching[T any](t testing.TB, q Querier, topic string, match func(T) bool) (all, hits []outbox.Entry, got []T, ok bool) {
	t.Helper()
	all, err := queryEntries(q, topic)
	if err != nil {
		t.Fatalf("outboxtest: %v", err)
		return nil, nil, nil, false
	}
	for _, e := range all {
		var v T
		if err := json.Unmarshal(e.Payload, &v); err != nil {
			t.Fatalf("outboxtest: entry %d of topic %q: decode payload %s into %T: %v", e.ID, topic, e.Payload, v, err)
			return nil, nil, nil, false
		}
		if match == nil || match(v) {
			hits = append(hits, e)
			got = append(got, v)
		}
	}
	return all, hits, got, true
}

func queryEntries(q Querier, topic string) ([]outbox.Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rows, err := q.Query(ctx, idsSQL, topic)
	if err != nil {
		return nil, fmt.Errorf("read entries of topic %q: %w", topic, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read entries of topic %q: %w", topic, err)
	}
	var out []outbox.Entry
	for chunk := range slices.Chunk(ids, outbox.MaxListLimit) {
		es, err := outbox.GetMany(ctx, q, chunk)
		if err != nil {
			return nil, fmt.Errorf("read entries of topic %q: %w", topic, err)
		}
		out = append(out, es...)
	}
	return out, nil
}

// describe lists up to describeMax entries for a failure message, one per
// line.
func describe(es []outbox.Entry) string {
	var b strings.Builder
	for i, e := range es {
		if i == describeMax {
			fmt.Fprintf(&b, "\n\t... and %d more", len(es)-describeMax)
			break
		}
		fmt.Fprintf(&b, "\n\tid=%d key=%q state=%s payload=%s", e.ID, e.Key, e.State, e.Payload)
	}
	return b.String()
}
