package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// --- Get and GetByKey ---

// TestGetNotFound looks up entries that do not exist, through pgx and
// database/sql.
func TestGetNotFound(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	res := mustEnqueue(t, db.Pool, signup{UserID: 1}, outbox.WithKey("k"))
	for name, q := range map[string]outbox.Querier{"pgx": db.Pool, "sql": outbox.SQL(db.SQL)} {
		for _, id := range []int64{0, -1, res.ID + 1000} {
			if e, err := outbox.Get(ctx, q, id); !errors.Is(err, outbox.ErrNotFound) || e != nil {
				t.Errorf("%s: Get(%d) = %v, %v; want nil, ErrNotFound", name, id, e, err)
			}
		}
		for _, tk := range [][2]string{{"user.signup", "missing"}, {"audit.log", "k"}, {"", ""}} {
			if e, err := outbox.GetByKey(ctx, q, tk[0], tk[1]); !errors.Is(err, outbox.ErrNotFound) || e != nil {
				t.Errorf("%s: GetByKey(%q, %q) = %v, %v; want nil, ErrNotFound", name, tk[0], tk[1], e, err)
			}
		}
		if _, err := outbox.GetByKey(ctx, q, "user.signup", "k"); err != nil {
			t.Errorf("%s: GetByKey of an existing entry: %v", name, err)
		}
	}
}

// TestGetFields checks every field of a fresh entry, and that pgx and
// database/sql read the same thing.
func TestGetFields(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	res := mustEnqueue(t, tx, signup{UserID: 9, Email: "e@example.com"},
		outbox.WithKey("signup:9"), outbox.WithMaxAttempts(4),
		outbox.WithHeaders(map[string]string{"traceparent": "00-1-2-01"}))
	insertedAt := dbNow(t, tx) // now() is the transaction's timestamp
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	e := mustGet(t, db.Pool, res.ID)
	if e.ID != res.ID || e.Topic != "user.signup" || e.Key != "signup:9" || e.Queue != outbox.DefaultQueue {
		t.Errorf("identity: %+v", e)
	}
	if e.State != outbox.StatePending || e.State.Finished() || e.Attempt != 0 || e.MaxAttempts != 4 {
		t.Errorf("state %q attempt %d max attempts %d", e.State, e.Attempt, e.MaxAttempts)
	}
	if !e.CreatedAt.Equal(insertedAt) || !e.RunAt.Equal(insertedAt) {
		t.Errorf("created_at %v run_at %v, want both %v", e.CreatedAt, e.RunAt, insertedAt)
	}
	if !maps.Equal(e.Headers, map[string]string{"traceparent": "00-1-2-01"}) {
		t.Errorf("headers %v", e.Headers)
	}
	if !jsonEqual(t, e.Payload, []byte(`{"user_id":9,"email":"e@example.com"}`)) {
		t.Errorf("payload %s", e.Payload)
	}
	if e.OrderingKey != nil || e.LeaseUntil != nil || e.LeaseOwner != nil || e.LastError != nil || e.FinishedAt != nil {
		t.Errorf("unset fields are not nil: %+v", e)
	}
	// No result yet. (Entry.Result holds the JSON literal null rather than
	// nothing; accept both.)
	if len(e.Result) != 0 && string(e.Result) != "null" {
		t.Errorf("result %s, want none", e.Result)
	}

	viaSQL := mustGet(t, outbox.SQL(db.SQL), res.ID)
	byKey, err := outbox.GetByKey(ctx, outbox.SQL(db.SQL), "user.signup", "signup:9")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, viaSQL) || !reflect.DeepEqual(e, byKey) {
		t.Errorf("readers disagree:\npgx Get    %+v\nsql Get    %+v\nsql ByKey  %+v", e, viaSQL, byKey)
	}
}

