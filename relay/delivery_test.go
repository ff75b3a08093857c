package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

func createHandled(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE handled (entry_id bigint NOT NULL, relay text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond every 20ms until it holds, failing after hangGuard.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Four relays — three goroutines here and one in another OS process —
// share 10,000 entries: each is handled exactly once and none is left.
func TestManyRelaysHandleEachEntryOnce(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	createHandled(t, db.Pool)

	const total = 10000
	for b := 0; b < total/500; b++ {
		items := make([]outbox.Item, 500)
		for i := range items {
			items[i] = outbox.NewItem(ping{N: b*500 + i})
		}
		if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
			t.Fatal(err)
		}
	}

	// The other process.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+db.URL)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "helper relay ready") {
				close(ready)
			}
		}
	}()
	<-ready

	for i := range 3 {
		h := relay.NewHandlers()
		relay.Handle(h, recordHandled(db.Pool, fmt.Sprintf("goroutine-%d", i)))
		cfg := fastConfig(h, nil)
		cfg.Queues = map[string]relay.QueueConfig{"default": {MaxWorkers: 20}}
		startRelay(t, db.Pool, cfg)
	}

	waitUntil(t, "all entries done", func() bool {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'done'`) == total
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper relay exited: %v", err)
	}

	rows, handled, distinct := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries`),
		scalar[int64](t, db.Pool, `SELECT count(*) FROM handled`),
		scalar[int64](t, db.Pool, `SELECT count(DISTINCT entry_id) FROM handled`)
	if rows != total || handled != total || distinct != total {
		t.Fatalf("entries %d, handled %d, distinct %d; want %d each", rows, handled, distinct, total)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state <> 'done' OR attempt <> 1`); n != 0 {
		t.Fatalf("%d entries not done on their first attempt", n)
	}
	byRelay, err := db.Pool.Query(ctx, `SELECT relay, count(*) FROM handled GROUP BY relay ORDER BY relay`)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := pgx.CollectRows(byRelay, pgx.RowToStructByPos[struct {
		Relay string
		N     int64
	}])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entries handled per relay: %+v", counts)
}

// An entry committed after a higher id was already handled is still
// handled: claims go by state, not by an id high-water mark.
func TestOutOfOrderCommitIsNotSkipped(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	ev := newEvents()
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error { return nil })
	startRelay(t, db.Pool, fastConfig(h, ev))

	slow, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)
	low, err := outbox.Enqueue(ctx, slow, ping{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	high := enqueue(t, db.Pool, ping{N: 2})
	if high <= low.ID {
		t.Fatalf("ids %d then %d: want the later commit to have the higher id", low.ID, high)
	}
	ev.wait(t, entryKind(high, relay.EventDone))
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, entryKind(low.ID, relay.EventDone))
}

// With a 1-hour poll interval, an entry committed while the relay idles can
// only start through LISTEN/NOTIFY.
func TestNotificationWakesIdleRelay(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	h := relay.NewHandlers()
	started := make(chan time.Time, 1)
	relay.Handle(h, func(context.Context, *relay.Entry[ping]) error {
		started <- time.Now()
		return nil
	})
	cfg := fastConfig(h, ev)
	cfg.PollInterval = time.Hour
	startRelay(t, db.Pool, cfg)
	ev.wait(t, kindIs(relay.EventListenerUp))

	// A plain SQL insert, as a non-Go producer would write it.
	committed := time.Now()
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox_entries (topic, payload) VALUES ('test.ping', '{"n": 1}')`); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-started:
		t.Logf("commit to handler start: %s (poll interval %s)", at.Sub(committed), cfg.PollInterval)
	case <-time.After(hangGuard):
		t.Fatal("a notified entry did not start")
	}
}

// Entries sharing an ordering key run one at a time in id order; different
// keys run in parallel.
func TestOrderingKeys(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	const keys, perKey = 5, 200

	var mu sync.Mutex
	lastSeq := map[string]int{}
	running := map[string]int{}
	var violations []string
	var concurrent, maxConcurrent atomic.Int64
	var doneCount atomic.Int64
	allDone := make(chan struct{})

	handler := func(ctx context.Context, e *relay.Entry[ordered]) error {
		k, seq := e.Payload.Key, e.Payload.Seq
		mu.Lock()
		running[k]++
		if running[k] > 1 {
			violations = append(violations, fmt.Sprintf("%s: %d running at once", k, running[k]))
		}
		if seq != lastSeq[k]+1 {
			violations = append(violations, fmt.Sprintf("%s: seq %d after %d", k, seq, lastSeq[k]))
		}
		lastSeq[k] = seq
		mu.Unlock()
		c := concurrent.Add(1)
		for {
			m := maxConcurrent.Load()
			if c <= m || maxConcurrent.CompareAndSwap(m, c) {
				break
			}
		}
		// Simulated work of varying length, so keys interleave.
		time.Sleep(time.Duration(e.ID%3) * time.Millisecond)
		concurrent.Add(-1)
		mu.Lock()
		running[k]--
		mu.Unlock()
		if doneCount.Add(1) == keys*perKey {
			close(allDone)
		}
		return nil
	}

	items := make([]outbox.Item, 0, keys*perKey)
	for seq := 1; seq <= perKey; seq++ {
		for k := range keys {
			key := fmt.Sprintf("order-%d", k)
			items = append(items, outbox.NewItem(ordered{Key: key, Seq: seq}, outbox.WithOrderingKey(key)))
		}
	}
	if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h := relay.NewHandlers()
		relay.Handle(h, handler)
		startRelay(t, db.Pool, fastConfig(h, nil))
	}
	select {
	case <-allDone:
	case <-time.After(hangGuard):
		t.Fatalf("only %d of %d entries handled", doneCount.Load(), keys*perKey)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("ordering violated:\n%s", strings.Join(violations[:min(len(violations), 20)], "\n"))
	}
	for k := range keys {
		if s := lastSeq[fmt.Sprintf("order-%d", k)]; s != perKey {
			t.Fatalf("key %d ended at seq %d", k, s)
		}
	}
	if maxConcurrent.Load() < 2 {
		t.Fatalf("different keys never ran in parallel (max concurrency %d)", maxConcurrent.Load())
	}
	t.Logf("max handlers running at once across keys: %d", maxConcurrent.Load())
}
