package outbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// BenchmarkEnqueue measures what enqueueing adds to a producer's
// transaction: a bare domain insert, the same insert plus one entry, and a
// batch of 100 entries per transaction. Each sub-benchmark has its own
// database.
func BenchmarkEnqueue(b *testing.B) {
	b.Run("bare_insert", func(b *testing.B) {
		db := newDB(b)
		ctx := b.Context()
		for b.Loop() {
			inTx(b, db, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO users (email) VALUES ($1)`, "bench@example.com")
				return err
			})
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	})
	b.Run("insert_plus_enqueue", func(b *testing.B) {
		db := newDB(b)
		ctx := b.Context()
		for b.Loop() {
			inTx(b, db, func(tx pgx.Tx) error {
				var id int64
				err := tx.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id`, "bench@example.com").Scan(&id)
				if err != nil {
					return err
				}
				_, err = outbox.Enqueue(ctx, tx, signup{UserID: id, Email: "bench@example.com"})
				return err
			})
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("batch_100", func(b *testing.B) {
		const size = 100
		db := newDB(b)
		ctx := b.Context()
		items := make([]outbox.Item, size)
		for i := range items {
			items[i] = outbox.NewItem(signup{UserID: int64(i), Email: "bench@example.com"})
		}
		for b.Loop() {
			inTx(b, db, func(tx pgx.Tx) error {
				_, err := outbox.EnqueueBatch(ctx, tx, items)
				return err
			})
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "entries/s")
	})
}

// inTx runs f in a transaction on db's pool and commits, failing b on any
// error.
func inTx(b *testing.B, db *outboxtest.DB, f func(tx pgx.Tx) error) {
	b.Helper()
	ctx := b.Context()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if err := f(tx); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
}