// TestGetReflectsRelayState writes the states a relay would, with plain
// SQL, and reads them back.
func TestGetReflectsRelayState(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	res := mustEnqueue(t, db.Pool, signup{UserID: 1})

	exec(t, db, `UPDATE outbox_entries SET state = 'running', attempt = 1,
		lease_until = '2030-01-01T00:00:00Z', lease_owner = 'relay-1' WHERE id = $1`, res.ID)
	e := mustGet(t, db.Pool, res.ID)
	lease := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if e.State != outbox.StateRunning || e.State.Finished() || e.Attempt != 1 ||
		e.LeaseUntil == nil || !e.LeaseUntil.Equal(lease) || e.LeaseOwner == nil || *e.LeaseOwner != "relay-1" {
		t.Errorf("running entry: %+v", e)
	}

	exec(t, db, `UPDATE outbox_entries SET state = 'done', lease_until = NULL, lease_owner = NULL,
		finished_at = now(), result = '{"url":"s3://x"}' WHERE id = $1`, res.ID)
	e, err := outbox.GetByKey(ctx, db.Pool, "user.signup", mustGet(t, db.Pool, res.ID).Key)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != outbox.StateDone || !e.State.Finished() || e.FinishedAt == nil || !jsonEqual(t, e.Result, []byte(`{"url":"s3://x"}`)) {
		t.Errorf("done entry: state %q finished_at %v result %s", e.State, e.FinishedAt, e.Result)
	}
}

// TestStateFinished covers State.Finished for every state.
func TestStateFinished(t *testing.T) {
	t.Parallel()
	for s, want := range map[outbox.State]bool{
		outbox.StatePending: false, outbox.StateRunning: false,
		outbox.StateDone: true, outbox.StateDead: true, "": false,
	} {
		if got := s.Finished(); got != want {
			t.Errorf("State(%q).Finished() = %v, want %v", s, got, want)
		}
	}
}

// --- A producer in plain SQL (the sidecar case) ---

// TestPlainSQLProducer inserts with the minimal documented statement and
// reads the defaults back through this package.
func TestPlainSQLProducer(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	listener := connect(t, db)
	if _, err := listener.Exec(ctx, `LISTEN txoutbox`); err != nil {
		t.Fatal(err)
	}

	var id int64
	err := db.Pool.QueryRow(ctx, `INSERT INTO outbox_entries (topic, payload) VALUES ('x', '{"a":1}') RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	e := mustGet(t, db.Pool, id)
	if e.Topic != "x" || !jsonEqual(t, e.Payload, []byte(`{"a":1}`)) {
		t.Errorf("topic %q payload %s", e.Topic, e.Payload)
	}
	if e.Queue != outbox.DefaultQueue || e.Priority != 0 || e.MaxAttempts != outbox.DefaultMaxAttempts {
		t.Errorf("defaults: queue %q priority %d max attempts %d", e.Queue, e.Priority, e.MaxAttempts)
	}
	if e.Key == "" || !uuidLike(e.Key) {
		t.Errorf("default key %q, want a UUID", e.Key)
	}
	if e.State != outbox.StatePending || e.Attempt != 0 || len(e.Headers) != 0 || !e.RunAt.Equal(e.CreatedAt) {
		t.Errorf("state %q attempt %d headers %v run_at %v created_at %v", e.State, e.Attempt, e.Headers, e.RunAt, e.CreatedAt)
	}
	if byKey, err := outbox.GetByKey(ctx, db.Pool, "x", e.Key); err != nil || byKey.ID != id {
		t.Errorf("GetByKey: %v, %v", byKey, err)
	}

	// The insert trigger wakes relays, whoever inserts.
	n := waitNotification(t, listener)
	if n.Channel != "txoutbox" || n.Payload != outbox.DefaultQueue {
		t.Errorf("notification %q/%q, want txoutbox/%s", n.Channel, n.Payload, outbox.DefaultQueue)
	}

	// Only the topic is required; the payload defaults to {}.
	if err := db.Pool.QueryRow(ctx, `INSERT INTO outbox_entries (topic) VALUES ('y') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if e := mustGet(t, db.Pool, id); !jsonEqual(t, e.Payload, []byte(`{}`)) {
		t.Errorf("default payload %s, want {}", e.Payload)
	}
}

// --- Dead letters ---

// deadFixture is a database with entries in every state: dead ones in two
// topics and two queues, and one each pending, running and done.
type deadFixture struct {
	db                     *outboxtest.DB
	signups                []int64 // dead, topic user.signup, queue default
	audits                 []int64 // dead, topic audit.log, queue audit
	pending, running, done int64
}

func (f deadFixture) allDead() []int64 { return append(slices.Clone(f.signups), f.audits...) }

func (f deadFixture) others() []int64 { return []int64{f.pending, f.running, f.done} }

func newDeadFixture(t *testing.T) deadFixture {
	t.Helper()
	db := newDB(t)
	items := []outbox.Item{
		outbox.NewItem(signup{UserID: 0}),
		outbox.NewItem(signup{UserID: 1}),
		outbox.NewItem(audit{Action: "a0"}, outbox.WithQueue("audit")),
		outbox.NewItem(signup{UserID: 2}, outbox.WithRunAt(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))),
		outbox.NewItem(audit{Action: "a1"}, outbox.WithQueue("audit"), outbox.WithHeaders(map[string]string{"h": "v"})),
		outbox.NewItem(signup{UserID: 3}), // pending
		outbox.NewItem(signup{UserID: 4}), // running
		outbox.NewItem(signup{UserID: 5}), // done
	}
	res, err := outbox.EnqueueBatch(t.Context(), db.Pool, items)
	if err != nil {
		t.Fatal(err)
	}
	f := deadFixture{
		db:      db,
		signups: []int64{res[0].ID, res[1].ID, res[3].ID},
		audits:  []int64{res[2].ID, res[4].ID},
		pending: res[5].ID, running: res[6].ID, done: res[7].ID,
	}
	kill(t, db, f.allDead()...)
	exec(t, db, `UPDATE outbox_entries SET state = 'running', attempt = 2, lease_until = now() + interval '1 hour',
		lease_owner = 'r1' WHERE id = $1`, f.running)
	exec(t, db, `UPDATE outbox_entries SET state = 'done', attempt = 1, finished_at = now() WHERE id = $1`, f.done)
	return f
}

