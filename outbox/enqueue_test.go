package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// --- Atomicity (guarantee 1) ---

// TestEnqueueIsAtomic writes a domain row and an entry in one transaction
// of every supported kind, then commits or rolls back: both rows exist
// afterwards, or neither does, and the entry is invisible to others until
// the commit.
func TestEnqueueIsAtomic(t *testing.T) {
	t.Parallel()
	for _, kind := range txKinds {
		for _, commit := range []bool{true, false} {
			name := kind.name + "/rollback"
			if commit {
				name = kind.name + "/commit"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				db := newDB(t)
				ctx := t.Context()
				tx := kind.begin(t, db)

				if err := tx.exec(ctx, `INSERT INTO users (id, email) VALUES ($1, $2)`, 42, "ada@example.com"); err != nil {
					t.Fatal(err)
				}
				res, err := outbox.Enqueue(ctx, tx.q, signup{UserID: 42, Email: "ada@example.com"}, outbox.WithKey("signup:42"))
				if err != nil {
					t.Fatal(err)
				}
				if res.ID <= 0 || res.Duplicate {
					t.Fatalf("Enqueue = %+v, want a new positive id", res)
				}
				// Visible inside the transaction, not outside it.
				if e := mustGet(t, tx.q, res.ID); e.State != outbox.StatePending {
					t.Fatalf("inside the tx: state %q, want pending", e.State)
				}
				requireNotFound(t, db.Pool, res.ID)
				requireCount(t, db, 0)

				if commit {
					err = tx.commit(ctx)
				} else {
					err = tx.rollback(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}

				want := 0
				if commit {
					want = 1
				}
				requireCount(t, db, want)
				if got := countUsers(t, db); got != want {
					t.Fatalf("users holds %d rows, want %d", got, want)
				}
				if !commit {
					requireNotFound(t, db.Pool, res.ID)
					return
				}
				e := mustGet(t, db.Pool, res.ID)
				var p signup
				if err := json.Unmarshal(e.Payload, &p); err != nil {
					t.Fatal(err)
				}
				if e.Topic != "user.signup" || e.Key != "signup:42" || p != (signup{UserID: 42, Email: "ada@example.com"}) {
					t.Fatalf("committed entry = topic %q key %q payload %+v", e.Topic, e.Key, p)
				}
			})
		}
	}
}

// TestEnqueueRollsBackWithAFailedDomainWrite enqueues first and then fails
// the domain write: the caller rolls back and the entry goes with it.
func TestEnqueueRollsBackWithAFailedDomainWrite(t *testing.T) {
	t.Parallel()
	for _, kind := range txKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			ctx := t.Context()
			exec(t, db, `INSERT INTO users (id, email) VALUES (1, 'taken@example.com')`)

			tx := kind.begin(t, db)
			if _, err := outbox.Enqueue(ctx, tx.q, signup{UserID: 1, Email: "dup@example.com"}); err != nil {
				t.Fatal(err)
			}
			err := tx.exec(ctx, `INSERT INTO users (id, email) VALUES (1, 'dup@example.com')`)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
				t.Fatalf("duplicate user insert: %v, want unique_violation", err)
			}
			if err := tx.rollback(ctx); err != nil {
				t.Fatal(err)
			}
			requireCount(t, db, 0)
			if got := countUsers(t, db); got != 1 {
				t.Fatalf("users holds %d rows, want 1", got)
			}
		})
	}
}

// TestEnqueueOutsideATransaction enqueues through handles that are not
// transactions: each entry commits on its own, at once.
func TestEnqueueOutsideATransaction(t *testing.T) {
	t.Parallel()
	handles := []struct {
		name string
		q    func(t *testing.T, db *outboxtest.DB) outbox.Querier
	}{
		{"pgxpool.Pool", func(_ *testing.T, db *outboxtest.DB) outbox.Querier { return db.Pool }},
		{"pgx.Conn", func(t *testing.T, db *outboxtest.DB) outbox.Querier { return connect(t, db) }},
		{"sql.DB", func(_ *testing.T, db *outboxtest.DB) outbox.Querier { return outbox.SQL(db.SQL) }},
		{"sql.Conn", func(t *testing.T, db *outboxtest.DB) outbox.Querier {
			conn, err := db.SQL.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			return outbox.SQL(conn)
		}},
	}
	for _, h := range handles {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			q := h.q(t, db)
			res := mustEnqueue(t, q, signup{UserID: 7}, outbox.WithKey("k7"))
			requireCount(t, db, 1)
			if e := mustGet(t, db.Pool, res.ID); e.Key != "k7" {
				t.Fatalf("key %q, want k7", e.Key)
			}
			// Reading back through the same handle works too.
			if e := mustGet(t, q, res.ID); e.ID != res.ID {
				t.Fatalf("id %d, want %d", e.ID, res.ID)
			}
			again := mustEnqueue(t, q, signup{UserID: 7}, outbox.WithKey("k7"))
			if again != (outbox.Enqueued{ID: res.ID, Duplicate: true}) {
				t.Fatalf("second enqueue = %+v, want duplicate of %d", again, res.ID)
			}
			requireCount(t, db, 1)
		})
	}
}

// TestEnqueueNotifiesAtCommit checks that relays are woken by a committed
// enqueue, on channel txoutbox with the queue as payload.
func TestEnqueueNotifiesAtCommit(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	listener := connect(t, db)
	if _, err := listener.Exec(ctx, `LISTEN txoutbox`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	mustEnqueue(t, tx, signup{UserID: 1}, outbox.WithQueue("wake-me"))
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	n := waitNotification(t, listener)
	if n.Channel != "txoutbox" || n.Payload != "wake-me" {
		t.Fatalf("notification %q/%q, want txoutbox/wake-me", n.Channel, n.Payload)
	}
}

// waitNotification waits up to 10 seconds for one notification on conn.
func waitNotification(t *testing.T, conn *pgx.Conn) *pgconn.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("wait for notification: %v", err)
	}
	return n
}

// --- Options ---

// TestEnqueueOptionsRoundTrip sets every option and reads the entry back
// with Get and GetByKey.
func TestEnqueueOptionsRoundTrip(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	// Nanoseconds and a non-UTC zone: the database keeps microseconds.
	runAt := time.Date(2031, 5, 17, 8, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
	headersIn := map[string]string{"traceparent": "00-abc-01", "x": "first"}
	res := mustEnqueue(t, db.Pool, signup{UserID: 7, Email: "g@example.com"},
		outbox.WithKey("signup:7"),
		outbox.WithOrderingKey("user-7"),
		outbox.WithQueue("emails"),
		outbox.WithPriority(7),
		outbox.WithRunAt(runAt),
		outbox.WithMaxAttempts(3),
		outbox.WithHeaders(headersIn),
		outbox.WithHeaders(map[string]string{"correlation_id": "c-7"}),
		outbox.WithHeaders(map[string]string{"x": "second"}), // later wins
	)
	if headersIn["x"] != "first" || len(headersIn) != 2 {
		t.Fatalf("WithHeaders changed the caller's map: %v", headersIn)
	}
	byID := mustGet(t, db.Pool, res.ID)
	byKey, err := outbox.GetByKey(ctx, db.Pool, "user.signup", "signup:7")
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]*outbox.Entry{"Get": byID, "GetByKey": byKey} {
		if e.ID != res.ID || e.Topic != "user.signup" || e.Key != "signup:7" {
			t.Errorf("%s: id %d topic %q key %q", name, e.ID, e.Topic, e.Key)
		}
		if e.OrderingKey == nil || *e.OrderingKey != "user-7" {
			t.Errorf("%s: ordering key %v, want user-7", name, e.OrderingKey)
		}
		if e.Queue != "emails" || e.Priority != 7 || e.MaxAttempts != 3 {
			t.Errorf("%s: queue %q priority %d max attempts %d", name, e.Queue, e.Priority, e.MaxAttempts)
		}
		if want := runAt.Truncate(time.Microsecond); !e.RunAt.Equal(want) {
			t.Errorf("%s: run_at %v, want %v", name, e.RunAt, want)
		}
		wantHeaders := map[string]string{"traceparent": "00-abc-01", "correlation_id": "c-7", "x": "second"}
		if !maps.Equal(e.Headers, wantHeaders) {
			t.Errorf("%s: headers %v, want %v", name, e.Headers, wantHeaders)
		}
		if e.State != outbox.StatePending || e.Attempt != 0 {
			t.Errorf("%s: state %q attempt %d", name, e.State, e.Attempt)
		}
		if !jsonEqual(t, e.Payload, []byte(`{"user_id":7,"email":"g@example.com"}`)) {
			t.Errorf("%s: payload %s", name, e.Payload)
		}
	}
}

