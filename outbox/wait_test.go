package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// These tests complete entries with the relay's own statements
// (internal/store), so that they exercise the notifications a relay sends
// without running one; relay, progress and dashboard tests do it end to end.

// noPoll is a poll interval no test lasts: a waiter that returns was woken
// by a notification.
const noPoll = time.Hour

// waitGuard bounds waits in these tests: a hang guard, not a timing
// assertion.
const waitGuard = time.Minute

// claim leases every due entry of the default queue with the relay's claim.
func claim(t *testing.T, pool *pgxpool.Pool, topics ...string) []store.Claimed {
	t.Helper()
	c, _, err := store.Claim(t.Context(), pool, store.ClaimParams{
		Queue: outbox.DefaultQueue, Topics: topics, Limit: 1000, Lease: time.Minute, Owner: "test",
	})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return c
}

// complete writes outcomes for claimed entries with the relay's completion.
func complete(t *testing.T, pool *pgxpool.Pool, claimed []store.Claimed, state string, result string) {
	t.Helper()
	outs := make([]store.Outcome, len(claimed))
	for i, c := range claimed {
		outs[i] = store.Outcome{ID: c.ID, Attempt: c.Attempt, State: state}
		if result != "" {
			outs[i].Result = []byte(result)
		}
		if state == store.StateDead {
			msg := "permanent: no such mailbox"
			outs[i].Error = &msg
		}
	}
	applied, err := store.Complete(t.Context(), pool, nil, outs)
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	if len(applied) != len(claimed) {
		t.Fatalf("complete applied %d of %d outcomes", len(applied), len(claimed))
	}
}

