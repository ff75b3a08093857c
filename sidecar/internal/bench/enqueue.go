package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
)

const (
	// enqueueBlock is how many transactions of one kind run before the
	// enqueue scenario switches to the other kind, so that both see the
	// same conditions on a busy machine.
	enqueueBlock = 50
	// enqueueWarmup transactions of each kind run untimed first.
	enqueueWarmup = 10
	// batchSize is the entries per EnqueueBatch transaction.
	batchSize = 100
	// minBatchTx is the least batch transactions measured.
	minBatchTx = 5
)

// enqueue measures one producer's transactions, back to back on one
// connection: alternating blocks of a bare domain insert and of the same
// insert plus one outbox.Enqueue for three quarters of Duration, then
// transactions of one EnqueueBatch of 100 entries for the last quarter.
func (r *Runner) enqueue(ctx context.Context) (Result, error) {
	if err := r.clean(ctx); err != nil {
		return Result{}, err
	}
	conn, err := r.app.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("acquiring a connection: %w", err)
	}
	defer conn.Release()
	db := conn.Conn()

	bare := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+ordersTable+` (note) VALUES ($1)`, "bench")
		return err
	}
	withEntry := func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO `+ordersTable+` (note) VALUES ($1) RETURNING id`, "bench").Scan(&id); err != nil {
			return err
		}
		_, err := outbox.Enqueue(ctx, tx, payload{N: id})
		return err
	}
	items := make([]outbox.Item, batchSize)
	for i := range items {
		items[i] = outbox.NewItem(payload{N: int64(i)})
	}
	batch := func(tx pgx.Tx) error {
		_, err := outbox.EnqueueBatch(ctx, tx, items)
		return err
	}

	for range enqueueWarmup {
		for _, f := range []func(pgx.Tx) error{bare, withEntry} {
			if _, err := timeTx(ctx, db, f); err != nil {
				return Result{}, err
			}
		}
	}
	r.log.Info("bench: enqueue: timing producer transactions", "duration", r.cfg.Duration)
	var bareDurs, entryDurs, batchDurs []time.Duration
	singleEnd := time.Now().Add(r.cfg.Duration * 3 / 4)
	for len(bareDurs) == 0 || time.Now().Before(singleEnd) {
		for _, kind := range []struct {
			f    func(pgx.Tx) error
			durs *[]time.Duration
		}{{bare, &bareDurs}, {withEntry, &entryDurs}} {
			for range enqueueBlock {
				d, err := timeTx(ctx, db, kind.f)
				if err != nil {
					return Result{}, err
				}
				*kind.durs = append(*kind.durs, d)
			}
		}
	}
	batchEnd := time.Now().Add(r.cfg.Duration / 4)
	for len(batchDurs) < minBatchTx || time.Now().Before(batchEnd) {
		d, err := timeTx(ctx, db, batch)
		if err != nil {
			return Result{}, err
		}
		batchDurs = append(batchDurs, d)
	}
	if err := r.clean(ctx); err != nil {
		return Result{}, err
	}

	slices.Sort(bareDurs)
	slices.Sort(entryDurs)
	slices.Sort(batchDurs)
	bare50, entry50 := percentile(bareDurs, 50), percentile(entryDurs, 50)
	var res Result
	res.setting("batch_size", batchSize, 0)
	res.measure("tx", float64(len(bareDurs)), 0)
	res.measure("bare_p50_ms", ms(bare50), 3)
	res.measure("bare_p99_ms", ms(percentile(bareDurs, 99)), 3)
	res.measure("enqueue_p50_ms", ms(entry50), 3)
	res.measure("enqueue_p99_ms", ms(percentile(entryDurs, 99)), 3)
	res.measure("overhead_p50_ms", ms(entry50-bare50), 3)
	res.measure("ratio_p50", float64(entry50)/float64(bare50), 3)
	res.measure("batch_tx", float64(len(batchDurs)), 0)
	res.measure("batch_us_per_entry", float64(percentile(batchDurs, 50))/1e3/batchSize, 2)
	return res, nil
}

// timeTx runs f in a transaction on db and commits, and returns how long
// it took from Begin to Commit returning.
func timeTx(ctx context.Context, db *pgx.Conn, f func(pgx.Tx) error) (time.Duration, error) {
	t0 := time.Now()
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("producer: %w", err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return 0, fmt.Errorf("producer: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("producer: %w", err)
	}
	return time.Since(t0), nil
}