// TestEnqueueDefaults reads back an entry enqueued without options.
func TestEnqueueDefaults(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	res := mustEnqueue(t, db.Pool, signup{UserID: 1})
	e := mustGet(t, db.Pool, res.ID)
	if e.Queue != outbox.DefaultQueue || e.Priority != 0 || e.MaxAttempts != outbox.DefaultMaxAttempts {
		t.Errorf("queue %q priority %d max attempts %d", e.Queue, e.Priority, e.MaxAttempts)
	}
	if e.OrderingKey != nil || e.LeaseUntil != nil || e.LeaseOwner != nil || e.LastError != nil || e.FinishedAt != nil {
		t.Errorf("unexpected non-nil fields: %+v", e)
	}
	if len(e.Headers) != 0 {
		t.Errorf("headers %v, want none", e.Headers)
	}
	if !uuidLike(e.Key) {
		t.Errorf("default key %q is not a UUID", e.Key)
	}
	if !e.RunAt.Equal(e.CreatedAt) {
		t.Errorf("run_at %v, want created_at %v", e.RunAt, e.CreatedAt)
	}
	other := mustEnqueue(t, db.Pool, signup{UserID: 1})
	if other.Duplicate || other.ID == res.ID {
		t.Fatalf("an entry without a key was treated as a duplicate: %+v", other)
	}
	if e2 := mustGet(t, db.Pool, other.ID); e2.Key == e.Key {
		t.Fatalf("two entries share the generated key %q", e.Key)
	}
}

func uuidLike(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
	}
	return true
}

// TestEnqueueDelay checks that a delay is measured from the database clock
// at insert time, that WithRunAt wins over WithDelay, and that a run-at in
// the past is accepted.
func TestEnqueueDelay(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()

	const delay = 90*time.Minute + 1500*time.Microsecond
	res := mustEnqueue(t, db.Pool, signup{UserID: 1}, outbox.WithDelay(delay))
	e := mustGet(t, db.Pool, res.ID)
	// run_at and created_at come from the same now(): the difference is exact.
	if got := e.RunAt.Sub(e.CreatedAt); got != delay {
		t.Errorf("run_at - created_at = %v, want %v", got, delay)
	}
	var future bool
	if err := db.Pool.QueryRow(ctx, `SELECT run_at > now() FROM outbox_entries WHERE id = $1`, res.ID).Scan(&future); err != nil {
		t.Fatal(err)
	}
	if !future {
		t.Errorf("delayed entry has run_at <= now()")
	}

	// Sub-microsecond parts are dropped, not rounded up into a wrong value.
	res = mustEnqueue(t, db.Pool, signup{UserID: 2}, outbox.WithDelay(time.Second+999*time.Nanosecond))
	if e := mustGet(t, db.Pool, res.ID); e.RunAt.Sub(e.CreatedAt) != time.Second {
		t.Errorf("delay 1.000000999s stored as %v", e.RunAt.Sub(e.CreatedAt))
	}

	runAt := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	res = mustEnqueue(t, db.Pool, signup{UserID: 3}, outbox.WithDelay(time.Hour), outbox.WithRunAt(runAt))
	if e := mustGet(t, db.Pool, res.ID); !e.RunAt.Equal(runAt) {
		t.Errorf("WithRunAt with WithDelay: run_at %v, want %v", e.RunAt, runAt)
	}
	// Order does not matter either.
	res = mustEnqueue(t, db.Pool, signup{UserID: 4}, outbox.WithRunAt(runAt), outbox.WithDelay(time.Hour))
	if e := mustGet(t, db.Pool, res.ID); !e.RunAt.Equal(runAt) {
		t.Errorf("WithDelay after WithRunAt: run_at %v, want %v", e.RunAt, runAt)
	}

	past := time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC)
	res = mustEnqueue(t, db.Pool, signup{UserID: 5}, outbox.WithRunAt(past))
	if e := mustGet(t, db.Pool, res.ID); !e.RunAt.Equal(past) {
		t.Errorf("run_at in the past: %v, want %v", e.RunAt, past)
	}
}

