package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// holdWork entries are held by relay A's handler until its context ends;
// holdTxWork is the same for a transactional handler; gateWork's handler
// waits for the test's say-so.
type holdWork struct {
	N int `json:"n"`
}

func (holdWork) Topic() string { return "fault.hold" }

type holdTxWork struct {
	N int `json:"n"`
}

func (holdTxWork) Topic() string { return "fault.holdtx" }

type gateWork struct{}

func (gateWork) Topic() string { return "fault.gate" }

// holdLog records what the two relays' handlers did with each entry.
type holdLog struct {
	mu        sync.Mutex
	entered   map[int64]bool      // A: its handler's body runs
	cancelled map[int64]time.Time // A: when its context ended
	cause     map[int64]error     // A: why
	runsB     map[int64]int       // B: how often its handler ran the entry
}

func newHoldLog() *holdLog {
	return &holdLog{entered: map[int64]bool{}, cancelled: map[int64]time.Time{}, cause: map[int64]error{}, runsB: map[int64]int{}}
}

// enter records that A's handler of entry id runs its body: EventStarted
// comes earlier, before a transactional handler's transaction is open.
func (l *holdLog) enter(id int64) {
	l.mu.Lock()
	l.entered[id] = true
	l.mu.Unlock()
}

// allEntered reports whether A's handlers of all ids run their bodies.
func (l *holdLog) allEntered(ids []int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if !l.entered[id] {
			return false
		}
	}
	return true
}

// holdA waits for ctx to end, records why, and returns nil: a stale relay
// that believes it succeeded.
func (l *holdLog) holdA(ctx context.Context, id int64) {
	l.enter(id)
	<-ctx.Done()
	l.mu.Lock()
	l.cancelled[id] = time.Now()
	l.cause[id] = context.Cause(ctx)
	l.mu.Unlock()
}

func (l *holdLog) runB(id int64) {
	l.mu.Lock()
	l.runsB[id]++
	l.mu.Unlock()
}

