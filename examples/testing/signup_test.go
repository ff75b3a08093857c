package signup_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	signup "github.com/txoutbox/txoutbox/examples/testing"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// TestMain runs the tests through outboxtest.Main, which stops the
// throwaway PostgreSQL server (container or local cluster) that the tests
// may have started, even when they fail.
func TestMain(m *testing.M) { outboxtest.Main(m) }

// newDB returns a database private to the test with txoutbox's schema and
// the application's own.
func newDB(t *testing.T) *outboxtest.DB {
	t.Helper()
	key, err := signup.MigrationsKey()
	if err != nil {
		t.Fatal(err)
	}
	return outboxtest.NewWithOptions(t, outboxtest.Options{
		Migrate:     signup.Migrate,
		TemplateKey: key,
	})
}

func TestRegisterEnqueuesInItsTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newDB(t)

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	id, err := signup.Register(ctx, tx, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}

	// The transaction sees its own entries...
	outboxtest.RequireEnqueued(t, tx, func(m signup.WelcomeEmail) bool {
		return m.UserID == id && m.Email == "ada@example.com"
	})
	outboxtest.RequireEnqueued(t, tx, func(m signup.SignupAudit) bool { return m.UserID == id })
	if es := outboxtest.Entries(t, tx, signup.WelcomeEmail{}.Topic()); len(es) != 1 || es[0].Key != "welcome:1" {
		t.Errorf("welcome entries = %+v, want one keyed welcome:1", es)
	}
	// ...and nobody else does until it commits.
	outboxtest.RequireNotEnqueued[signup.WelcomeEmail](t, db.Pool, nil)

	// Rolled back, the user and the entries are gone together.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := outboxtest.Count(t, db.Pool, ""); n != 0 {
		t.Errorf("%d entries after rollback, want 0", n)
	}
}

func TestRegisterTwiceEnqueuesOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newDB(t)

	register := func() error {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		if _, err := signup.Register(ctx, tx, "grace@example.com"); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := register(); err != nil {
		t.Fatal(err)
	}
	if err := register(); err == nil {
		t.Fatal("second signup with the same email succeeded")
	}
	if n := outboxtest.Count(t, db.Pool, signup.WelcomeEmail{}.Topic()); n != 1 {
		t.Errorf("%d welcome emails enqueued, want 1", n)
	}
}

// fakeMailer records what it sends.
type fakeMailer struct {
	mu   sync.Mutex
	sent []string // to + " " + idempotency key
	got  chan struct{}
}

func (m *fakeMailer) Send(_ context.Context, to, _, key string) error {
	m.mu.Lock()
	m.sent = append(m.sent, to+" "+key)
	m.mu.Unlock()
	m.got <- struct{}{}
	return nil
}

// TestRelayRunsTheHandlers commits a signup, runs a relay with the
// application's handlers on the test's database, and checks the effects.
func TestRelayRunsTheHandlers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newDB(t)

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := signup.Register(ctx, tx, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	mailer := &fakeMailer{got: make(chan struct{}, 10)}
	r, err := relay.New(db.Pool, relay.Config{
		Handlers:          signup.Handlers(mailer),
		PollInterval:      50 * time.Millisecond, // fast tests; LISTEN/NOTIFY usually wakes it sooner
		RetentionInterval: -1,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	// Wait for both entries to be done: the email is sent, the audit row
	// written.
	deadline := time.Now().Add(30 * time.Second)
	for {
		es := outboxtest.Entries(t, db.Pool, "")
		if len(es) == 2 && es[0].State == "done" && es[1].State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries not done after 30s: %+v", es)
		}
		time.Sleep(20 * time.Millisecond)
	}

	mailer.mu.Lock()
	sent := mailer.sent
	mailer.mu.Unlock()
	if len(sent) != 1 || sent[0] != "ada@example.com welcome:1" {
		t.Errorf("sent %q, want one welcome email keyed welcome:1", sent)
	}
	var audits int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE user_id = $1 AND event = 'signup'`, id).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	if audits != 1 {
		t.Errorf("%d audit rows, want 1", audits)
	}
}