// TestEnqueueOptionsProvider checks that a message type's default options
// apply and that call options override them.
func TestEnqueueOptionsProvider(t *testing.T) {
	t.Parallel()
	db := newDB(t)

	res := mustEnqueue(t, db.Pool, nightlyReport{Day: "2024-01-01"})
	e := mustGet(t, db.Pool, res.ID)
	if e.Queue != "bulk" || e.Priority != -5 || e.MaxAttempts != 5 {
		t.Errorf("type defaults: queue %q priority %d max attempts %d", e.Queue, e.Priority, e.MaxAttempts)
	}
	if want := map[string]string{"source": "type-default", "team": "reports"}; !maps.Equal(e.Headers, want) {
		t.Errorf("type default headers %v, want %v", e.Headers, want)
	}

	res = mustEnqueue(t, db.Pool, nightlyReport{Day: "2024-01-02"},
		outbox.WithQueue("urgent"),
		outbox.WithPriority(0), // an explicit zero overrides the type's -5
		outbox.WithHeaders(map[string]string{"source": "call"}),
		outbox.WithKey("report:2024-01-02"),
	)
	e, err := outbox.GetByKey(t.Context(), db.Pool, "report.nightly", "report:2024-01-02")
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != res.ID {
		t.Fatalf("GetByKey id %d, want %d", e.ID, res.ID)
	}
	if e.Queue != "urgent" || e.Priority != 0 || e.MaxAttempts != 5 {
		t.Errorf("overridden: queue %q priority %d max attempts %d", e.Queue, e.Priority, e.MaxAttempts)
	}
	if want := map[string]string{"source": "call", "team": "reports"}; !maps.Equal(e.Headers, want) {
		t.Errorf("merged headers %v, want %v", e.Headers, want)
	}

	// The batch path applies the same defaults.
	got, err := outbox.EnqueueBatch(t.Context(), db.Pool, []outbox.Item{
		outbox.NewItem(nightlyReport{Day: "2024-01-03"}),
		outbox.NewItem(nightlyReport{Day: "2024-01-04"}, outbox.WithMaxAttempts(9)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := mustGet(t, db.Pool, got[0].ID); e.Queue != "bulk" || e.Priority != -5 || e.MaxAttempts != 5 {
		t.Errorf("batch type defaults: queue %q priority %d max attempts %d", e.Queue, e.Priority, e.MaxAttempts)
	}
	if e := mustGet(t, db.Pool, got[1].ID); e.Queue != "bulk" || e.MaxAttempts != 9 {
		t.Errorf("batch override: queue %q max attempts %d", e.Queue, e.MaxAttempts)
	}
}

// TestEnqueueAcceptsLimits enqueues values exactly at every limit.
func TestEnqueueAcceptsLimits(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	topic := strings.Repeat("t", outbox.MaxTopicLen)
	key := strings.Repeat("k", outbox.MaxKeyLen)
	okey := strings.Repeat("o", outbox.MaxKeyLen)
	queue := strings.Repeat("q", outbox.MaxQueueLen)
	// {"h":"..."} is 8 bytes plus the value.
	headers := map[string]string{"h": strings.Repeat("v", outbox.MaxHeadersBytes-8)}

	res := mustEnqueue(t, db.Pool, outbox.Raw{TopicName: topic},
		outbox.WithKey(key), outbox.WithOrderingKey(okey), outbox.WithQueue(queue),
		outbox.WithPriority(math.MaxInt16), outbox.WithMaxAttempts(outbox.MaxAttemptsLimit),
		outbox.WithHeaders(headers))
	e := mustGet(t, db.Pool, res.ID)
	if e.Topic != topic || e.Key != key || *e.OrderingKey != okey || e.Queue != queue ||
		e.Priority != math.MaxInt16 || e.MaxAttempts != outbox.MaxAttemptsLimit || !maps.Equal(e.Headers, headers) {
		t.Errorf("entry at the upper limits did not round-trip")
	}

	res = mustEnqueue(t, db.Pool, signup{}, outbox.WithPriority(math.MinInt16), outbox.WithMaxAttempts(1))
	if e := mustGet(t, db.Pool, res.ID); e.Priority != math.MinInt16 || e.MaxAttempts != 1 {
		t.Errorf("lower limits: priority %d max attempts %d", e.Priority, e.MaxAttempts)
	}

	// Multi-byte UTF-8 counts in bytes: 127 two-byte runes are 254 bytes.
	utf := strings.Repeat("ü", 127)
	res = mustEnqueue(t, db.Pool, outbox.Raw{TopicName: utf}, outbox.WithKey(utf))
	if e := mustGet(t, db.Pool, res.ID); e.Topic != utf || e.Key != utf {
		t.Errorf("UTF-8 topic/key did not round-trip")
	}
}

// --- Idempotency ---

// TestEnqueueIdempotentInOneTx enqueues the same topic and key twice in one
// transaction: one entry, the first payload, the same id.
func TestEnqueueIdempotentInOneTx(t *testing.T) {
	t.Parallel()
	for _, kind := range txKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			ctx := t.Context()
			tx := kind.begin(t, db)
			first, err := outbox.Enqueue(ctx, tx.q, signup{UserID: 1, Email: "first"}, outbox.WithKey("k"))
			if err != nil {
				t.Fatal(err)
			}
			second, err := outbox.Enqueue(ctx, tx.q, signup{UserID: 1, Email: "second"}, outbox.WithKey("k"), outbox.WithQueue("other"))
			if err != nil {
				t.Fatal(err)
			}
			if first.Duplicate || second != (outbox.Enqueued{ID: first.ID, Duplicate: true}) {
				t.Fatalf("first %+v second %+v, want the second a duplicate of the first", first, second)
			}
			if err := tx.commit(ctx); err != nil {
				t.Fatal(err)
			}
			requireCount(t, db, 1)
			e := mustGet(t, db.Pool, first.ID)
			if !jsonEqual(t, e.Payload, []byte(`{"user_id":1,"email":"first"}`)) || e.Queue != outbox.DefaultQueue {
				t.Fatalf("the duplicate changed the entry: payload %s queue %q", e.Payload, e.Queue)
			}
		})
	}
}

// TestEnqueueIdempotentAcrossTxs enqueues a key that an earlier committed
// transaction wrote.
func TestEnqueueIdempotentAcrossTxs(t *testing.T) {
	t.Parallel()
	for _, kind := range txKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			ctx := t.Context()
			first := mustEnqueue(t, db.Pool, signup{UserID: 1}, outbox.WithKey("welcome:1"))
			tx := kind.begin(t, db)
			second, err := outbox.Enqueue(ctx, tx.q, signup{UserID: 1}, outbox.WithKey("welcome:1"))
			if err != nil {
				t.Fatal(err)
			}
			if second != (outbox.Enqueued{ID: first.ID, Duplicate: true}) {
				t.Fatalf("second %+v, want duplicate of %d", second, first.ID)
			}
			if err := tx.commit(ctx); err != nil {
				t.Fatal(err)
			}
			requireCount(t, db, 1)
		})
	}
}

// TestEnqueueKeyFreeAfterRollback: a key whose first entry rolled back is
// free again.
func TestEnqueueKeyFreeAfterRollback(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, tx, signup{UserID: 1}, outbox.WithKey("k"))
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	res := mustEnqueue(t, db.Pool, signup{UserID: 1}, outbox.WithKey("k"))
	if res.Duplicate {
		t.Fatalf("enqueue after rollback = %+v, want a new entry", res)
	}
	requireCount(t, db, 1)
}

// TestEnqueueKeyIsPerTopic: the same key under two topics is two entries.
func TestEnqueueKeyIsPerTopic(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := mustEnqueue(t, db.Pool, signup{UserID: 1}, outbox.WithKey("shared"))
	b := mustEnqueue(t, db.Pool, audit{Action: "x"}, outbox.WithKey("shared"))
	if a.Duplicate || b.Duplicate || a.ID == b.ID {
		t.Fatalf("a %+v b %+v, want two new entries", a, b)
	}
	requireCount(t, db, 2)
	for topic, id := range map[string]int64{"user.signup": a.ID, "audit.log": b.ID} {
		e, err := outbox.GetByKey(t.Context(), db.Pool, topic, "shared")
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != id {
			t.Errorf("GetByKey(%s) id %d, want %d", topic, e.ID, id)
		}
	}
}

