package outboxtest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// fakeTB records failures instead of failing the test, so a test can check
// that a helper fails when it should. Like the real thing, its FailNow
// stops the calling goroutine; run helpers against it with runFake.
type fakeTB struct {
	testing.TB // the real test, for Logf, Cleanup, Context and the like

	mu       sync.Mutex
	messages []string
	failed   bool
	stopped  bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fail() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeTB) FailNow() {
	f.mu.Lock()
	f.failed, f.stopped = true, true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) record(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.messages = append(f.messages, msg)
}

func (f *fakeTB) Error(args ...any)                 { f.record(fmt.Sprint(args...)) }
func (f *fakeTB) Errorf(format string, args ...any) { f.record(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Fatal(args ...any) {
	f.record(fmt.Sprint(args...))
	f.FailNow()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.record(fmt.Sprintf(format, args...))
	f.FailNow()
}

// runFake runs fn against a fakeTB on its own goroutine, as the testing
// package runs a test, and returns the fake once fn has returned or been
// stopped by FailNow.
func runFake(t *testing.T, fn func(tb testing.TB)) *fakeTB {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// requireFatal checks that f was stopped by a fatal failure whose message
// contains every one of wants.
func requireFatal(t *testing.T, f *fakeTB, wants ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		t.Fatalf("helper did not stop the test; messages: %q", f.messages)
	}
	all := strings.Join(f.messages, "\n")
	for _, w := range wants {
		if !strings.Contains(all, w) {
			t.Errorf("failure message does not contain %q:\n%s", w, all)
		}
	}
}

// requirePassed checks that f recorded no failure.
func requirePassed(t *testing.T, f *fakeTB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed {
		t.Fatalf("helper failed unexpectedly: %q", f.messages)
	}
}

// databaseExists reports whether database name exists on the test server.
func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, outboxtest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

// execer is what pgx.Tx, *pgx.Conn and *pgxpool.Pool have in common for
// statements.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// exec runs one statement on q and fails t on error.
func exec(t *testing.T, q execer, sql string, args ...any) {
	t.Helper()
	if _, err := q.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
