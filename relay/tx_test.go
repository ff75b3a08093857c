package relay_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

func createEffects(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE effects (entry_id bigint NOT NULL, note text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

// The handler's write, the processed key and the completion commit together.
func TestTxHandlerCommitsEffectKeyAndCompletionTogether(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	createEffects(t, db.Pool)
	ev := newEvents()
	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
		_, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, note) VALUES ($1, 'sent')`, e.ID)
		e.SetResult(map[string]string{"receipt": "r-1"})
		return err
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{N: 1}, outbox.WithKey("welcome:42"))
	ev.wait(t, entryKind(id, relay.EventDone))

	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects WHERE entry_id = $1`, id); n != 1 {
		t.Fatalf("%d effect rows, want 1", n)
	}
	if res := scalar[string](t, db.Pool, `SELECT result::text FROM outbox_processed_keys WHERE scope = 'test.ping' AND key = 'welcome:42' AND entry_id = $1`, id); res != `{"receipt": "r-1"}` {
		t.Fatalf("processed key result %s", res)
	}
	if e := getEntry(t, db.Pool, id); e.State != outbox.StateDone || string(e.Result) != `{"receipt": "r-1"}` {
		t.Fatalf("entry %+v", e)
	}
}

// A failure after the handler wrote rolls the write back; the retry writes
// it once.
func TestTxHandlerFailureRollsBackAndRetries(t *testing.T) {
	t.Parallel()
	// A chosen key is recorded as processed with the effect; a generated
	// key (schema version 3) is not, and the completion's fencing alone
	// keeps the effect to one.
	for _, tc := range []struct {
		name     string
		opts     []outbox.Option
		wantKeys int64
	}{
		{"chosen key", []outbox.Option{outbox.WithKey("tx-1")}, 1},
		{"generated key", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := outboxtest.New(t)
			createEffects(t, db.Pool)
			ev := newEvents()
			h := relay.NewHandlers()
			relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ping]) error {
				if _, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, note) VALUES ($1, 'attempt')`, e.ID); err != nil {
					return err
				}
				if e.Attempt == 1 {
					return errors.New("failed after writing")
				}
				return nil
			})
			startRelay(t, db.Pool, fastConfig(h, ev))
			id := enqueue(t, db.Pool, ping{N: 1}, tc.opts...)
			ev.wait(t, entryKind(id, relay.EventRetry))
			ev.wait(t, entryKind(id, relay.EventDone))
			if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects`); n != 1 {
				t.Fatalf("%d effect rows after a failed and a good attempt; want exactly 1", n)
			}
			if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_processed_keys`); n != tc.wantKeys {
				t.Fatalf("%d processed keys, want %d", n, tc.wantKeys)
			}
			if e := getEntry(t, db.Pool, id); e.Attempt != 2 || e.State != outbox.StateDone {
				t.Fatalf("entry %+v", e)
			}
		})
	}
}

// An entry whose topic+key is already processed is skipped, for both
// handler forms: re-enqueued after retention, or sent by a second producer.
func TestProcessedKeySkipsRedelivery(t *testing.T) {
	t.Parallel()
	for _, tx := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "transactional"}[tx]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := outboxtest.New(t)
			ev := newEvents()
			var calls atomic.Int64
			h := relay.NewHandlers()
			if tx {
				relay.HandleTx(h, func(context.Context, pgx.Tx, *relay.Entry[ping]) error { calls.Add(1); return nil })
			} else {
				relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { calls.Add(1); return nil })
			}
			startRelay(t, db.Pool, fastConfig(h, ev))

			first := enqueue(t, db.Pool, ping{N: 1}, outbox.WithKey("invoice:7"))
			ev.wait(t, entryKind(first, relay.EventDone))
			// Retention removed the done entry; the processed key remains.
			if _, err := db.Pool.Exec(context.Background(), `DELETE FROM outbox_entries WHERE id = $1`, first); err != nil {
				t.Fatal(err)
			}
			again := enqueue(t, db.Pool, ping{N: 1}, outbox.WithKey("invoice:7"))
			if again == first {
				t.Fatal("re-enqueue returned the deleted entry's id")
			}
			ev.wait(t, entryKind(again, relay.EventSkipped))
			if calls.Load() != 1 {
				t.Fatalf("handler ran %d times; want once", calls.Load())
			}
			if e := getEntry(t, db.Pool, again); e.State != outbox.StateDone {
				t.Fatalf("skipped entry is %s, want done", e.State)
			}
		})
	}
}