// TestEnqueueIdempotentWithPlainSQLProducer: a key written by a non-Go
// producer is a duplicate for the Go producer and vice versa.
func TestEnqueueIdempotentWithPlainSQLProducer(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	var id int64
	err := db.Pool.QueryRow(t.Context(),
		`INSERT INTO outbox_entries (topic, key, payload) VALUES ('user.signup', 'from-sql', '{"user_id":3}') RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	res := mustEnqueue(t, db.Pool, signup{UserID: 3}, outbox.WithKey("from-sql"))
	if res != (outbox.Enqueued{ID: id, Duplicate: true}) {
		t.Fatalf("enqueue = %+v, want duplicate of %d", res, id)
	}
	requireCount(t, db, 1)
}

// TestEnqueueDuplicateIsOneStatement checks the cost claims: a new entry,
// a duplicate, a batch and a lookup are one statement each.
func TestEnqueueDuplicateIsOneStatement(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	conn, counter := countingConn(t, db)
	steps := []struct {
		name string
		run  func() error
	}{
		{"new", func() error { _, err := outbox.Enqueue(t.Context(), conn, signup{}, outbox.WithKey("k")); return err }},
		{"duplicate", func() error {
			res, err := outbox.Enqueue(t.Context(), conn, signup{}, outbox.WithKey("k"))
			if err == nil && !res.Duplicate {
				err = fmt.Errorf("not a duplicate: %+v", res)
			}
			return err
		}},
		{"batch", func() error {
			items := make([]outbox.Item, 50)
			for i := range items {
				items[i] = outbox.NewItem(signup{UserID: int64(i)}, outbox.WithKey(fmt.Sprint(i%10)))
			}
			_, err := outbox.EnqueueBatch(t.Context(), conn, items)
			return err
		}},
		{"batch of duplicates", func() error {
			_, err := outbox.EnqueueBatch(t.Context(), conn, []outbox.Item{
				outbox.NewItem(signup{}, outbox.WithKey("1")), outbox.NewItem(signup{}, outbox.WithKey("k")),
			})
			return err
		}},
		{"get", func() error { _, err := outbox.GetByKey(t.Context(), conn, "user.signup", "k"); return err }},
	}
	for _, s := range steps {
		before := counter.n.Load()
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := counter.n.Load() - before; got != 1 {
			t.Errorf("%s took %d statements, want 1", s.name, got)
		}
	}
}

// TestEnqueueConcurrentSameKey enqueues one key from 8 transactions at once,
// all of which commit: exactly one entry, and every caller got its id.
func TestEnqueueConcurrentSameKey(t *testing.T) {
	t.Parallel()
	const n = 8
	db := newDB(t)
	ctx := t.Context()

	var (
		ready, done sync.WaitGroup
		start       = make(chan struct{})
		results     = make([]outbox.Enqueued, n)
		errs        = make([]error, n)
	)
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			tx, err := db.Pool.Begin(ctx)
			ready.Done()
			if err != nil {
				errs[i] = err
				return
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			<-start
			res, err := outbox.Enqueue(ctx, tx, signup{UserID: int64(i)}, outbox.WithKey("once"))
			if err != nil {
				errs[i] = err
				return
			}
			results[i], errs[i] = res, tx.Commit(ctx)
		})
	}
	ready.Wait()
	close(start)
	done.Wait()

	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if results[i].ID != results[0].ID {
			t.Errorf("goroutine %d got id %d, goroutine 0 got %d", i, results[i].ID, results[0].ID)
		}
		if !results[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d callers were told they created the entry, want 1: %+v", fresh, results)
	}
	requireCount(t, db, 1)
}

// TestEnqueueConflictCommittedAfterSnapshot drives the race the concurrent
// test only hits by chance: tx B enqueues a key that tx A wrote but has not
// committed, so B's insert waits on A; A commits; B must then report A's
// entry as a duplicate even though B's statement snapshot predates it.
func TestEnqueueConflictCommittedAfterSnapshot(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		enqueue func(ctx context.Context, tx pgx.Tx) (outbox.Enqueued, error)
	}{
		{"Enqueue", func(ctx context.Context, tx pgx.Tx) (outbox.Enqueued, error) {
			return outbox.Enqueue(ctx, tx, signup{UserID: 2}, outbox.WithKey("race"))
		}},
		{"EnqueueBatch", func(ctx context.Context, tx pgx.Tx) (outbox.Enqueued, error) {
			res, err := outbox.EnqueueBatch(ctx, tx, []outbox.Item{
				outbox.NewItem(signup{UserID: 2}, outbox.WithKey("race")),
				outbox.NewItem(signup{UserID: 3}, outbox.WithKey("other")),
				outbox.NewItem(signup{UserID: 4}, outbox.WithKey("race")),
			})
			if err != nil {
				return outbox.Enqueued{}, err
			}
			if res[2] != res[0] || res[1].Duplicate {
				return outbox.Enqueued{}, fmt.Errorf("batch results %+v", res)
			}
			return res[0], nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			ctx := t.Context()

			txA, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = txA.Rollback(context.Background()) }()
			a := mustEnqueue(t, txA, signup{UserID: 1}, outbox.WithKey("race"))

			txB, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = txB.Rollback(context.Background()) }()
			var pidB int
			if err := txB.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pidB); err != nil {
				t.Fatal(err)
			}

			type result struct {
				res outbox.Enqueued
				err error
			}
			out := make(chan result, 1)
			go func() {
				res, err := c.enqueue(ctx, txB)
				out <- result{res, err}
			}()
			waitUntilBlocked(t, db, pidB)
			if err := txA.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-out
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.res != (outbox.Enqueued{ID: a.ID, Duplicate: true}) {
				t.Fatalf("B got %+v, want duplicate of A's %d", r.res, a.ID)
			}
			if err := txB.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			want := 1
			if c.name == "EnqueueBatch" {
				want = 2
			}
			requireCount(t, db, want)
		})
	}
}

// waitUntilBlocked polls until backend pid waits on a lock held by another
// backend. It waits on a condition, not on time; the test's deadline
// bounds it.
func waitUntilBlocked(t *testing.T, db *outboxtest.DB, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		var blocked bool
		err := db.Pool.QueryRow(ctx, `SELECT cardinality(pg_blocking_pids($1)) > 0`, pid).Scan(&blocked)
		if err != nil {
			t.Fatalf("waiting for backend %d to block: %v", pid, err)
		}
		if blocked {
			return
		}
	}
}

// --- EnqueueBatch ---

// TestEnqueueBatchResultsInInputOrder enqueues a mixed batch and checks
// each result against what was stored, and that ids follow input order
// (per-key ordering relies on id order).
func TestEnqueueBatchResultsInInputOrder(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	runAt := time.Date(2032, 2, 29, 12, 0, 0, 1000, time.UTC)
	items := []outbox.Item{
		outbox.NewItem(signup{UserID: 0}),
		outbox.NewItem(audit{Action: "one"}, outbox.WithKey("a1"), outbox.WithOrderingKey("ok")),
		outbox.NewItem(signup{UserID: 2}, outbox.WithQueue("q2"), outbox.WithPriority(-3), outbox.WithMaxAttempts(2)),
		outbox.NewItem(outbox.Raw{TopicName: "raw", Payload: json.RawMessage(`[1,2,3]`)}, outbox.WithRunAt(runAt)),
		outbox.NewItem(audit{Action: "four"}, outbox.WithDelay(time.Minute), outbox.WithOrderingKey("ok"),
			outbox.WithHeaders(map[string]string{"h": "4"})),
	}
	res, err := outbox.EnqueueBatch(t.Context(), db.Pool, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("item %d marked duplicate", i)
		}
		if i > 0 && r.ID <= res[i-1].ID {
			t.Errorf("ids not in input order: %+v", res)
		}
	}
	requireCount(t, db, len(items))

	es := make([]*outbox.Entry, len(res))
	for i, r := range res {
		es[i] = mustGet(t, db.Pool, r.ID)
		if es[i].Topic != items[i].Message.Topic() {
			t.Errorf("item %d: topic %q, want %q", i, es[i].Topic, items[i].Message.Topic())
		}
	}
	if !jsonEqual(t, es[0].Payload, []byte(`{"user_id":0,"email":""}`)) || !uuidLike(es[0].Key) || !es[0].RunAt.Equal(es[0].CreatedAt) {
		t.Errorf("item 0: %+v", es[0])
	}
	if es[1].Key != "a1" || es[1].OrderingKey == nil || *es[1].OrderingKey != "ok" {
		t.Errorf("item 1: key %q ordering key %v", es[1].Key, es[1].OrderingKey)
	}
	if es[2].Queue != "q2" || es[2].Priority != -3 || es[2].MaxAttempts != 2 || es[2].OrderingKey != nil {
		t.Errorf("item 2: queue %q priority %d max attempts %d", es[2].Queue, es[2].Priority, es[2].MaxAttempts)
	}
	if !es[3].RunAt.Equal(runAt) || string(es[3].Payload) != `[1, 2, 3]` {
		t.Errorf("item 3: run_at %v payload %s", es[3].RunAt, es[3].Payload)
	}
	if es[4].RunAt.Sub(es[4].CreatedAt) != time.Minute || es[4].Headers["h"] != "4" {
		t.Errorf("item 4: delay %v headers %v", es[4].RunAt.Sub(es[4].CreatedAt), es[4].Headers)
	}
}

// TestEnqueueBatchDuplicates covers keys repeated inside a batch and keys
// that already exist.
func TestEnqueueBatchDuplicates(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	old := mustEnqueue(t, db.Pool, signup{UserID: 100}, outbox.WithKey("old"))

	res, err := outbox.EnqueueBatch(ctx, db.Pool, []outbox.Item{
		outbox.NewItem(signup{UserID: 1, Email: "first"}, outbox.WithKey("k1")),  // 0: new
		outbox.NewItem(signup{UserID: 2}, outbox.WithKey("old")),                 // 1: existing
		outbox.NewItem(signup{UserID: 3, Email: "second"}, outbox.WithKey("k1")), // 2: dup of 0
		outbox.NewItem(audit{}, outbox.WithKey("k1")),                            // 3: other topic: new
		outbox.NewItem(signup{UserID: 4}, outbox.WithKey("old")),                 // 4: existing again
		outbox.NewItem(signup{UserID: 5}),                                        // 5: new, generated key
		outbox.NewItem(signup{UserID: 6}, outbox.WithKey("k1")),                  // 6: dup of 0
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		sameAs int // index whose id this one must share, or -1 for old, or itself
		dup    bool
	}{{0, false}, {-1, true}, {0, true}, {3, false}, {-1, true}, {5, false}, {0, true}}
	for i, w := range want {
		wantID := old.ID
		if w.sameAs >= 0 {
			wantID = res[w.sameAs].ID
		}
		if res[i].ID != wantID || res[i].Duplicate != w.dup {
			t.Errorf("item %d: %+v, want id %d duplicate %v", i, res[i], wantID, w.dup)
		}
	}
	distinct := map[int64]bool{res[0].ID: true, res[3].ID: true, res[5].ID: true, old.ID: true}
	if len(distinct) != 4 {
		t.Errorf("new entries share ids: %+v", res)
	}
	requireCount(t, db, 4)
	// The first occurrence's payload is the one stored.
	if e := mustGet(t, db.Pool, res[0].ID); !jsonEqual(t, e.Payload, []byte(`{"user_id":1,"email":"first"}`)) {
		t.Errorf("stored payload %s, want the first occurrence's", e.Payload)
	}
	if e := mustGet(t, db.Pool, old.ID); !jsonEqual(t, e.Payload, []byte(`{"user_id":100,"email":""}`)) {
		t.Errorf("existing entry changed: %s", e.Payload)
	}

	// A batch of nothing but duplicates writes nothing.
	again, err := outbox.EnqueueBatch(ctx, db.Pool, []outbox.Item{
		outbox.NewItem(signup{}, outbox.WithKey("k1")), outbox.NewItem(signup{}, outbox.WithKey("k1")),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if r != (outbox.Enqueued{ID: res[0].ID, Duplicate: true}) {
			t.Errorf("repeat item %d: %+v, want duplicate of %d", i, r, res[0].ID)
		}
	}
	requireCount(t, db, 4)
}

// TestEnqueueBatchIsAtomic checks commit and rollback of a batch through
// every transaction kind (database/sql passes the arrays through the pgx
// stdlib driver).
func TestEnqueueBatchIsAtomic(t *testing.T) {
	t.Parallel()
	for _, kind := range txKinds {
		for _, commit := range []bool{true, false} {
			name := kind.name + "/rollback"
			if commit {
				name = kind.name + "/commit"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				db := newDB(t)
				ctx := t.Context()
				runAt := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
				items := []outbox.Item{
					outbox.NewItem(signup{UserID: 1}, outbox.WithKey("a"), outbox.WithRunAt(runAt)),
					outbox.NewItem(signup{UserID: 2}, outbox.WithOrderingKey("o"), outbox.WithDelay(time.Second)),
					outbox.NewItem(audit{Action: "x"}, outbox.WithQueue("q"), outbox.WithPriority(5),
						outbox.WithMaxAttempts(7), outbox.WithHeaders(map[string]string{"a": "b"})),
					outbox.NewItem(signup{UserID: 1}, outbox.WithKey("a")),
				}
				tx := kind.begin(t, db)
				if err := tx.exec(ctx, `INSERT INTO users (id, email) VALUES (1, 'x')`); err != nil {
					t.Fatal(err)
				}
				res, err := outbox.EnqueueBatch(ctx, tx.q, items)
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != 4 || res[3] != (outbox.Enqueued{ID: res[0].ID, Duplicate: true}) {
					t.Fatalf("results %+v", res)
				}
				if commit {
					err = tx.commit(ctx)
				} else {
					err = tx.rollback(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
				if !commit {
					requireCount(t, db, 0)
					if n := countUsers(t, db); n != 0 {
						t.Fatalf("users holds %d rows after rollback", n)
					}
					return
				}
				requireCount(t, db, 3)
				e0, e1, e2 := mustGet(t, db.Pool, res[0].ID), mustGet(t, db.Pool, res[1].ID), mustGet(t, db.Pool, res[2].ID)
				if e0.Key != "a" || !e0.RunAt.Equal(runAt) {
					t.Errorf("item 0: key %q run_at %v", e0.Key, e0.RunAt)
				}
				if e1.OrderingKey == nil || *e1.OrderingKey != "o" || e1.RunAt.Sub(e1.CreatedAt) != time.Second {
					t.Errorf("item 1: ordering key %v delay %v", e1.OrderingKey, e1.RunAt.Sub(e1.CreatedAt))
				}
				if e2.Queue != "q" || e2.Priority != 5 || e2.MaxAttempts != 7 || e2.Headers["a"] != "b" {
					t.Errorf("item 2: %+v", e2)
				}
			})
		}
	}
}

// TestEnqueueBatchValidationIsAllOrNothing puts one invalid item in a batch:
// the error names it and nothing at all is written.
func TestEnqueueBatchValidationIsAllOrNothing(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	items := make([]outbox.Item, 6)
	for i := range items {
		items[i] = outbox.NewItem(signup{UserID: int64(i)}, outbox.WithKey(fmt.Sprint(i)))
	}
	items[3] = outbox.NewItem(outbox.Raw{TopicName: ""})
	res, err := outbox.EnqueueBatch(ctx, db.Pool, items)
	if res != nil {
		t.Errorf("results %+v alongside an error", res)
	}
	if err == nil || !strings.Contains(err.Error(), "item 3") {
		t.Fatalf("error %v, want one naming item 3", err)
	}
	requireInvalid(t, err, "topic")
	requireCount(t, db, 0)

	items[3] = outbox.NewItem(outbox.Raw{TopicName: "big", Payload: json.RawMessage(`"` + strings.Repeat("x", 200) + `"`)})
	_, err = outbox.Producer{MaxPayloadBytes: 100}.EnqueueBatch(ctx, db.Pool, items)
	if !errors.Is(err, outbox.ErrPayloadTooLarge) || !strings.Contains(err.Error(), "item 3") {
		t.Fatalf("error %v, want ErrPayloadTooLarge naming item 3", err)
	}
	requireCount(t, db, 0)
}

// TestEnqueueBatchEmpty: an empty batch is a no-op.
func TestEnqueueBatchEmpty(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, items := range [][]outbox.Item{nil, {}} {
		res, err := outbox.EnqueueBatch(t.Context(), db.Pool, items)
		if res != nil || err != nil {
			t.Fatalf("EnqueueBatch(%#v) = %v, %v; want nil, nil", items, res, err)
		}
	}
	requireCount(t, db, 0)
	// The querier is still checked first.
	if _, err := outbox.EnqueueBatch(t.Context(), nil, nil); !errors.Is(err, outbox.ErrNilQuerier) {
		t.Fatalf("empty batch with a nil querier: %v, want ErrNilQuerier", err)
	}
}

// TestEnqueueBatchLarge enqueues a thousand items in one statement.
func TestEnqueueBatchLarge(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	items := make([]outbox.Item, 1000)
	for i := range items {
		items[i] = outbox.NewItem(signup{UserID: int64(i)}, outbox.WithKey(fmt.Sprint("k", i%700)))
	}
	res, err := outbox.EnqueueBatch(t.Context(), db.Pool, items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if i < 700 && r.Duplicate || i >= 700 && r != (outbox.Enqueued{ID: res[i-700].ID, Duplicate: true}) {
			t.Fatalf("item %d: %+v", i, r)
		}
	}
	requireCount(t, db, 700)
}

// TestEnqueueBatchConcurrentSameKeys runs the same batch from 8
// transactions at once; every transaction commits and sees the same ids.
func TestEnqueueBatchConcurrentSameKeys(t *testing.T) {
	t.Parallel()
	const n = 8
	db := newDB(t)
	ctx := t.Context()
	items := []outbox.Item{
		outbox.NewItem(signup{UserID: 1}, outbox.WithKey("x")),
		outbox.NewItem(signup{UserID: 2}, outbox.WithKey("y")),
		outbox.NewItem(signup{UserID: 3}, outbox.WithKey("x")),
	}
	var (
		ready, done sync.WaitGroup
		start       = make(chan struct{})
		results     = make([][]outbox.Enqueued, n)
		errs        = make([]error, n)
	)
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			tx, err := db.Pool.Begin(ctx)
			ready.Done()
			if err != nil {
				errs[i] = err
				return
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			<-start
			res, err := outbox.EnqueueBatch(ctx, tx, items)
			if err != nil {
				errs[i] = err
				return
			}
			results[i], errs[i] = res, tx.Commit(ctx)
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		for j := range items {
			if results[i][j].ID != results[0][j].ID {
				t.Errorf("goroutine %d item %d: id %d, goroutine 0 got %d", i, j, results[i][j].ID, results[0][j].ID)
			}
		}
		if !results[i][2].Duplicate {
			t.Errorf("goroutine %d: in-batch repeat not a duplicate", i)
		}
		if !results[i][0].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d transactions created key x, want 1", fresh)
	}
	requireCount(t, db, 2)
}

// --- Bad input ---

// TestEnqueueRejectsInvalidInput runs each invalid input through Enqueue
// and EnqueueBatch inside a transaction: the error is typed and names the
// field, the transaction is still usable, and nothing is written.
func TestEnqueueRejectsInvalidInput(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name  string
		msg   outbox.Message
		opts  []outbox.Option
		field string
	}{
		{"nil message", nil, nil, "message"},
		{"typed nil message", (*pointerMsg)(nil), nil, "message"},
		{"empty topic", outbox.Raw{}, nil, "topic"},
		{"topic too long", outbox.Raw{TopicName: long(outbox.MaxTopicLen + 1)}, nil, "topic"},
		{"topic with NUL", outbox.Raw{TopicName: "a\x00b"}, nil, "topic"},
		{"topic not UTF-8", outbox.Raw{TopicName: "a\xffb"}, nil, "topic"},
		{"key too long", signup{}, []outbox.Option{outbox.WithKey(long(outbox.MaxKeyLen + 1))}, "key"},
		{"key with NUL", signup{}, []outbox.Option{outbox.WithKey("a\x00")}, "key"},
		{"key not UTF-8", signup{}, []outbox.Option{outbox.WithKey("\xc3")}, "key"},
		{"ordering key too long", signup{}, []outbox.Option{outbox.WithOrderingKey(long(outbox.MaxKeyLen + 1))}, "ordering key"},
		{"ordering key with NUL", signup{}, []outbox.Option{outbox.WithOrderingKey("\x00")}, "ordering key"},
		{"queue too long", signup{}, []outbox.Option{outbox.WithQueue(long(outbox.MaxQueueLen + 1))}, "queue"},
		{"queue with NUL", signup{}, []outbox.Option{outbox.WithQueue("q\x00")}, "queue"},
		{"priority too high", signup{}, []outbox.Option{outbox.WithPriority(math.MaxInt16 + 1)}, "priority"},
		{"priority too low", signup{}, []outbox.Option{outbox.WithPriority(math.MinInt16 - 1)}, "priority"},
		{"max attempts -1", signup{}, []outbox.Option{outbox.WithMaxAttempts(-1)}, "max attempts"},
		{"max attempts over limit", signup{}, []outbox.Option{outbox.WithMaxAttempts(outbox.MaxAttemptsLimit + 1)}, "max attempts"},
		{"negative delay", signup{}, []outbox.Option{outbox.WithDelay(-time.Second)}, "delay"},
		{"headers too large", signup{}, []outbox.Option{
			outbox.WithHeaders(map[string]string{"h": long(outbox.MaxHeadersBytes - 8 + 1)}),
		}, "headers"},
		{"headers too large when merged", signup{}, []outbox.Option{
			outbox.WithHeaders(map[string]string{"a": long(outbox.MaxHeadersBytes / 2)}),
			outbox.WithHeaders(map[string]string{"b": long(outbox.MaxHeadersBytes / 2)}),
		}, "headers"},
		{"header value with NUL", signup{}, []outbox.Option{outbox.WithHeaders(map[string]string{"h": "a\x00b"})}, "headers"},
		{"header name with NUL", signup{}, []outbox.Option{outbox.WithHeaders(map[string]string{"\x00": "v"})}, "headers"},
		{"payload not encodable", unencodable{C: make(chan int)}, nil, "payload"},
		{"payload string with NUL", signup{Email: "a\x00b"}, nil, "payload"},
		{"raw payload not JSON", outbox.Raw{TopicName: "raw", Payload: json.RawMessage(`{"a":`)}, nil, "payload"},
		{"raw payload two values", outbox.Raw{TopicName: "raw", Payload: json.RawMessage(`{} {}`)}, nil, "payload"},
		{"raw payload not UTF-8", outbox.Raw{TopicName: "raw", Payload: json.RawMessage("\"\xff\"")}, nil, "payload"},
		{"raw payload with escaped NUL", outbox.Raw{TopicName: "raw", Payload: json.RawMessage(`{"a":"x\u0000"}`)}, nil, "payload"},
		{"raw payload with NUL in a key", outbox.Raw{TopicName: "raw", Payload: json.RawMessage(`{"\\\u0000":1}`)}, nil, "payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			ctx := t.Context()
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.Background()) }()

			res, err := outbox.Enqueue(ctx, tx, c.msg, c.opts...)
			if res != (outbox.Enqueued{}) {
				t.Errorf("result %+v alongside an error", res)
			}
			requireInvalid(t, err, c.field)

			batch, err := outbox.EnqueueBatch(ctx, tx, []outbox.Item{
				outbox.NewItem(signup{UserID: 1}),
				outbox.NewItem(c.msg, c.opts...),
			})
			if batch != nil {
				t.Errorf("batch results %+v alongside an error", batch)
			}
			requireInvalid(t, err, c.field)
			if !strings.Contains(err.Error(), "item 1") {
				t.Errorf("batch error %q does not name item 1", err)
			}

			// The error came before the database: the caller's transaction
			// is not aborted, and it holds no entry.
			if n := outboxtest.Count(t, tx, ""); n != 0 {
				t.Fatalf("transaction sees %d entries", n)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			requireCount(t, db, 0)
		})
	}
}

// TestEnqueueAcceptsEscapesThatLookLikeNUL: a payload with a literal
// backslash followed by u0000 is fine; only a real NUL is refused.
func TestEnqueueAcceptsEscapesThatLookLikeNUL(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, s := range []string{`\u0000`, `\\u0000`, `x\`, "\u0001"} {
		res := mustEnqueue(t, db.Pool, signup{Email: s})
		var p signup
		if err := json.Unmarshal(mustGet(t, db.Pool, res.ID).Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.Email != s {
			t.Errorf("email %q round-tripped as %q", s, p.Email)
		}
	}
	res := mustEnqueue(t, db.Pool, outbox.Raw{TopicName: "raw", Payload: json.RawMessage(`{"a":"\\u0000","b":"\u0001"}`)})
	if e := mustGet(t, db.Pool, res.ID); !jsonEqual(t, e.Payload, []byte(`{"a":"\\u0000","b":"\u0001"}`)) {
		t.Errorf("payload %s", e.Payload)
	}
}

// TestEnqueuePayloadTooLarge checks the payload limit of the zero Producer
// and of a Producer with its own limit.
func TestEnqueuePayloadTooLarge(t *testing.T) {
	t.Parallel()
	// rawOfSize returns a Raw whose encoded payload is exactly n bytes.
	rawOfSize := func(n int) outbox.Raw {
		return outbox.Raw{TopicName: "big", Payload: json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`)}
	}
	cases := []struct {
		name     string
		producer outbox.Producer
		limit    int
	}{
		{"default", outbox.Producer{}, outbox.DefaultMaxPayloadBytes},
		{"custom", outbox.Producer{MaxPayloadBytes: 100}, 100},
		{"negative means default", outbox.Producer{MaxPayloadBytes: -1}, outbox.DefaultMaxPayloadBytes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			ctx := t.Context()

			_, err := c.producer.Enqueue(ctx, db.Pool, rawOfSize(c.limit+1))
			if !errors.Is(err, outbox.ErrPayloadTooLarge) {
				t.Fatalf("error %v, want ErrPayloadTooLarge", err)
			}
			if errors.Is(err, outbox.ErrInvalid) {
				t.Errorf("a too-large payload also matches ErrInvalid: %v", err)
			}
			var pe *outbox.PayloadTooLargeError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T, want *PayloadTooLargeError", err)
			}
			if pe.Topic != "big" || pe.Size != c.limit+1 || pe.Limit != c.limit {
				t.Errorf("PayloadTooLargeError %+v, want topic big size %d limit %d", pe, c.limit+1, c.limit)
			}
			_, err = c.producer.EnqueueBatch(ctx, db.Pool, []outbox.Item{outbox.NewItem(rawOfSize(c.limit + 1))})
			if !errors.As(err, &pe) || pe.Size != c.limit+1 {
				t.Fatalf("batch error %v, want *PayloadTooLargeError", err)
			}
			requireCount(t, db, 0)

			// Exactly at the limit is accepted.
			res, err := c.producer.Enqueue(ctx, db.Pool, rawOfSize(c.limit))
			if err != nil {
				t.Fatal(err)
			}
			if e := mustGet(t, db.Pool, res.ID); len(e.Payload) != c.limit {
				t.Errorf("stored payload is %d bytes, want %d", len(e.Payload), c.limit)
			}
		})
	}
	// The package-level Enqueue is the zero Producer.
	t.Run("Enqueue", func(t *testing.T) {
		t.Parallel()
		db := newDB(t)
		_, err := outbox.Enqueue(t.Context(), db.Pool, rawOfSize(outbox.DefaultMaxPayloadBytes+1))
		if !errors.Is(err, outbox.ErrPayloadTooLarge) {
			t.Fatalf("error %v, want ErrPayloadTooLarge", err)
		}
		requireCount(t, db, 0)
	})
}

