package faultsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/outbox"
)

// A relay process is killed with SIGKILL at random moments while it works
// through entries of two kinds, a transactional handler (one effects row
// per entry) and webhooks to a receiver in the test, and each time a new
// process takes over. Afterwards every entry is done, or dead where the
// test made it fail on purpose; the transactional effects happened exactly
// once; and the receiver saw each webhook at least once, always with the
// entry's key as webhook-id and the same signed body, and a second time
// only for entries that the killed process held at the moment of a kill.
// The webhook handler is registered with relay.WithOutcomeBeforeNext, so a
// kill repeats at most one webhook per worker of the "ext" queue: there are
// at most workers × kills duplicates (kills, with the default one worker).
func TestRelayKilledAtRandomMoments(t *testing.T) {
	n, kills, extWorkers := killEntries.get(t), killCount.get(t), killExtWorkers.get(t)
	rng := seededRand(t)
	logTimeScale(t)
	db := newDB(t)
	recv := newReceiver(t)
	ctx := context.Background()

	// One entry in ten: a plain handler under one of 8 ordering keys, one
	// in five of them failing on its first attempt. Of the rest, even n:
	// transactional, one in 50 of them failing permanently; odd n: a
	// webhook in the "ext" queue. Ids interleave the kinds.
	const orderingKeys = 8
	var txCount, failCount, extCount, keyedCount, failOnceCount int
	seqs := make([]int, orderingKeys)
	items := make([]outbox.Item, 0, 1000)
	flush := func() {
		if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
			t.Fatal(err)
		}
		items = items[:0]
	}
	for i := range n {
		if i%10 == 9 {
			k := (i / 10) % orderingKeys
			seqs[k]++
			okey := fmt.Sprintf("order-%d", k)
			failOnce := seqs[k]%5 == 0
			if failOnce {
				failOnceCount++
			}
			keyedCount++
			items = append(items, outbox.NewItem(runWork{N: i, Key: okey, Seq: seqs[k], SleepUS: 500, FailOnce: failOnce},
				outbox.WithKey(fmt.Sprintf("run-%d", i)), outbox.WithOrderingKey(okey)))
		} else if i%2 == 0 {
			fail := i%100 == 50
			if fail {
				failCount++
			}
			txCount++
			items = append(items, outbox.NewItem(txWork{N: i, Fail: fail}, outbox.WithKey(fmt.Sprintf("tx-%d", i))))
		} else {
			extCount++
			items = append(items, outbox.NewItem(webhook.Event{
				Endpoint: "recv", Type: "fault.ext", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
			}, outbox.WithKey(fmt.Sprintf("ext-%d", i)), outbox.WithQueue("ext")))
		}
		if len(items) == cap(items) {
			flush()
		}
	}
	if len(items) > 0 {
		flush()
	}

	// Kill moments: one per slice of the work, at a random point of it,
	// plus a random delay of up to 50ms after that point is seen.
	thresholds := make([]int64, kills)
	for i := range thresholds {
		thresholds[i] = int64((float64(i) + 0.1 + 0.8*rng.Float64()) * float64(n) / float64(kills))
	}
	cfg := childConfig{
		URL: db.URL, MaxConns: 24,
		Queues:  map[string]int{"default": 16, "ext": extWorkers},
		LeaseMS: int(scaled(time.Second).Milliseconds()), PollMS: 100,
		Tx: true, Runs: true, WebhookURL: recv.srv.URL, WebhookSecret: recv.secret,
		WebhookOutcomeBeforeNext: true,
	}
	generation := 0
	start := func() *child {
		cfg.ID = fmt.Sprintf("kill-relay-%d", generation)
		generation++
		return startChild(t, cfg)
	}
	finished := func() int64 {
		return scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state IN ('done', 'dead')`)
	}

	began := time.Now()
	proc := start()
	orphanedExt := map[int64]bool{} // webhook entries a killed process held
	heldAny := map[int64]int32{}    // all entries a killed process held, with the attempt it held
	orphaned := 0
	for k, at := range thresholds {
		waitUntil(t, fmt.Sprintf("%d entries finished before kill %d", at, k+1), 20*time.Millisecond, func() bool { return finished() >= at })
		jitter := time.Duration(rng.IntN(50)) * time.Millisecond
		time.Sleep(jitter)
		progress := finished()
		proc.kill(t)
		// Statements the process sent before it died still run to their
		// end on the server (a completion batch commits): wait for its
		// sessions to go. Then nothing runs, and what is still marked as
		// the process's own is exactly what it took with it.
		waitUntil(t, "the killed relay's sessions to end", 5*time.Millisecond, func() bool {
			return scalar[int64](t, db.Pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, proc.name) == 0
		})
		rows, err := db.Pool.Query(ctx, `SELECT id, topic, attempt FROM outbox_entries WHERE state = 'running' AND lease_owner = $1`, proc.name)
		if err != nil {
			t.Fatal(err)
		}
		held, ext := 0, 0
		for rows.Next() {
			var id int64
			var topic string
			var attempt int32
			if err := rows.Scan(&id, &topic, &attempt); err != nil {
				t.Fatal(err)
			}
			held++
			heldAny[id] = attempt
			if topic == webhook.Topic {
				ext++
				orphanedExt[id] = true
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		orphaned += held
		down := time.Duration(rng.IntN(200)) * time.Millisecond
		t.Logf("kill %2d: SIGKILL at %d/%d finished (+%s), it held %d entries (%d webhooks); restart after %s",
			k+1, progress, n, jitter, held, ext, down)
		time.Sleep(down)
		proc = start()
	}
	waitSettled(t, db.Pool)
	elapsed := time.Since(began)
	proc.stop(t)

	// Every entry done, or dead by design with the reason.
	states, summary := stateCounts(t, db.Pool)
	if states["done"] != int64(n-failCount) || states["dead"] != int64(failCount) {
		t.Fatalf("states: %s; want done %d, dead %d", summary, n-failCount, failCount)
	}
	if bad := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries
		WHERE (state = 'dead') <> coalesce((payload->>'fail')::bool, false)
		   OR (state = 'dead' AND last_error NOT LIKE '%poison by design%')`); bad != 0 {
		t.Fatalf("%d entries dead without being made to fail, or with another reason", bad)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries e WHERE state = 'done'
		AND NOT EXISTS (SELECT 1 FROM outbox_processed_keys k WHERE k.scope = e.topic AND k.key = e.key)`); n != 0 {
		t.Fatalf("%d done entries without their processed key", n)
	}

	// Transactional effects: exactly one per healthy entry, none for the
	// failing ones.
	effects := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects`)
	distinct := scalar[int64](t, db.Pool, `SELECT count(DISTINCT entry_id) FROM effects`)
	wrong := scalar[int64](t, db.Pool, `SELECT count(*) FROM effects f JOIN outbox_entries e ON e.id = f.entry_id
		WHERE e.state <> 'done' OR e.topic <> 'fault.tx'`)
	if healthy := int64(txCount - failCount); effects != healthy || distinct != healthy || wrong != 0 {
		t.Fatalf("%d effects (%d distinct entries, %d of entries not done), want exactly one for each of %d healthy entries", effects, distinct, wrong, healthy)
	}

	// Every entry a killed process held ran again; other entries ran
	// again only when made to fail once, or if their lease expired while
	// their relay lived (a relay starved of CPU for a lease: not expected,
	// but not wrong).
	rows, err := db.Pool.Query(ctx, `SELECT id, attempt, coalesce((payload->>'fail_once')::bool, false) FROM outbox_entries`)
	if err != nil {
		t.Fatal(err)
	}
	attempts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		ID       int64
		Attempt  int32
		FailOnce bool
	}])
	if err != nil {
		t.Fatal(err)
	}
	rerun := map[int64]bool{} // ran again without a kill
	var spurious []int64
	for _, a := range attempts {
		if at, ok := heldAny[a.ID]; ok {
			if a.Attempt <= at {
				t.Errorf("entry %d was held by a killed relay on attempt %d but never ran again", a.ID, at)
			}
			continue
		}
		expected := int32(1)
		if a.FailOnce {
			expected = 2
		}
		if a.Attempt > expected {
			rerun[a.ID] = true
			spurious = append(spurious, a.ID)
		}
	}
	if len(spurious) > 0 {
		t.Logf("%d entries ran again without a kill (their lease expired while their relay lived): %v", len(spurious), spurious[:min(10, len(spurious))])
	}

	// Webhooks: every one received, always with its key and body; a second
	// delivery only for entries a killed process held.
	idOf := map[int]int64{}
	rows, err = db.Pool.Query(ctx, `SELECT id, key FROM outbox_entries WHERE topic = $1`, webhook.Topic)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var key string
		if err := rows.Scan(&id, &key); err != nil {
			t.Fatal(err)
		}
		var i int
		if _, err := fmt.Sscanf(key, "ext-%d", &i); err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		idOf[i] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.bad) > 0 {
		t.Fatalf("%d deliveries failed verification, e.g. %s", len(recv.bad), recv.bad[0])
	}
	duplicates := 0
	var problems, unexplained []string
	for i, id := range idOf {
		got := recv.deliveries[i]
		if len(got) == 0 {
			problems = append(problems, fmt.Sprintf("ext-%d (entry %d) never delivered", i, id))
			continue
		}
		for _, d := range got {
			if d.id != fmt.Sprintf("ext-%d", i) || d.body != got[0].body {
				problems = append(problems, fmt.Sprintf("ext-%d delivered as %q with body %s (first: %s)", i, d.id, d.body, got[0].body))
			}
		}
		if len(got) > 1 {
			duplicates += len(got) - 1
			if !orphanedExt[id] && !rerun[id] {
				unexplained = append(unexplained, fmt.Sprintf("ext-%d (entry %d) ×%d", i, id, len(got)))
			}
		}
	}
	if len(recv.deliveries) != len(idOf) {
		problems = append(problems, fmt.Sprintf("deliveries for %d distinct events, want %d", len(recv.deliveries), len(idOf)))
	}
	sort.Strings(problems)
	sort.Strings(unexplained)
	if len(problems) > 0 {
		t.Fatalf("%d webhook problems:\n%s", len(problems), strings.Join(problems[:min(20, len(problems))], "\n"))
	}
	if len(unexplained) > 0 {
		t.Errorf("%d webhooks delivered more than once without a kill while their entry ran: %s", len(unexplained), strings.Join(unexplained[:min(20, len(unexplained))], ", "))
	}
	if duplicates > len(orphanedExt)+len(spurious) {
		t.Errorf("%d duplicate deliveries, more than the %d webhook entries killed processes held (and %d entries re-run without a kill)", duplicates, len(orphanedExt), len(spurious))
	}
	// The bound: each kill repeats at most one finished webhook per
	// worker, the one whose outcome had not been committed yet.
	dupBound := extWorkers * kills
	if duplicates > dupBound {
		t.Errorf("%d duplicate deliveries, more than %d workers × %d kills = %d", duplicates, extWorkers, kills, dupBound)
	}

	// Ordering keys: in order across kills, rescues and retries; no run
	// overlapped another of its entry (a killed relay's run has no
	// recorded end: it ended at the kill).
	checkKeyOrder(t, db.Pool)
	checkNoOverlap(t, db.Pool, true)
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_entries e WHERE topic = 'fault.run'
		AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.entry_id = e.id AND r.finished_at IS NOT NULL)`); n != 0 {
		t.Errorf("%d keyed entries done without a finished run", n)
	}
	cut := scalar[int64](t, db.Pool, `SELECT count(*) FROM runs WHERE finished_at IS NULL`)

	maxAttempt := scalar[int32](t, db.Pool, `SELECT max(attempt) FROM outbox_entries`)
	t.Logf("%d entries (%d transactional, %d of them dead by design; %d webhooks, %d external workers; %d under %d ordering keys, %d failing once) through %d SIGKILLs in %s (%.0f entries/s)",
		n, txCount, failCount, extCount, extWorkers, keyedCount, orderingKeys, failOnceCount, kills, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	t.Logf("%d keyed runs were cut short by a kill; per-key order held across kills, rescues and retries", cut)
	t.Logf("killed processes held %d entries (%d webhooks), all ran again; %d ran again without a kill; max attempt %d; transactional effects exactly once; %d duplicate webhook deliveries (bound: %d held webhooks; %d kills)",
		orphaned, len(orphanedExt), len(spurious), maxAttempt, duplicates, len(orphanedExt), kills)
	t.Logf("webhook duplicates: %d; bound (WithOutcomeBeforeNext): %d workers × %d kills = %d",
		duplicates, extWorkers, kills, dupBound)
}
