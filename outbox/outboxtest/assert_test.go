package outboxtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

type welcomeEmail struct {
	UserID int    `json:"user_id"`
	Email  string `json:"email"`
}

func (welcomeEmail) Topic() string { return "email.welcome" }

type invoice struct {
	Number string `json:"number"`
}

func (invoice) Topic() string { return "billing.invoice" }

// seed enqueues two welcome emails and one invoice in a transaction it
// leaves open, and returns it.
func seed(t *testing.T, db *outboxtest.DB) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	exec(t, tx, `INSERT INTO outbox_entries (topic, key, payload) VALUES
		('email.welcome', 'welcome:41', '{"user_id": 41, "email": "grace@example.com"}'),
		('email.welcome', 'welcome:42', '{"user_id": 42, "email": "ada@example.com"}')`)
	exec(t, tx, `INSERT INTO outbox_entries (topic, payload, ordering_key, queue, priority)
		VALUES ('billing.invoice', '{"number": "INV-1"}', 'customer-7', 'billing', 5)`)
	return tx
}

func TestRequireEnqueuedSeesTheTestsTransaction(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	tx := seed(t, db)

	got := outboxtest.RequireEnqueued(t, tx, func(p welcomeEmail) bool { return p.UserID == 42 })
	if len(got) != 1 || got[0].Email != "ada@example.com" {
		t.Errorf("matched %+v, want ada's welcome", got)
	}
	all := outboxtest.RequireEnqueued[welcomeEmail](t, tx, nil)
	if len(all) != 2 || all[0].UserID != 41 || all[1].UserID != 42 {
		t.Errorf("all = %+v, want both in id order", all)
	}
	outboxtest.RequireNotEnqueued(t, tx, func(p welcomeEmail) bool { return p.UserID == 43 })

	// Not committed: invisible outside the transaction.
	outboxtest.RequireNotEnqueued[welcomeEmail](t, db.Pool, nil)
	if n := outboxtest.Count(t, db.Pool, ""); n != 0 {
		t.Errorf("pool sees %d uncommitted entries", n)
	}

	if n := outboxtest.Count(t, tx, "email.welcome"); n != 2 {
		t.Errorf("Count(email.welcome) = %d, want 2", n)
	}
	if n := outboxtest.Count(t, tx, ""); n != 3 {
		t.Errorf("Count(all) = %d, want 3", n)
	}
}

func TestEntries(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	tx := seed(t, db)

	es := outboxtest.Entries(t, tx, "billing.invoice")
	if len(es) != 1 {
		t.Fatalf("got %d invoices, want 1", len(es))
	}
	e := es[0]
	if e.ID == 0 || e.Key == "" || e.State != outbox.StatePending || e.Attempt != 0 || e.MaxAttempts <= 0 ||
		e.Queue != "billing" || e.Priority != 5 || e.OrderingKey == nil || *e.OrderingKey != "customer-7" || e.LastError != nil ||
		e.RunAt.IsZero() || len(e.Headers) != 0 || !strings.Contains(string(e.Payload), `"INV-1"`) {
		t.Errorf("entry = %+v", e)
	}
	welcome := outboxtest.Entries(t, tx, "email.welcome")
	if len(welcome) != 2 || welcome[0].Key != "welcome:41" || welcome[0].OrderingKey != nil || welcome[0].Queue != "default" {
		t.Errorf("welcome entries = %+v", welcome)
	}
	if all := outboxtest.Entries(t, tx, ""); len(all) != 3 {
		t.Errorf("all entries: got %d, want 3", len(all))
	}
}

func TestAssertionsFail(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	tx := seed(t, db)

	t.Run("RequireEnqueued without a match", func(t *testing.T) {
		reached := false
		f := runFake(t, func(tb testing.TB) {
			outboxtest.RequireEnqueued(tb, tx, func(p welcomeEmail) bool { return p.UserID == 99 })
			reached = true
		})
		requireFatal(t, f, `no entry of topic "email.welcome" matched, out of 2`, `key="welcome:41"`, `"ada@example.com"`)
		if reached {
			t.Error("RequireEnqueued returned after failing")
		}
	})

	t.Run("RequireEnqueued on an empty topic", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) { outboxtest.RequireEnqueued[welcomeEmail](tb, db.Pool, nil) })
		requireFatal(t, f, `no entry of topic "email.welcome" matched, out of 0`)
	})

	t.Run("RequireNotEnqueued with a match", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) {
			outboxtest.RequireNotEnqueued(tb, tx, func(p welcomeEmail) bool { return p.UserID == 42 })
		})
		requireFatal(t, f, `1 entries of topic "email.welcome" matched, want none`, `key="welcome:42"`)
	})

	t.Run("passing assertions record nothing", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) {
			outboxtest.RequireEnqueued[invoice](tb, tx, nil)
			outboxtest.RequireNotEnqueued(tb, tx, func(p invoice) bool { return p.Number == "INV-2" })
		})
		requirePassed(t, f)
	})
}

func TestAssertionsFailOnBadInput(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	exec(t, db.Pool, `INSERT INTO outbox_entries (topic, payload) VALUES ('email.welcome', '{"user_id": "forty-two"}')`)
	for i := range 7 {
		exec(t, db.Pool, `INSERT INTO outbox_entries (topic, key) VALUES ('many', $1)`, string(rune('a'+i)))
	}

	t.Run("undecodable payload", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) { outboxtest.RequireEnqueued[welcomeEmail](tb, db.Pool, nil) })
		requireFatal(t, f, "decode payload", "forty-two", "welcomeEmail")
	})

	t.Run("long listing is cut", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) {
			outboxtest.RequireEnqueued(tb, db.Pool, func(manyPayload) bool { return false })
		})
		requireFatal(t, f, "out of 7", "... and 2 more")
	})

	t.Run("Topic panics on the zero value", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) { outboxtest.RequireEnqueued[*pointerPayload](tb, db.Pool, nil) })
		requireFatal(t, f, "panicked", "value type")
	})

	t.Run("empty topic", func(t *testing.T) {
		f := runFake(t, func(tb testing.TB) { outboxtest.RequireNotEnqueued[noTopic](tb, db.Pool, nil) })
		requireFatal(t, f, "is empty")
	})

	t.Run("query fails", func(t *testing.T) {
		q := failingQuerier{errors.New("connection reset")}
		for name, fn := range map[string]func(testing.TB){
			"Count":              func(tb testing.TB) { outboxtest.Count(tb, q, "x") },
			"Entries":            func(tb testing.TB) { outboxtest.Entries(tb, q, "x") },
			"RequireEnqueued":    func(tb testing.TB) { outboxtest.RequireEnqueued[invoice](tb, q, nil) },
			"RequireNotEnqueued": func(tb testing.TB) { outboxtest.RequireNotEnqueued[invoice](tb, q, nil) },
		} {
			t.Run(name, func(t *testing.T) {
				requireFatal(t, runFake(t, fn), "connection reset")
			})
		}
	})
}

type manyPayload struct{}

func (manyPayload) Topic() string { return "many" }

type pointerPayload struct{ topic string }

func (p *pointerPayload) Topic() string { return p.topic }

type noTopic struct{}

func (noTopic) Topic() string { return "" }

type failingQuerier struct{ err error }

func (q failingQuerier) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, q.err }

func (q failingQuerier) QueryRow(context.Context, string, ...any) pgx.Row { return failingRow(q) }

type failingRow struct{ err error }

func (r failingRow) Scan(...any) error { return r.err }