// TestNilQuerier passes every kind of nil handle to every function.
func TestNilQuerier(t *testing.T) {
	t.Parallel()
	queriers := map[string]outbox.Querier{
		"untyped nil":        nil,
		"nil pgx.Tx":         pgx.Tx(nil),
		"nil *pgxpool.Pool":  (*pgxpool.Pool)(nil),
		"nil *pgx.Conn":      (*pgx.Conn)(nil),
		"SQL(nil)":           outbox.SQL(nil),
		"SQL(nil *sql.Tx)":   outbox.SQL((*sql.Tx)(nil)),
		"SQL(nil *sql.DB)":   outbox.SQL((*sql.DB)(nil)),
		"SQL(nil *sql.Conn)": outbox.SQL((*sql.Conn)(nil)),
	}
	ctx := t.Context()
	for name, q := range queriers {
		calls := map[string]func() error{
			"Enqueue": func() error { _, err := outbox.Enqueue(ctx, q, signup{}); return err },
			"Enqueue invalid": func() error {
				_, err := outbox.Enqueue(ctx, q, nil)
				return err
			},
			"EnqueueBatch": func() error {
				_, err := outbox.EnqueueBatch(ctx, q, []outbox.Item{outbox.NewItem(signup{})})
				return err
			},
			"Get":      func() error { _, err := outbox.Get(ctx, q, 1); return err },
			"GetByKey": func() error { _, err := outbox.GetByKey(ctx, q, "t", "k"); return err },
			"ListDead": func() error { _, err := outbox.ListDead(ctx, q, outbox.DeadFilter{}); return err },
			"Replay":   func() error { _, err := outbox.Replay(ctx, q, outbox.Selection{All: true}); return err },
			"Discard":  func() error { _, err := outbox.Discard(ctx, q, outbox.Selection{All: true}); return err },
		}
		for call, f := range calls {
			if err := f(); !errors.Is(err, outbox.ErrNilQuerier) {
				t.Errorf("%s with %s: %v, want ErrNilQuerier", call, name, err)
			}
		}
	}
}

