package faultsuite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
)

// keyLedger records, per producer transaction, which keys committed for
// certain, which were rolled back, and which are unknown (the commit
// failed without saying whether it happened).
type keyLedger struct {
	mu                            sync.Mutex
	committed, rolledBack, unsure []string
	behind                        int // commits of entries below an id already done
}

func (l *keyLedger) add(list *[]string, keys []string) {
	l.mu.Lock()
	*list = append(*list, keys...)
	l.mu.Unlock()
}

// Several relay processes compete for entries that producers commit out of
// id order: many small concurrent transactions, long-running transactions
// that commit (or roll back) only after later entries were already
// handled, and one producer per ordering key. No committed entry is
// skipped, no rolled-back one runs, no entry runs twice at the same time,
// the transactional effects happen exactly once, and each ordering key's
// entries run one after another in id order.
func TestCompetingRelaysOutOfOrderCommits(t *testing.T) {
	relays, total := competeRelays.get(t), competeEntries.get(t)
	rng := seededRand(t)
	logTimeScale(t)
	db := newDB(t)
	ctx := context.Background()
	producers := openPool(t, db.URL, "producers", 40)

	procs := make([]*child, relays)
	for i := range procs {
		procs[i] = startChild(t, childConfig{
			URL: db.URL, ID: fmt.Sprintf("compete-relay-%d", i), MaxConns: 12,
			Queues: map[string]int{"default": 8}, LeaseMS: int(scaled(5 * time.Second).Milliseconds()), PollMS: 100,
			Tx: true, Runs: true,
		})
	}

	// A fifth of the entries in long transactions, a fifth under ordering
	// keys, the rest in small concurrent batches.
	const slowProducers, fastProducers, orderingKeys = 2, 3, 8
	slowQuota := total / 5 / slowProducers
	perKey := max(2, total/5/orderingKeys)
	fastQuota := (total - slowQuota*slowProducers - perKey*orderingKeys) / fastProducers
	seeds := make([]uint64, slowProducers+fastProducers+orderingKeys)
	for i := range seeds {
		seeds[i] = rng.Uint64()
	}

	ledger := &keyLedger{}
	var wg, others sync.WaitGroup
	othersDone := make(chan struct{}) // the fast and keyed producers are through
	began := time.Now()
	// Long-running transactions: enqueue a few entries, wait until an
	// entry with a higher id is done (or three seconds, scaled with the
	// machine's load), then commit, or roll back one time in five.
	for p := range slowProducers {
		r := rand.New(rand.NewPCG(seeds[p], 1))
		wg.Go(func() {
			for i := 0; i < slowQuota; {
				tx, err := producers.Begin(ctx)
				if err != nil {
					t.Errorf("begin: %v", err)
					return
				}
				var keys []string
				var top int64
				for j := 0; j < 6 && i < slowQuota; j, i = j+1, i+1 {
					key := fmt.Sprintf("slow-%d-%d", p, i)
					var msg outbox.Message = runWork{N: i, SleepUS: r.IntN(2000)}
					if j%2 == 1 {
						msg = txWork{N: i}
					}
					res, err := outbox.Enqueue(ctx, tx, msg, outbox.WithKey(key))
					if err != nil {
						t.Errorf("enqueue: %v", err)
						_ = tx.Rollback(ctx)
						return
					}
					keys = append(keys, key)
					top = max(top, res.ID)
				}
				deadline := time.Now().Add(scaled(3 * time.Second))
				behind := false
			wait:
				for !behind && time.Now().Before(deadline) {
					select {
					case <-othersDone: // no later entry will come
						break wait
					case <-time.After(20 * time.Millisecond):
					}
					if err := producers.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_entries WHERE id > $1 AND state = 'done')`, top).Scan(&behind); err != nil {
						t.Errorf("poll: %v", err)
						_ = tx.Rollback(ctx)
						return
					}
				}
				if r.IntN(5) == 0 {
					if err := tx.Rollback(ctx); err != nil {
						t.Errorf("rollback: %v", err)
					}
					ledger.add(&ledger.rolledBack, keys)
					continue
				}
				if err := tx.Commit(ctx); err != nil {
					ledger.add(&ledger.unsure, keys)
					continue
				}
				ledger.add(&ledger.committed, keys)
				if behind {
					ledger.mu.Lock()
					ledger.behind += len(keys)
					ledger.mu.Unlock()
				}
			}
		})
	}
	// Small concurrent batches.
	for p := range fastProducers {
		r := rand.New(rand.NewPCG(seeds[slowProducers+p], 2))
		others.Go(func() {
			for i := 0; i < fastQuota; {
				var items []outbox.Item
				var keys []string
				for n := 1 + r.IntN(10); n > 0 && i < fastQuota; n, i = n-1, i+1 {
					key := fmt.Sprintf("fast-%d-%d", p, i)
					var msg outbox.Message = runWork{N: i, SleepUS: r.IntN(2000)}
					if r.IntN(2) == 0 {
						msg = txWork{N: i}
					}
					items = append(items, outbox.NewItem(msg, outbox.WithKey(key)))
					keys = append(keys, key)
				}
				if _, err := outbox.EnqueueBatch(ctx, producers, items); err != nil {
					t.Errorf("enqueue batch: %v", err)
					return
				}
				ledger.add(&ledger.committed, keys)
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
			}
		})
	}
	// One producer per ordering key, so that id order is the key's order;
	// one transaction in ten stays open for a while.
	for k := range orderingKeys {
		r := rand.New(rand.NewPCG(seeds[slowProducers+fastProducers+k], 3))
		others.Go(func() {
			okey := fmt.Sprintf("order-%d", k)
			for seq := 1; seq <= perKey; seq++ {
				key := fmt.Sprintf("%s-%d", okey, seq)
				tx, err := producers.Begin(ctx)
				if err != nil {
					t.Errorf("begin: %v", err)
					return
				}
				if _, err := outbox.Enqueue(ctx, tx, runWork{N: seq, Key: okey, Seq: seq, SleepUS: r.IntN(3000)},
					outbox.WithKey(key), outbox.WithOrderingKey(okey)); err != nil {
					t.Errorf("enqueue: %v", err)
					_ = tx.Rollback(ctx)
					return
				}
				if r.IntN(10) == 0 {
					time.Sleep(time.Duration(100+r.IntN(400)) * time.Millisecond)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Errorf("commit %s: %v", key, err) // the next seq would then be out of order
					return
				}
				ledger.add(&ledger.committed, []string{key})
				time.Sleep(time.Duration(r.IntN(10)) * time.Millisecond)
			}
		})
	}
	others.Wait()
	close(othersDone)
	wg.Wait()
	producedIn := time.Since(began)
	waitSettled(t, db.Pool)
	elapsed := time.Since(began)
	for _, p := range procs {
		p.stop(t)
	}
	if t.Failed() {
		return
	}

	// Nothing committed skipped, nothing rolled back run.
	states, summary := stateCounts(t, db.Pool)
	if int(states["done"]) < len(ledger.committed) || states["dead"] != 0 {
		t.Fatalf("%d committed for certain; states: %s", len(ledger.committed), summary)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM unnest($1::text[]) k WHERE NOT EXISTS (SELECT 1 FROM outbox_entries e WHERE e.key = k AND e.state = 'done')`, ledger.committed); n != 0 {
		t.Fatalf("%d committed entries are not done", n)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries e WHERE e.key = ANY($1::text[])`, ledger.rolledBack); n != 0 {
		t.Fatalf("%d rolled-back entries exist", n)
	}
	if extra := states["done"] - int64(len(ledger.committed)); extra > int64(len(ledger.unsure)) {
		t.Fatalf("%d entries beyond those committed for certain, but only %d commits were unsure", extra, len(ledger.unsure))
	}

	// Effects exactly once; every plain entry ran, never twice at once.
	txEntries := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE topic = 'fault.tx'`)
	if effects, distinct := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects`), scalar[int64](t, db.Pool, `SELECT count(DISTINCT entry_id) FROM effects`); effects != txEntries || distinct != txEntries {
		t.Fatalf("%d effects for %d distinct entries; want one for each of %d", effects, distinct, txEntries)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries e WHERE topic = 'fault.run' AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.entry_id = e.id)`); n != 0 {
		t.Fatalf("%d plain entries done without a run", n)
	}
	checkNoOverlap(t, db.Pool, false)

	checkKeyOrder(t, db.Pool)
	keyed := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE ordering_key IS NOT NULL`)
	if keyed != int64(perKey*orderingKeys) {
		t.Fatalf("%d keyed entries, want %d", keyed, perKey*orderingKeys)
	}

	// The out-of-order commits happened, and every relay took part.
	if ledger.behind == 0 {
		t.Error("no long transaction committed after a later entry was done; the test did not test out-of-order commits")
	}
	rows, err := db.Pool.Query(ctx, `SELECT relay, count(*) FROM (SELECT relay FROM runs UNION ALL SELECT relay FROM effects) x GROUP BY relay ORDER BY relay`)
	if err != nil {
		t.Fatal(err)
	}
	shares, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Relay string
		N     int64
	}])
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != relays {
		t.Errorf("only %d of %d relays handled entries: %v", len(shares), relays, shares)
	}
	reruns := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE attempt > 1`)
	t.Logf("%d relay processes, %d entries done (%d keyed under %d keys, %d from long transactions of which %d committed after a later entry was done; %d rolled back, %d commits unsure) in %s (producers ran %s)",
		relays, states["done"], keyed, orderingKeys, slowQuota*slowProducers, ledger.behind, len(ledger.rolledBack), len(ledger.unsure), elapsed.Round(time.Millisecond), producedIn.Round(time.Millisecond))
	t.Logf("entries per relay: %v; %d entries ran more than once; none twice at the same time; per-key order held", shares, reruns)
}

// checkKeyOrder fails t unless, for every ordering key, ids follow the
// payload's seq (the producer's order), and each entry's first run started
// after the previous entry's last run finished.
func checkKeyOrder(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if n := scalar[int64](t, pool, `SELECT count(*) FROM (
		SELECT (payload->>'seq')::int AS seq, lag((payload->>'seq')::int) OVER (PARTITION BY ordering_key ORDER BY id) AS prev
		FROM outbox_entries WHERE ordering_key IS NOT NULL) s WHERE seq <> prev + 1`); n != 0 {
		t.Fatalf("%d keyed entries out of sequence by id", n)
	}
	rows, err := pool.Query(context.Background(), `
		WITH e AS (
			SELECT id, ordering_key, lag(id) OVER (PARTITION BY ordering_key ORDER BY id) AS prev
			FROM outbox_entries WHERE ordering_key IS NOT NULL),
		r AS (SELECT entry_id, min(started_at) AS s, max(finished_at) AS f FROM runs GROUP BY entry_id)
		SELECT e.ordering_key, e.prev, e.id, extract(epoch FROM p.f - c.s) * 1000
		FROM e JOIN r c ON c.entry_id = e.id JOIN r p ON p.entry_id = e.prev
		WHERE c.s < p.f ORDER BY e.id LIMIT 20`)
	if err != nil {
		t.Fatal(err)
	}
	var disorder []string
	for rows.Next() {
		var k string
		var prev, id int64
		var ms float64
		if err := rows.Scan(&k, &prev, &id, &ms); err != nil {
			t.Fatal(err)
		}
		disorder = append(disorder, fmt.Sprintf("%s: entry %d started %.1fms before entry %d finished", k, id, ms, prev))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(disorder) > 0 {
		t.Fatalf("per-key order broken:\n%s", strings.Join(disorder, "\n"))
	}
}
