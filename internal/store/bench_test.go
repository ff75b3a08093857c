package store_test

// Benchmarks of the relay's two hot statements, one batch of 100 entries
// per iteration, with the relay's default lease and handler options. They
// take their server from outboxtest, as the tests of the module do
// (TXOUTBOX_TEST_DATABASE_URL, else a container, else local binaries):
//
//	go test -run '^$' -bench 'Claim|Complete' ./internal/store/
//
// Each refills its backlog untimed (TRUNCATE, COPY, VACUUM ANALYZE) when
// it runs out, so every timed statement sees a table of the same shape.
// "ns/entry" is the time per iteration divided by the batch size.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

const (
	benchBatch  = 100          // entries per claim or completion, the relay's default claim batch
	benchRefill = 100          // batches written per refill
	benchTopic  = "bench.noop" // the only topic in the table
	benchLease  = 30 * time.Second
	benchQueue  = "default"
	benchOwner  = "store-bench"
)

// TestMain stops the throwaway server outboxtest may start for the
// benchmarks.
func TestMain(m *testing.M) { outboxtest.Main(m) }

// benchPool returns a pool on a scratch database, dropped when b ends, on
// the server outboxtest finds (it fails b, as outboxtest does, when there
// is none).
func benchPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	url := outboxtest.AdminURL(b)
	pool, drop, err := scratchdb.Create(context.Background(), url, "txoutbox_storebench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(drop)
	return pool
}

// refill replaces the table's contents with n pending entries.
func refill(b *testing.B, pool *pgxpool.Pool, n int) {
	b.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `TRUNCATE outbox_entries, outbox_processed_keys`); err != nil {
		b.Fatal(err)
	}
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		i++
		return []any{benchTopic, json.RawMessage(fmt.Appendf(nil, `{"n":%d}`, i))}, nil
	})
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"outbox_entries"}, []string{"topic", "payload"}, src); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE outbox_entries`); err != nil {
		b.Fatal(err)
	}
}

func claimParams() store.ClaimParams {
	return store.ClaimParams{
		Queue:     benchQueue,
		Topics:    []string{benchTopic},
		Limit:     benchBatch,
		Lease:     benchLease,
		Owner:     benchOwner,
		ProbeKeys: true, // as the relay claims for a handler with default options
	}
}

// claim claims one full batch, failing b otherwise.
func claim(b *testing.B, db store.DBTX) []store.Claimed {
	b.Helper()
	got, _, err := store.Claim(context.Background(), db, claimParams())
	if err != nil {
		b.Fatal(err)
	}
	if len(got) != benchBatch {
		b.Fatalf("claimed %d entries, want %d", len(got), benchBatch)
	}
	return got
}

// BenchmarkClaim times store.Claim of 100 entries from a backlog of
// pending entries, as the relay's claim loop issues it.
func BenchmarkClaim(b *testing.B) {
	pool := benchPool(b)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	left := 0
	b.ResetTimer()
	for range b.N {
		if left == 0 {
			b.StopTimer()
			refill(b, pool, benchRefill*benchBatch)
			left = benchRefill
			b.StartTimer()
		}
		claim(b, conn)
		left--
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/entry")
}

// BenchmarkComplete times store.Complete of 100 done outcomes with their
// processed keys recorded, as the relay's completer writes them for a
// handler with default options; the claim before each is untimed.
func BenchmarkComplete(b *testing.B) {
	pool := benchPool(b)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	outs := make([]store.Outcome, benchBatch)
	left := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if left == 0 {
			refill(b, pool, benchRefill*benchBatch)
			left = benchRefill
		}
		for i, c := range claim(b, conn) {
			outs[i] = store.Outcome{ID: c.ID, Attempt: c.Attempt, State: store.StateDone, RecordKey: !c.KeyGenerated && !c.Processed}
		}
		left--
		b.StartTimer()
		applied, err := store.Complete(ctx, conn, nil, outs)
		if err != nil {
			b.Fatal(err)
		}
		if len(applied) != benchBatch {
			b.Fatalf("%d of %d outcomes applied", len(applied), benchBatch)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/entry")
}