// TestEnqueueClosedTx enqueues through transactions that were already
// committed or rolled back.
func TestEnqueueClosedTx(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		driverErr error
		open      func(t *testing.T, db *outboxtest.DB, commit bool) outbox.Querier
	}{
		{"pgx.Tx", pgx.ErrTxClosed, func(t *testing.T, db *outboxtest.DB, commit bool) outbox.Querier {
			tx, err := db.Pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				err = tx.Commit(t.Context())
			} else {
				err = tx.Rollback(t.Context())
			}
			if err != nil {
				t.Fatal(err)
			}
			return tx
		}},
		{"sql.Tx", sql.ErrTxDone, func(t *testing.T, db *outboxtest.DB, commit bool) outbox.Querier {
			tx, err := db.SQL.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			return outbox.SQL(tx)
		}},
	}
	for _, c := range cases {
		for _, commit := range []bool{true, false} {
			name := c.name + "/rolled back"
			if commit {
				name = c.name + "/committed"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				db := newDB(t)
				ctx := t.Context()
				q := c.open(t, db, commit)
				calls := map[string]func() error{
					"Enqueue": func() error { _, err := outbox.Enqueue(ctx, q, signup{}); return err },
					"EnqueueBatch": func() error {
						_, err := outbox.EnqueueBatch(ctx, q, []outbox.Item{outbox.NewItem(signup{})})
						return err
					},
					"Get":    func() error { _, err := outbox.Get(ctx, q, 1); return err },
					"Replay": func() error { _, err := outbox.Replay(ctx, q, outbox.Selection{All: true}); return err },
				}
				for call, f := range calls {
					err := f()
					if !errors.Is(err, outbox.ErrTxClosed) || !errors.Is(err, c.driverErr) {
						t.Errorf("%s: %v, want ErrTxClosed and %v", call, err, c.driverErr)
					}
				}
				requireCount(t, db, 0)
			})
		}
	}
}