// waiterPool is a one-connection pool whose sessions are named, so a test
// can see in pg_stat_activity when the waiter sits waiting.
func waiterPool(t *testing.T, db *outboxtest.DB, name string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// awaitIdleAfterRead waits until the session named name is idle after
// reading an entry: a waiter blocked on its notifications.
func awaitIdleAfterRead(t *testing.T, db *outboxtest.DB, name string) {
	t.Helper()
	deadline := time.Now().Add(waitGuard)
	for time.Now().Before(deadline) {
		var n int
		err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'idle' AND query LIKE '%FROM outbox_entries e WHERE e.id = $1%'`, name).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the waiter never sat waiting")
}

func TestWaitWakesOnTheRelaysNotification(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	res, err := outbox.Enqueue(t.Context(), db.Pool, signup{UserID: 1, Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	waiter := waiterPool(t, db, "waiter-done")
	type got struct {
		e   *outbox.Entry
		err error
	}
	ch := make(chan got, 1)
	ctx, cancel := context.WithTimeout(t.Context(), waitGuard)
	defer cancel()
	go func() {
		e, err := outbox.WaitWithPoll(ctx, waiter, res.ID, noPoll)
		ch <- got{e, err}
	}()
	awaitIdleAfterRead(t, db, "waiter-done")
	complete(t, db.Pool, claim(t, db.Pool, "user.signup"), store.StateDone, `{"location":"exports/1.csv"}`)
	r := <-ch
	if r.err != nil {
		t.Fatalf("Wait: %v", r.err)
	}
	if r.e.State != outbox.StateDone || string(r.e.Result) != `{"location": "exports/1.csv"}` {
		t.Fatalf("Wait returned state %s result %s", r.e.State, r.e.Result)
	}

	// The connection went back to the pool listening on nothing.
	var channels int
	if err := waiter.QueryRow(t.Context(), `SELECT count(*) FROM pg_listening_channels()`).Scan(&channels); err != nil {
		t.Fatal(err)
	}
	if channels != 0 {
		t.Errorf("the pooled connection still listens on %d channels", channels)
	}
}

func TestWaitReturnsDeadEntries(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	res, err := outbox.Enqueue(t.Context(), db.Pool, signup{UserID: 2})
	if err != nil {
		t.Fatal(err)
	}
	waiter := waiterPool(t, db, "waiter-dead")
	ch := make(chan *outbox.Entry, 1)
	errs := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), waitGuard)
	defer cancel()
	go func() {
		e, err := outbox.WaitWithPoll(ctx, waiter, res.ID, noPoll)
		ch <- e
		errs <- err
	}()
	awaitIdleAfterRead(t, db, "waiter-dead")
	complete(t, db.Pool, claim(t, db.Pool, "user.signup"), store.StateDead, "")
	e := <-ch
	if err := <-errs; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if e.State != outbox.StateDead || e.LastError == nil || !strings.Contains(*e.LastError, "no such mailbox") {
		t.Fatalf("Wait returned %+v", e)
	}
}

func TestWaitErrors(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	if _, err := outbox.Wait(t.Context(), db.Pool, 424242); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Wait for a missing entry: %v, want ErrNotFound", err)
	}
	if _, err := outbox.Wait(t.Context(), nil, 1); !errors.Is(err, outbox.ErrNilQuerier) {
		t.Errorf("Wait with a nil pool: %v, want ErrNilQuerier", err)
	}
	res, err := outbox.Enqueue(t.Context(), db.Pool, signup{UserID: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = outbox.Wait(ctx, db.Pool, res.ID)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for entry") {
		t.Errorf("Wait past its deadline: %v, want a wrapped DeadlineExceeded", err)
	}
}

// startWatcher runs a watcher until the test ends and waits until it
// listens.
func startWatcher(t *testing.T, pool *pgxpool.Pool, poll time.Duration) *outbox.Watcher {
	t.Helper()
	w, err := outbox.NewWatcher(pool, outbox.WatcherConfig{PollInterval: poll, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watcher.Run: %v", err)
		}
	})
	deadline := time.Now().Add(waitGuard)
	for !w.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("the watcher never listened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Run(ctx); !errors.Is(err, outbox.ErrWatcherRunning) {
		t.Errorf("second Run: %v, want ErrWatcherRunning", err)
	}
	return w
}

// takeUntil collects the ids a subscription announces until it has all of
// want.
func takeUntil(t *testing.T, sub *outbox.Subscription, want ...int64) []int64 {
	t.Helper()
	timer := time.NewTimer(waitGuard)
	defer timer.Stop()
	var got []int64
	for {
		missing := false
		for _, id := range want {
			if !slices.Contains(got, id) {
				missing = true
			}
		}
		if !missing {
			slices.Sort(got)
			return got
		}
		select {
		case <-sub.Changed():
			ids, _ := sub.Take()
			got = append(got, ids...)
		case <-timer.C:
			t.Fatalf("announced %v, want %v", got, want)
		}
	}
}

func TestWatcherFollowsEntriesAndCorrelations(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	w := startWatcher(t, db.Pool, noPoll)

	var ids []int64
	for i, corr := range []string{"export-1", "export-1", "export-2"} {
		res, err := outbox.Enqueue(t.Context(), db.Pool, signup{UserID: int64(i)}, outbox.WithCorrelationID(corr))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	plain, err := outbox.Enqueue(t.Context(), db.Pool, audit{Action: "x"})
	if err != nil {
		t.Fatal(err)
	}
	one := w.Follow(ids[2])
	defer one.Close()
	corr := w.FollowCorrelation("export-1")
	defer corr.Close()
	other := w.FollowCorrelation("export-9")
	defer other.Close()

	complete(t, db.Pool, claim(t, db.Pool, "user.signup", "audit.log"), store.StateDone, "")
	if got := takeUntil(t, corr, ids[0], ids[1]); !slices.Equal(got, ids[:2]) {
		t.Errorf("correlation export-1 announced %v, want %v", got, ids[:2])
	}
	if got := takeUntil(t, one, ids[2]); !slices.Equal(got, []int64{ids[2]}) {
		t.Errorf("entry %d announced %v", ids[2], got)
	}
	// All four completed in one statement, hence one notification, fully
	// dispatched before the subscriptions above were woken: nothing for
	// export-9, nor for the plain entry.
	if ids, all := other.Take(); len(ids) != 0 || all {
		t.Errorf("correlation export-9 announced %v (all %v)", ids, all)
	}
	_ = plain

	e, err := w.Wait(t.Context(), ids[0])
	if err != nil || e.State != outbox.StateDone {
		t.Fatalf("Watcher.Wait on a done entry: %v, %v", e, err)
	}
	if _, err := w.Wait(t.Context(), 999999); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Watcher.Wait on a missing entry: %v", err)
	}
}

func TestWatcherWaitWakesOnNotification(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	w := startWatcher(t, db.Pool, noPoll)
	res, err := outbox.Enqueue(t.Context(), db.Pool, signup{UserID: 7})
	if err != nil {
		t.Fatal(err)
	}
	// A follower registered before the completion, like Wait's own, sees
	// it announced; Wait (polling hourly) returns it.
	sub := w.Follow(res.ID)
	defer sub.Close()
	ch := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), waitGuard)
	defer cancel()
	go func() {
		e, err := w.Wait(ctx, res.ID)
		if err == nil && e.State != outbox.StateDone {
			err = errors.New("state " + string(e.State))
		}
		ch <- err
	}()
	complete(t, db.Pool, claim(t, db.Pool, "user.signup"), store.StateDone, "")
	takeUntil(t, sub, res.ID)
	if err := <-ch; err != nil {
		t.Fatalf("Watcher.Wait: %v", err)
	}
}

// TestRelayStatementsAnnounceProgress checks the notification contract:
// every outcome the relay writes is announced on ProgressChannel, in
// payloads of comma-separated ids that stay under Postgres's 8,000-byte
// limit however large the batch, and only at commit.
func TestRelayStatementsAnnounceProgress(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	conn, err := pgx.Connect(t.Context(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "LISTEN "+outbox.ProgressChannel); err != nil {
		t.Fatal(err)
	}
	items := make([]outbox.Item, 700)
	for i := range items {
		items[i] = outbox.NewItem(signup{UserID: int64(i)})
	}
	if _, err := outbox.EnqueueBatch(t.Context(), db.Pool, items); err != nil {
		t.Fatal(err)
	}
	claimed := claim(t, db.Pool, "user.signup")
	complete(t, db.Pool, claimed, store.StateDone, "")
	announced := map[int64]bool{}
	notes := 0
	for len(announced) < len(claimed) {
		ctx, cancel := context.WithTimeout(t.Context(), waitGuard)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d notifications (%d ids): %v", notes, len(announced), err)
		}
		notes++
		if len(n.Payload) >= 8000 {
			t.Errorf("payload of %d bytes", len(n.Payload))
		}
		for _, s := range strings.Split(n.Payload, ",") {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("payload %q: %v", n.Payload, err)
			}
			announced[id] = true
		}
	}
	if notes != 3 { // 700 ids, 300 a notification
		t.Errorf("%d notifications for 700 outcomes, want 3", notes)
	}

	// The transactional handler's completion: announced at commit only.
	res, err := outbox.Enqueue(t.Context(), db.Pool, audit{Action: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	c := claim(t, db.Pool, "audit.log")[0]
	tx, err := db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ok, err := store.CompleteOneTx(t.Context(), tx, nil, c.ID, c.Attempt, nil)
	if err != nil || !ok {
		t.Fatalf("CompleteOneTx: %v, %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	if n, err := conn.WaitForNotification(ctx); err == nil {
		t.Errorf("notification %q before commit", n.Payload)
	}
	cancel()
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	expectNotification(t, conn, res.ID)

	// A rescued entry (its relay died): announced too.
	res, err = outbox.Enqueue(t.Context(), db.Pool, audit{Action: "rescued"})
	if err != nil {
		t.Fatal(err)
	}
	claim(t, db.Pool, "audit.log")
	if _, err := db.Pool.Exec(t.Context(), `UPDATE outbox_entries SET lease_until = now() - interval '1 second' WHERE id = $1`, res.ID); err != nil {
		t.Fatal(err)
	}
	rescued, err := store.Rescue(t.Context(), db.Pool, nil, 100)
	if err != nil || len(rescued) != 1 {
		t.Fatalf("Rescue: %v, %v", rescued, err)
	}
	expectNotification(t, conn, res.ID)
}

func expectNotification(t *testing.T, conn *pgx.Conn, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitGuard)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("no notification for entry %d: %v", id, err)
	}
	if n.Payload != strconv.FormatInt(id, 10) {
		t.Fatalf("notification %q, want %d", n.Payload, id)
	}
}

func TestProducerHeadersFromContext(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	type key struct{}
	p := outbox.Producer{Headers: func(ctx context.Context) map[string]string {
		v, _ := ctx.Value(key{}).(string)
		return map[string]string{"traceparent": v, "team": "from-context"}
	}}
	ctx := context.WithValue(t.Context(), key{}, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	one, err := p.Enqueue(ctx, db.Pool, signup{UserID: 1}, outbox.WithHeaders(map[string]string{"team": "from-option"}))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := p.EnqueueBatch(ctx, db.Pool, []outbox.Item{outbox.NewItem(signup{UserID: 2}), outbox.NewItem(signup{UserID: 3})})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{one.ID, batch[0].ID, batch[1].ID} {
		e, err := outbox.Get(t.Context(), db.Pool, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Headers["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
			t.Errorf("entry %d headers %v, want the context's traceparent", id, e.Headers)
		}
		want := "from-context"
		if id == one.ID {
			want = "from-option" // options win
		}
		if e.Headers["team"] != want {
			t.Errorf("entry %d team header %q, want %q", id, e.Headers["team"], want)
		}
	}
}

func TestListByCorrelationAndGetMany(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	var mine []int64
	for i := range 3 {
		corr := "report-17"
		if i == 1 {
			corr = "report-18"
		}
		res, err := outbox.Enqueue(t.Context(), db.Pool, signup{UserID: int64(i)}, outbox.WithCorrelationID(corr))
		if err != nil {
			t.Fatal(err)
		}
		if corr == "report-17" {
			mine = append(mine, res.ID)
		}
	}
	// A plain SQL producer sets the header itself.
	var sqlID int64
	if err := db.Pool.QueryRow(t.Context(), `INSERT INTO outbox_entries (topic, headers)
		VALUES ('user.signup', '{"correlation_id": "report-17"}') RETURNING id`).Scan(&sqlID); err != nil {
		t.Fatal(err)
	}
	mine = append(mine, sqlID)
	got, err := outbox.ListByCorrelation(t.Context(), db.Pool, "report-17", 0)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []int64
	for _, e := range got {
		gotIDs = append(gotIDs, e.ID)
		if e.Headers[outbox.HeaderCorrelationID] != "report-17" {
			t.Errorf("entry %d headers %v", e.ID, e.Headers)
		}
	}
	if !slices.Equal(gotIDs, mine) {
		t.Errorf("ListByCorrelation = %v, want %v", gotIDs, mine)
	}
	if _, err := outbox.ListByCorrelation(t.Context(), db.Pool, "", 0); !errors.Is(err, outbox.ErrInvalid) {
		t.Errorf("empty correlation id: %v, want ErrInvalid", err)
	}
	many, err := outbox.GetMany(t.Context(), db.Pool, []int64{mine[1], 999999, mine[0]})
	if err != nil || len(many) != 2 || many[0].ID != mine[0] || many[1].ID != mine[1] {
		t.Errorf("GetMany = %v, %v", many, err)
	}
	if _, err := outbox.GetMany(t.Context(), db.Pool, make([]int64, outbox.MaxListLimit+1)); !errors.Is(err, outbox.ErrInvalid) {
		t.Errorf("GetMany over the limit: %v, want ErrInvalid", err)
	}
}