// snapshot reads the raw columns of ids, to check that something left them
// alone.
func snapshot(t *testing.T, db *outboxtest.DB, ids []int64) map[int64]rawColumns {
	t.Helper()
	m := make(map[int64]rawColumns, len(ids))
	for _, id := range ids {
		m[id] = readRaw(t, db, id)
	}
	return m
}

func ids(es []outbox.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func desc(s []int64) []int64 {
	s = slices.Clone(s)
	slices.Sort(s)
	slices.Reverse(s)
	return s
}

// TestListDead lists dead entries, filtered and paged.
func TestListDead(t *testing.T) {
	t.Parallel()
	f := newDeadFixture(t)
	ctx := t.Context()

	all, err := outbox.ListDead(ctx, f.db.Pool, outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), desc(f.allDead()); !slices.Equal(got, want) {
		t.Fatalf("ListDead ids %v, want %v (newest first)", got, want)
	}
	for _, e := range all {
		if e.State != outbox.StateDead || e.LastError == nil || *e.LastError != "boom" ||
			e.Attempt != 3 || e.FinishedAt == nil || len(e.Payload) == 0 || e.Key == "" {
			t.Errorf("dead entry %d: %+v", e.ID, e)
		}
	}
	if e := all[0]; e.ID != f.audits[1] || e.Headers["h"] != "v" || e.Queue != "audit" || e.Topic != "audit.log" {
		t.Errorf("newest dead entry: %+v", e)
	}

	bySQL, err := outbox.ListDead(ctx, outbox.SQL(f.db.SQL), outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(bySQL, all) {
		t.Errorf("database/sql listed %v, pgx %v", ids(bySQL), ids(all))
	}

	signups, err := outbox.ListDead(ctx, f.db.Pool, outbox.DeadFilter{Topic: "user.signup"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(signups), desc(f.signups); !slices.Equal(got, want) {
		t.Errorf("topic filter: %v, want %v", got, want)
	}
	none, err := outbox.ListDead(ctx, f.db.Pool, outbox.DeadFilter{Topic: "no.such"})
	if err != nil || len(none) != 0 {
		t.Errorf("unknown topic: %v, %v", ids(none), err)
	}

	for _, filter := range []outbox.DeadFilter{{Limit: 2}, {Limit: 1, Topic: "user.signup"}, {Limit: 1000}} {
		var paged []int64
		pages := 0
		for {
			page, err := outbox.ListDead(ctx, f.db.Pool, filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > filter.Limit {
				t.Fatalf("page of %d, limit %d", len(page), filter.Limit)
			}
			if len(page) == 0 {
				break
			}
			pages++
			paged = append(paged, ids(page)...)
			filter.BeforeID = page[len(page)-1].ID
		}
		want := desc(f.allDead())
		if filter.Topic != "" {
			want = desc(f.signups)
		}
		if !slices.Equal(paged, want) {
			t.Errorf("paging with %+v: %v, want %v", filter, paged, want)
		}
		if wantPages := (len(want) + filter.Limit - 1) / filter.Limit; pages != wantPages {
			t.Errorf("paging with %+v: %d pages, want %d", filter, pages, wantPages)
		}
	}

	_, err = outbox.ListDead(ctx, f.db.Pool, outbox.DeadFilter{Limit: -1})
	requireInvalid(t, err, "limit")
}

// TestListDeadLimits checks the default page size and the cap.
func TestListDeadLimits(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	empty, err := outbox.ListDead(ctx, db.Pool, outbox.DeadFilter{})
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty table: %v, %v", empty, err)
	}

	items := make([]outbox.Item, 1001)
	for i := range items {
		items[i] = outbox.NewItem(signup{UserID: int64(i)})
	}
	if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `UPDATE outbox_entries SET state = 'dead', finished_at = now()`)
	for _, c := range []struct{ limit, want int }{{0, 100}, {7, 7}, {1000, 1000}, {5000, 1000}} {
		es, err := outbox.ListDead(ctx, db.Pool, outbox.DeadFilter{Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != c.want {
			t.Errorf("Limit %d listed %d, want %d", c.limit, len(es), c.want)
		}
	}
}

// requireReplayed checks that id went back to pending with a fresh set of
// attempts while its fencing token stayed where it was.
func requireReplayed(t *testing.T, db *outboxtest.DB, id int64) {
	t.Helper()
	e := mustGet(t, db.Pool, id)
	if e.State != outbox.StatePending || e.Attempt != 0 || e.FinishedAt != nil || e.LeaseUntil != nil || e.LeaseOwner != nil {
		t.Errorf("replayed entry %d: state %q attempt %d finished_at %v lease %v/%v",
			id, e.State, e.Attempt, e.FinishedAt, e.LeaseUntil, e.LeaseOwner)
	}
	if e.LastError == nil || *e.LastError != "boom" {
		t.Errorf("replayed entry %d lost its last error: %v", id, e.LastError)
	}
	raw := readRaw(t, db, id)
	if raw.Attempt != 3 || raw.AttemptBase != 3 {
		t.Errorf("replayed entry %d: attempt %d attempt_base %d, want 3 and 3 (the fencing token never decreases)",
			id, raw.Attempt, raw.AttemptBase)
	}
	if !raw.RunAtPast {
		t.Errorf("replayed entry %d is not runnable now", id)
	}
}

// requireDead checks that id is still dead and untouched.
func requireDead(t *testing.T, db *outboxtest.DB, id int64) {
	t.Helper()
	raw := readRaw(t, db, id)
	if raw.State != "dead" || raw.AttemptBase != 0 || raw.FinishedAt == nil {
		t.Errorf("entry %d should still be dead: %+v", id, raw)
	}
}

// TestReplay replays by ids, by topic and all, and checks that only dead
// entries change.
func TestReplay(t *testing.T) {
	t.Parallel()
	t.Run("ids", func(t *testing.T) {
		t.Parallel()
		f := newDeadFixture(t)
		before := snapshot(t, f.db, f.others())
		sel := outbox.Selection{IDs: append([]int64{f.signups[0], f.audits[0], 987654321}, f.others()...)}
		n, err := outbox.Replay(t.Context(), f.db.Pool, sel)
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("replayed %d, want 2", n)
		}
		requireReplayed(t, f.db, f.signups[0])
		requireReplayed(t, f.db, f.audits[0])
		for _, id := range []int64{f.signups[1], f.signups[2], f.audits[1]} {
			requireDead(t, f.db, id)
		}
		if after := snapshot(t, f.db, f.others()); !reflect.DeepEqual(before, after) {
			t.Errorf("non-dead entries changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})
	t.Run("topic", func(t *testing.T) {
		t.Parallel()
		f := newDeadFixture(t)
		n, err := outbox.Replay(t.Context(), f.db.Pool, outbox.Selection{Topic: "user.signup"})
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(f.signups)) {
			t.Errorf("replayed %d, want %d", n, len(f.signups))
		}
		for _, id := range f.signups {
			requireReplayed(t, f.db, id)
		}
		for _, id := range f.audits {
			requireDead(t, f.db, id)
		}
	})
	t.Run("all", func(t *testing.T) {
		t.Parallel()
		f := newDeadFixture(t)
		before := snapshot(t, f.db, f.others())
		n, err := outbox.Replay(t.Context(), f.db.Pool, outbox.Selection{All: true})
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(f.allDead())) {
			t.Errorf("replayed %d, want %d", n, len(f.allDead()))
		}
		for _, id := range f.allDead() {
			requireReplayed(t, f.db, id)
		}
		if after := snapshot(t, f.db, f.others()); !reflect.DeepEqual(before, after) {
			t.Errorf("non-dead entries changed")
		}
		// Nothing is dead any more: a second replay finds nothing.
		if n, err := outbox.Replay(t.Context(), f.db.Pool, outbox.Selection{All: true}); err != nil || n != 0 {
			t.Errorf("second replay: %d, %v", n, err)
		}
	})
	t.Run("database/sql", func(t *testing.T) {
		t.Parallel()
		f := newDeadFixture(t)
		n, err := outbox.Replay(t.Context(), outbox.SQL(f.db.SQL), outbox.Selection{IDs: f.audits})
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("replayed %d, want 2", n)
		}
		for _, id := range f.audits {
			requireReplayed(t, f.db, id)
		}
	})
	t.Run("rolled back", func(t *testing.T) {
		t.Parallel()
		f := newDeadFixture(t)
		tx, err := f.db.Pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n, err := outbox.Replay(t.Context(), tx, outbox.Selection{All: true}); err != nil || n != 5 {
			t.Fatalf("replay in tx: %d, %v", n, err)
		}
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, id := range f.allDead() {
			requireDead(t, f.db, id)
		}
	})
}

// TestReplayRestartsTheAttemptCount replays an entry and lets a "relay"
// claim it again: the attempt seen by Get counts from the replay, the
// fencing token keeps growing.
func TestReplayRestartsTheAttemptCount(t *testing.T) {
	t.Parallel()
	f := newDeadFixture(t)
	id := f.signups[2] // delayed to 2099 before it died
	if n, err := outbox.Replay(t.Context(), f.db.Pool, outbox.Selection{IDs: []int64{id}}); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	requireReplayed(t, f.db, id)
	exec(t, f.db, `UPDATE outbox_entries SET state = 'running', attempt = attempt + 1 WHERE id = $1`, id)
	e := mustGet(t, f.db.Pool, id)
	if e.Attempt != 1 || e.MaxAttempts != outbox.DefaultMaxAttempts {
		t.Errorf("after one more claim: attempt %d of %d, want 1 of %d", e.Attempt, e.MaxAttempts, outbox.DefaultMaxAttempts)
	}
	if raw := readRaw(t, f.db, id); raw.Attempt != 4 {
		t.Errorf("fencing token %d, want 4", raw.Attempt)
	}
	// Dead again, replayed again: the base catches up again.
	exec(t, f.db, `UPDATE outbox_entries SET state = 'dead', finished_at = now() WHERE id = $1`, id)
	if n, err := outbox.Replay(t.Context(), f.db.Pool, outbox.Selection{IDs: []int64{id}}); err != nil || n != 1 {
		t.Fatalf("second replay: %d, %v", n, err)
	}
	if e := mustGet(t, f.db.Pool, id); e.Attempt != 0 {
		t.Errorf("after second replay: attempt %d, want 0", e.Attempt)
	}
	if raw := readRaw(t, f.db, id); raw.Attempt != 4 || raw.AttemptBase != 4 {
		t.Errorf("after second replay: attempt %d base %d, want 4 and 4", raw.Attempt, raw.AttemptBase)
	}
}

// TestReplayNotifies checks that Replay wakes relays once per affected
// queue.
func TestReplayNotifies(t *testing.T) {
	t.Parallel()
	f := newDeadFixture(t)
	ctx := t.Context()
	// Listen only after the fixture's inserts committed, so their
	// notifications are not delivered here.
	listener := connect(t, f.db)
	if _, err := listener.Exec(ctx, `LISTEN txoutbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.Replay(ctx, f.db.Pool, outbox.Selection{All: true}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 2 {
		n := waitNotification(t, listener)
		if n.Channel != "txoutbox" {
			t.Errorf("notification on channel %q", n.Channel)
		}
		got[n.Payload] = true
	}
	if want := map[string]bool{outbox.DefaultQueue: true, "audit": true}; !maps.Equal(got, want) {
		t.Errorf("woken queues %v, want %v", got, want)
	}
}

// TestSelectionInvalid: Replay and Discard refuse empty or contradictory
// selections and change nothing.
func TestSelectionInvalid(t *testing.T) {
	t.Parallel()
	f := newDeadFixture(t)
	before := snapshot(t, f.db, append(f.allDead(), f.others()...))
	for _, sel := range []outbox.Selection{
		{},
		{IDs: []int64{}},
		{All: true, IDs: []int64{f.signups[0]}},
		{All: true, Topic: "user.signup"},
	} {
		for name, call := range map[string]func(context.Context, outbox.Querier, outbox.Selection) (int64, error){
			"Replay": outbox.Replay, "Discard": outbox.Discard,
		} {
			n, err := call(t.Context(), f.db.Pool, sel)
			if n != 0 {
				t.Errorf("%s(%+v) = %d", name, sel, n)
			}
			requireInvalid(t, err, "selection")
		}
	}
	if after := snapshot(t, f.db, append(f.allDead(), f.others()...)); !reflect.DeepEqual(before, after) {
		t.Errorf("an invalid selection changed entries")
	}
}

// TestDiscard deletes dead entries and nothing else.
func TestDiscard(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		sel   func(f deadFixture) outbox.Selection
		gone  func(f deadFixture) []int64
		viaDB bool
	}{
		{"ids", func(f deadFixture) outbox.Selection {
			return outbox.Selection{IDs: append([]int64{f.signups[1]}, f.others()...)}
		}, func(f deadFixture) []int64 { return []int64{f.signups[1]} }, false},
		{"topic", func(f deadFixture) outbox.Selection { return outbox.Selection{Topic: "audit.log"} },
			func(f deadFixture) []int64 { return f.audits }, false},
		{"all", func(f deadFixture) outbox.Selection { return outbox.Selection{All: true} },
			func(f deadFixture) []int64 { return f.allDead() }, false},
		{"database/sql", func(f deadFixture) outbox.Selection { return outbox.Selection{IDs: f.signups} },
			func(f deadFixture) []int64 { return f.signups }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newDeadFixture(t)
			var q outbox.Querier = f.db.Pool
			if c.viaDB {
				q = outbox.SQL(f.db.SQL)
			}
			before := snapshot(t, f.db, f.others())
			gone := c.gone(f)
			n, err := outbox.Discard(t.Context(), q, c.sel(f))
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(gone)) {
				t.Errorf("discarded %d, want %d", n, len(gone))
			}
			for _, id := range gone {
				requireNotFound(t, f.db.Pool, id)
			}
			for _, id := range f.allDead() {
				if !slices.Contains(gone, id) {
					requireDead(t, f.db, id)
				}
			}
			if after := snapshot(t, f.db, f.others()); !reflect.DeepEqual(before, after) {
				t.Errorf("non-dead entries changed")
			}
			requireCount(t, f.db, len(f.allDead())+len(f.others())-len(gone))
		})
	}
}

// TestListDeadOrderIsByID: "newest first" means by id, not by when the
// entries died.
func TestListDeadOrderIsByID(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	// Die in the reverse order of ids: listing still goes by id.
	var all []int64
	for i := range 3 {
		all = append(all, mustEnqueue(t, db.Pool, audit{Action: fmt.Sprint(i)}).ID)
	}
	for _, id := range desc(all) {
		kill(t, db, id)
	}
	es, err := outbox.ListDead(t.Context(), db.Pool, outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(es); !slices.Equal(got, desc(all)) {
		t.Errorf("ListDead order %v, want %v", got, desc(all))
	}
}