// TestEnqueueCanceledContext: a cancelled context fails the enqueue with
// the context's error and writes nothing.
func TestEnqueueCanceledContext(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, q := range map[string]outbox.Querier{"pool": db.Pool, "sql.DB": outbox.SQL(db.SQL)} {
		if _, err := outbox.Enqueue(ctx, q, signup{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", name, err)
		}
	}
	requireCount(t, db, 0)
}

// --- Raw messages ---

// TestRawPayload checks that Raw stores its payload as given.
func TestRawPayload(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	cases := []struct {
		name    string
		payload json.RawMessage
		want    string
	}{
		{"object", json.RawMessage(`{"b": 2, "a": [1, "x", null], "n": {"deep": true}}`), `{"a":[1,"x",null],"b":2,"n":{"deep":true}}`},
		{"nil", nil, `{}`},
		{"empty", json.RawMessage{}, `{}`},
		{"array", json.RawMessage(`[1,2]`), `[1,2]`},
		{"string", json.RawMessage(`"hello"`), `"hello"`},
		{"unicode", json.RawMessage(`{"s":"héllo \u00e9 <tag> 😀"}`), `{"s":"héllo é <tag> 😀"}`},
		{"large number", json.RawMessage(`{"n":12345678901234567890}`), `{"n":12345678901234567890}`},
	}
	for _, c := range cases {
		res := mustEnqueue(t, db.Pool, outbox.Raw{TopicName: "raw." + c.name, Payload: c.payload})
		e := mustGet(t, db.Pool, res.ID)
		if e.Topic != "raw."+c.name {
			t.Errorf("%s: topic %q", c.name, e.Topic)
		}
		if !jsonEqual(t, e.Payload, []byte(c.want)) {
			t.Errorf("%s: payload %s, want %s", c.name, e.Payload, c.want)
		}
	}
	// A large integer keeps its digits (jsonEqual compares as float64).
	e, err := outbox.GetByKey(t.Context(), db.Pool, "raw.large number", outboxtest.Entries(t, db.Pool, "raw.large number")[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.Payload), "12345678901234567890") {
		t.Errorf("large number stored as %s", e.Payload)
	}
}

// TestEnqueueBatchDoesNotScanTheTable guards the cost of a batch against
// the size of the table: with a plan cached while the table was empty (the
// state of a fresh deployment, or of a table that retention just emptied),
// a batch of new entries must not read existing rows sequentially.
func TestEnqueueBatchDoesNotScanTheTable(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()

	items := make([]outbox.Item, 100)
	for i := range items {
		items[i] = outbox.NewItem(signup{UserID: int64(i)})
	}
	if _, err := outbox.EnqueueBatch(ctx, conn, items); err != nil { // plans and caches
		t.Fatal(err)
	}
	exec(t, db, `INSERT INTO outbox_entries (topic) SELECT 'filler' FROM generate_series(1, 5000)`)

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := outbox.EnqueueBatch(ctx, tx, items); err != nil {
		t.Fatal(err)
	}
	var seqScans, seqRows int64
	err = tx.QueryRow(ctx, `SELECT seq_scan, seq_tup_read FROM pg_stat_xact_user_tables
		WHERE relid = 'outbox_entries'::regclass`).Scan(&seqScans, &seqRows)
	if err != nil {
		t.Fatal(err)
	}
	if seqScans != 0 {
		t.Errorf("a batch of new entries scanned outbox_entries sequentially %d times (%d rows read)", seqScans, seqRows)
	}
}

// TestEnqueueConflictUnderRepeatableRead: in a REPEATABLE READ transaction
// the same race surfaces as a serialization failure (SQLSTATE 40001), the
// signal to retry the transaction; the retry finds the entry.
func TestEnqueueConflictUnderRepeatableRead(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	txA, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = txA.Rollback(context.Background()) }()
	a := mustEnqueue(t, txA, signup{UserID: 1}, outbox.WithKey("race"))

	txB, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = txB.Rollback(context.Background()) }()
	var pidB int
	if err := txB.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pidB); err != nil {
		t.Fatal(err)
	}
	out := make(chan error, 1)
	go func() {
		_, err := outbox.Enqueue(ctx, txB, signup{UserID: 2}, outbox.WithKey("race"))
		out <- err
	}()
	waitUntilBlocked(t, db, pidB)
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-out
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("B: %v, want a serialization failure", err)
	}
	if err := txB.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	retry, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = retry.Rollback(context.Background()) }()
	if res := mustEnqueue(t, retry, signup{UserID: 2}, outbox.WithKey("race")); res != (outbox.Enqueued{ID: a.ID, Duplicate: true}) {
		t.Fatalf("retry got %+v, want duplicate of %d", res, a.ID)
	}
	if err := retry.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	requireCount(t, db, 1)
}