// Traffic between relay A and PostgreSQL stalls (nothing moves, nothing is
// closed) for longer than A's lease, while A runs plain and transactional
// handlers and while A's completer is writing an outcome. A cancels its
// handlers with ErrLeaseLost about when its lease expires; relay B, which
// reaches the database directly, takes the entries over; and once traffic
// flows again, A's late completions are rejected (EventFenced): every entry
// ends done once, by B, and only B's transactional effect exists.
func TestStalledConnectionsLoseLeasesAndAreFenced(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	px := newProxy(t, fmt.Sprintf("127.0.0.1:%d", cluster(t).Port()))
	viaProxy := strings.Replace(db.URL, fmt.Sprintf(":%d/", cluster(t).Port()), fmt.Sprintf(":%d/", px.port()), 1)

	logTimeScale(t)
	lease, heartbeat := scaled(2*time.Second), scaled(500*time.Millisecond)
	log := newHoldLog()
	release := make(chan struct{})

	// Relay A, through the proxy.
	evA := &events{}
	hA := relay.NewHandlers()
	relay.Handle(hA, func(ctx context.Context, e *relay.Entry[holdWork]) error { log.holdA(ctx, e.ID); return nil })
	relay.HandleTx(hA, func(ctx context.Context, _ pgx.Tx, e *relay.Entry[holdTxWork]) error {
		log.holdA(ctx, e.ID)
		return nil
	})
	relay.Handle(hA, func(_ context.Context, e *relay.Entry[gateWork]) error { log.enter(e.ID); <-release; return nil })
	stopA := runRelay(t, openPool(t, viaProxy, "relay-a", 10), relay.Config{
		Handlers: hA, ID: "relay-a", Observer: evA, Logger: logger(),
		LeaseDuration: lease, HeartbeatInterval: heartbeat, RescueInterval: scaled(100 * time.Millisecond),
		PollInterval: 50 * time.Millisecond, RetentionInterval: -1, ShutdownTimeout: scaled(time.Second),
	})

	var holds []int64
	for i := range 3 {
		holds = append(holds, enqueueOne(t, db.Pool, holdWork{N: i}), enqueueOne(t, db.Pool, holdTxWork{N: i}))
	}
	gate := enqueueOne(t, db.Pool, gateWork{})
	// A's handlers must be inside their bodies when the stall begins (a
	// transactional one with its transaction open), not on their way
	// there: on a loaded machine a handler's start can lag its
	// EventStarted by a lot.
	held := append(append([]int64(nil), holds...), gate)
	waitUntil(t, "A's handlers of every entry to run", 10*time.Millisecond, func() bool { return log.allEntered(held) })
	// Let at least one renewal of each lease pass, so the leases in the
	// database and in A agree on their start.
	claimed := leasesUntil(t, db.Pool, held)
	waitUntil(t, "A's first renewal of every lease", 10*time.Millisecond, func() bool {
		now := leasesUntil(t, db.Pool, held)
		for id, until := range claimed {
			if !now[id].After(until) {
				return false
			}
		}
		return true
	})

	stalledAt := time.Now()
	px.stall()
	close(release) // the gate's outcome now waits in A's completer, on a stalled connection
	t.Logf("stalled A's connections with %d entries held and an outcome on its way", len(holds))

	// Relay B, direct.
	evB := &events{}
	hB := relay.NewHandlers()
	relay.Handle(hB, func(_ context.Context, e *relay.Entry[holdWork]) error { log.runB(e.ID); return nil })
	relay.HandleTx(hB, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[holdTxWork]) error {
		log.runB(e.ID)
		_, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, n, relay, attempt) VALUES ($1, $2, 'relay-b', $3)`, e.ID, e.Payload.N, e.Attempt)
		return err
	})
	relay.Handle(hB, func(context.Context, *relay.Entry[gateWork]) error { return nil })
	stopB := runRelay(t, openPool(t, db.URL, "relay-b", 10), relay.Config{
		Handlers: hB, ID: "relay-b", Observer: evB, Logger: logger(),
		LeaseDuration: lease, HeartbeatInterval: heartbeat, RescueInterval: scaled(100 * time.Millisecond),
		PollInterval: 50 * time.Millisecond, RetentionInterval: -1, ShutdownTimeout: scaled(time.Second),
	})

	// A must give up every held entry about when its lease ends (the
	// documented lag is up to one heartbeat), not whenever the outcome
	// stuck in its completer times out. (The slack beyond the documented
	// lag is for scheduling, and scales with the machine's load.)
	limit := stalledAt.Add(2*lease + scaled(3*time.Second))
	for _, id := range holds {
		for {
			log.mu.Lock()
			_, ok := log.cancelled[id]
			log.mu.Unlock()
			if ok || time.Now().After(limit) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, id := range held {
		evB.wait(t, fmt.Sprintf("B starts entry %d", id), entryKind(id, relay.EventStarted))
	}
	log.mu.Lock()
	var stuck []string
	for _, id := range holds {
		if _, ok := log.cancelled[id]; !ok {
			stuck = append(stuck, fmt.Sprint(id))
		}
	}
	log.mu.Unlock()
	if len(stuck) > 0 {
		t.Errorf("%s after the stall began, A's handlers of entries %s still run, while B has taken them over: lease loss did not cancel them",
			time.Since(stalledAt).Round(time.Millisecond), strings.Join(stuck, ", "))
	}

	px.heal()
	t.Logf("healed after %s", time.Since(stalledAt).Round(time.Millisecond))
	for _, id := range held {
		evB.wait(t, fmt.Sprintf("B completes entry %d", id), entryKind(id, relay.EventDone))
		evA.wait(t, fmt.Sprintf("A's completion of entry %d rejected", id), entryKind(id, relay.EventFenced))
	}
	stopA()
	stopB()

	log.mu.Lock()
	defer log.mu.Unlock()
	var lags []time.Duration
	for _, id := range holds {
		if !errors.Is(log.cause[id], relay.ErrLeaseLost) {
			t.Errorf("entry %d: A's handler context ended with %v, want ErrLeaseLost", id, log.cause[id])
		}
		if _, ok := log.cancelled[id]; !ok {
			continue
		}
		// How long A's handler ran on after B had started the entry (B's
		// transactional handler itself waits for A's transaction to end:
		// the processed key A inserted is locked until then).
		_, startedB, _ := evB.find(entryKind(id, relay.EventStarted))
		lag := log.cancelled[id].Sub(startedB)
		lags = append(lags, lag)
		if lag > heartbeat+scaled(time.Second) {
			t.Errorf("entry %d: A's handler was cancelled %s after B started the entry; want at most about one heartbeat (%s)", id, lag.Round(time.Millisecond), heartbeat)
		}
		if _, _, ok := evA.find(entryKind(id, relay.EventLeaseLost)); !ok {
			t.Errorf("entry %d: no EventLeaseLost from A", id)
		}
		if log.runsB[id] != 1 {
			t.Errorf("entry %d: B ran it %d times", id, log.runsB[id])
		}
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state <> 'done' OR attempt <> 2`); n != 0 {
		t.Fatalf("%d entries not done on attempt 2 (A's attempt 1 fenced, B's attempt 2 done)", n)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects`); n != 3 ||
		scalar[int64](t, db.Pool, `SELECT count(DISTINCT entry_id) FROM effects WHERE relay = 'relay-b' AND attempt = 2`) != 3 {
		t.Fatalf("%d effects; want exactly one per transactional entry, by B's attempt 2", n)
	}
	t.Logf("A's handlers ran on after B started the entry by: %s (heartbeat %s, lease %s)", quantiles(lags), heartbeat, lease)
}

// Relay A's connections go through a proxy that drops every connection
// again and again under load, then partitions A from the database (drops
// and refuses connections) for longer than a lease, then stalls it for
// longer than a lease, while relay B works directly. Nothing is lost, the
// transactional effects happen exactly once, no entry runs twice at the
// same time, and an entry runs twice only when a relay lost it (its lease
// lost, or its outcome fenced).
func TestDroppedAndPartitionedConnections(t *testing.T) {
	t.Parallel()
	rounds := dropRounds.get(t)
	rng := seededRand(t)
	db := newDB(t)
	ctx := context.Background()
	px := newProxy(t, fmt.Sprintf("127.0.0.1:%d", cluster(t).Port()))
	viaProxy := strings.Replace(db.URL, fmt.Sprintf(":%d/", cluster(t).Port()), fmt.Sprintf(":%d/", px.port()), 1)
	marks := openPool(t, db.URL, "marks", 8) // the handlers' "outside world" stays reachable

	logTimeScale(t)
	lease := scaled(time.Second)
	cfg := func(id string, h *relay.Handlers, obs relay.Observer, workers int) relay.Config {
		return relay.Config{
			Handlers: h, ID: id, Observer: obs, Logger: logger(),
			Queues:        map[string]relay.QueueConfig{"default": {MaxWorkers: workers}},
			LeaseDuration: lease, RescueInterval: scaled(100 * time.Millisecond),
			PollInterval: 50 * time.Millisecond, RetentionInterval: -1, ShutdownTimeout: scaled(2 * time.Second),
			RetryPolicy: noRetryDelay,
		}
	}
	evA := &events{}
	hA := relay.NewHandlers()
	relay.HandleTx(hA, writeEffect("relay-a"))
	relay.Handle(hA, markRuns(marks, "relay-a"))
	stopA := runRelay(t, openPool(t, viaProxy, "relay-a", 12), cfg("relay-a", hA, evA, 16))
	hB := relay.NewHandlers()
	relay.HandleTx(hB, writeEffect("relay-b"))
	relay.Handle(hB, markRuns(marks, "relay-b"))
	evB := &events{}
	stopB := runRelay(t, openPool(t, db.URL, "relay-b", 6), cfg("relay-b", hB, evB, 4))

	// A producer commits entries of both kinds until the faults are over.
	stopProducing := make(chan struct{})
	produced := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stopProducing:
				produced <- n
				return
			default:
			}
			items := make([]outbox.Item, 0, 10)
			for range 5 {
				items = append(items, outbox.NewItem(txWork{N: n}), outbox.NewItem(runWork{N: n, SleepUS: 500}))
				n++
			}
			if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
				t.Errorf("enqueue: %v", err)
				produced <- n
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	finished := func() int64 {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'done'`)
	}
	progress := func(what string) {
		before := finished()
		waitUntil(t, what, 20*time.Millisecond, func() bool { return finished() > before+30 })
	}

	dropped := 0
	for r := range rounds {
		progress(fmt.Sprintf("progress before drop %d", r+1))
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		dropped += px.drop()
	}
	progress("progress before the partition")
	// Make sure A holds an entry when the partition starts: slow entries
	// (longer than the lease) until A runs one. Without it, A may have
	// finished everything it held the moment the traffic stops.
	longN := 1_000_000
	holding := func() bool {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM runs r JOIN outbox_entries e ON e.id = r.entry_id
			WHERE r.relay = 'relay-a' AND r.finished_at IS NULL AND (e.payload->>'n')::int >= 1000000`) > 0
	}
	giveUp := time.Now().Add(hangGuard())
	for !holding() {
		if time.Now().After(giveUp) {
			t.Fatalf("A held none of the %d slow entries after %s", longN-1_000_000, hangGuard())
		}
		if _, err := outbox.Enqueue(ctx, db.Pool, runWork{N: longN, SleepUS: int(lease.Microseconds() * 3 / 2)}); err != nil {
			t.Fatal(err)
		}
		longN++
		deadline := time.Now().Add(lease)
		for !holding() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	dropped += px.partition()
	time.Sleep(lease * 5 / 2)
	px.heal()
	progress("progress before the stall")
	px.stall()
	time.Sleep(lease * 5 / 2)
	px.heal()
	progress("progress after the stall")
	close(stopProducing)
	txEntries := <-produced
	total := txEntries*2 + (longN - 1_000_000)
	waitSettled(t, db.Pool)
	stopA()
	stopB()

	states, summary := stateCounts(t, db.Pool)
	if states["done"] != int64(total) {
		t.Fatalf("%d entries enqueued; states: %s", total, summary)
	}
	effects := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects`)
	distinct := scalar[int64](t, db.Pool, `SELECT count(DISTINCT entry_id) FROM effects`)
	if effects != int64(txEntries) || distinct != effects {
		t.Fatalf("%d effects for %d distinct entries; want exactly one for each of %d", effects, distinct, txEntries)
	}
	checkNoOverlap(t, db.Pool, false, evA, evB)
	// A relay lost an entry if it saw its lease go, or if its outcome was
	// rejected: when renewals fail until the lease has expired in the
	// database, the outcome may be written (and fenced) before the relay's
	// next heartbeat tick would have noticed.
	lostOrFenced := func(e relay.Event) bool { return e.Kind == relay.EventLeaseLost || e.Kind == relay.EventFenced }
	lost := map[int64]bool{}
	for _, id := range append(evA.ids(lostOrFenced), evB.ids(lostOrFenced)...) {
		lost[id] = true
	}
	rows, err := db.Pool.Query(ctx, `SELECT entry_id, count(*) FROM runs GROUP BY entry_id HAVING count(*) > 1`)
	if err != nil {
		t.Fatal(err)
	}
	reruns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		ID int64
		N  int64
	}])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reruns {
		if !lost[r.ID] {
			runs := scalar[string](t, db.Pool, `SELECT string_agg(format('%s attempt %s %s–%s', relay, attempt, started_at::time, finished_at::time), '; ' ORDER BY run_id)
				FROM runs WHERE entry_id = $1`, r.ID)
			t.Errorf("entry %d ran %d times (%s; last error %q), but no relay lost its lease on it or had its outcome fenced", r.ID, r.N, runs,
				scalar[string](t, db.Pool, `SELECT coalesce(last_error, '') FROM outbox_entries WHERE id = $1`, r.ID))
		}
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries e WHERE topic = 'fault.run'
		AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.entry_id = e.id)`); n != 0 {
		t.Fatalf("%d plain entries done without a run", n)
	}
	t.Logf("%d entries; %d drop rounds closed %d connections; then a partition and a stall of %s each", total, rounds, dropped, lease*5/2)
	t.Logf("A: %d errors retried, %d leases lost, %d outcomes fenced, listener up %d times; %d entries ran twice (each after a relay lost it); effects exactly once; no run overlapped another of its entry",
		evA.count(kind(relay.EventError)), len(evA.ids(kind(relay.EventLeaseLost))), evA.count(kind(relay.EventFenced)), evA.count(kind(relay.EventListenerUp)), len(reruns))
	if evA.count(kind(relay.EventListenerUp)) < 2 {
		t.Error("A's listener never came back after its connection was dropped")
	}
	// Which of the two shows up depends on timing: the heartbeat notices the
	// loss (EventLeaseLost), or an outcome reaches the database first and is
	// rejected (EventFenced). Either way A must have lost entries.
	if len(evA.ids(lostOrFenced)) == 0 {
		t.Error("A neither lost a lease nor had an outcome fenced in a partition and a stall longer than the lease")
	}
}

// checkNoOverlap fails t if two runs of one entry overlapped in time, or
// if a run never finished while no relay was killed (a killed relay's run
// ends at the kill, unrecorded). evs, the in-process relays' events, if
// any, describe the unfinished runs' entries.
func checkNoOverlap(t testing.TB, pool *pgxpool.Pool, killed bool, evs ...*events) {
	t.Helper()
	if n := scalar[int64](t, pool, `SELECT count(*) FROM runs WHERE finished_at IS NULL`); n != 0 && !killed {
		t.Errorf("%d runs never finished:\n%s", n, describeUnfinished(t, pool, evs))
	}
	rows, err := pool.Query(context.Background(), `
		SELECT a.entry_id, a.relay, a.attempt, b.relay, b.attempt,
		       extract(epoch FROM least(a.finished_at, b.finished_at) - b.started_at) * 1000
		FROM runs a JOIN runs b ON a.entry_id = b.entry_id AND a.run_id < b.run_id
		WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at
		ORDER BY a.entry_id LIMIT 20`)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for rows.Next() {
		var id int64
		var ra, rb string
		var aa, ab int32
		var ms float64
		if err := rows.Scan(&id, &ra, &aa, &rb, &ab, &ms); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, fmt.Sprintf("entry %d: %s attempt %d and %s attempt %d overlapped by %.1fms", id, ra, aa, rb, ab, ms))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("runs of one entry overlapped:\n%s", strings.Join(bad, "\n"))
	}
}

func enqueueOne(t testing.TB, pool *pgxpool.Pool, msg outbox.Message, opts ...outbox.Option) int64 {
	t.Helper()
	res, err := outbox.Enqueue(context.Background(), pool, msg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// describeUnfinished lists the runs that have no finish, with their
// entry's state now and what the relays in evs reported about the entry.
func describeUnfinished(t testing.TB, pool *pgxpool.Pool, evs []*events) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT r.run_id, r.entry_id, r.attempt, r.relay, r.started_at::time::text,
		       e.state, e.attempt, coalesce(e.lease_owner, ''), coalesce(e.last_error, '')
		FROM runs r JOIN outbox_entries e ON e.id = r.entry_id
		WHERE r.finished_at IS NULL ORDER BY r.run_id LIMIT 20`)
	if err != nil {
		return err.Error()
	}
	type run struct {
		RunID, EntryID      int64
		Attempt             int32
		Relay, Started      string
		State               string
		EntryAttempt        int32
		LeaseOwner, LastErr string
	}
	runs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[run])
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "run %d: entry %d attempt %d by %s, started %s; the entry is %s on attempt %d (lease owner %q, last error %q)\n",
			r.RunID, r.EntryID, r.Attempt, r.Relay, r.Started, r.State, r.EntryAttempt, r.LeaseOwner, r.LastErr)
		for i, e := range evs {
			for _, line := range e.history(r.EntryID) {
				fmt.Fprintf(&b, "  relay %c: %s\n", 'A'+i, line)
			}
		}
	}
	return b.String()
}

// leasesUntil returns the lease expiry of each of ids (zero when the entry
// has none).
func leasesUntil(t testing.TB, pool *pgxpool.Pool, ids []int64) map[int64]time.Time {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, lease_until FROM outbox_entries WHERE id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	m := map[int64]time.Time{}
	for rows.Next() {
		var id int64
		var until pgtype.Timestamptz
		if err := rows.Scan(&id, &until); err != nil {
			t.Fatal(err)
		}
		m[id] = until.Time
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