// TestGeneratedKeys: a key no producer chose is marked key_generated (the
// relay skips processed-key bookkeeping for it) and is a time-ordered
// UUID; a chosen key, or a row inserted by plain SQL, is not marked.
func TestGeneratedKeys(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	uuid7 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	type row struct {
		Key       string
		Generated bool
	}
	read := func(id int64) row {
		t.Helper()
		var r row
		if err := db.Pool.QueryRow(ctx, `SELECT key, key_generated FROM outbox_entries WHERE id = $1`, id).Scan(&r.Key, &r.Generated); err != nil {
			t.Fatal(err)
		}
		return r
	}

	first := read(mustEnqueue(t, db.Pool, signup{UserID: 1}).ID)
	if !first.Generated || !uuid7.MatchString(first.Key) {
		t.Fatalf("Enqueue without a key stored %+v; want a generated UUIDv7-layout key", first)
	}
	if chosen := read(mustEnqueue(t, db.Pool, signup{UserID: 2}, outbox.WithKey("mine")).ID); chosen != (row{"mine", false}) {
		t.Fatalf("Enqueue WithKey stored %+v", chosen)
	}
	var sqlID int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO outbox_entries (topic) VALUES ('plain.sql') RETURNING id`).Scan(&sqlID); err != nil {
		t.Fatal(err)
	}
	if plain := read(sqlID); plain.Generated || !uuid7.MatchString(plain.Key) {
		t.Fatalf("plain SQL insert stored %+v; want the default key, not marked generated (it may be chosen by SQL producers)", plain)
	}

	res, err := outbox.EnqueueBatch(ctx, db.Pool, []outbox.Item{
		outbox.NewItem(signup{UserID: 3}),
		outbox.NewItem(signup{UserID: 4}, outbox.WithKey("batch-mine")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := read(res[0].ID); !r.Generated || !uuid7.MatchString(r.Key) {
		t.Fatalf("batch item without a key stored %+v", r)
	}
	if r := read(res[1].ID); r != (row{"batch-mine", false}) {
		t.Fatalf("batch item with a key stored %+v", r)
	}

	// Time-ordered: a key generated a few milliseconds later sorts after.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		later := read(mustEnqueue(t, db.Pool, signup{UserID: 5}).ID)
		if later.Key[:13] != first.Key[:13] {
			if later.Key < first.Key {
				t.Fatalf("key %s generated after %s sorts before it", later.Key, first.Key)
			}
			return
		}
	}
	t.Fatal("no key with a later millisecond within a minute")
}
