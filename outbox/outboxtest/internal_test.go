package outboxtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestResolveServerUnset(t *testing.T) {
	t.Parallel()
	for _, val := range []string{"", "   "} {
		getenv := func(string) string { return val }
		_, err := resolveServer(context.Background(), getenv, defaultSources())
		if !errors.Is(err, errNoServer) {
			t.Fatalf("value %q: err = %v, want errNoServer", val, err)
		}
		msg := err.Error()
		for _, want := range []string{"set TXOUTBOX_TEST_DATABASE_URL", "CREATE DATABASE", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not contain %q", msg, want)
			}
		}
	}
}

func TestResolveServerFromEnv(t *testing.T) {
	t.Parallel()
	const u = "postgres://alice:secret@db.example:6543/postgres?sslmode=disable"
	getenv := func(k string) string {
		if k == envDatabaseURL {
			return u
		}
		return ""
	}
	srv, err := resolveServer(context.Background(), getenv, defaultSources())
	if err != nil {
		t.Fatal(err)
	}
	if srv.adminURL != u || srv.source != envDatabaseURL || srv.addr != "db.example:6543" {
		t.Errorf("server = %+v", srv)
	}
	if strings.Contains(srv.addr+srv.source, "secret") {
		t.Errorf("loggable fields carry the password: %+v", srv)
	}

	bad := func(string) string { return "postgres://[::1" }
	if _, err := resolveServer(context.Background(), bad, defaultSources()); err == nil || !strings.Contains(err.Error(), envDatabaseURL) {
		t.Errorf("malformed URL: err = %v, want one naming %s", err, envDatabaseURL)
	}
}

// fakeSource is a source with a fixed answer.
type fakeSource struct {
	srv server
	ok  bool
	err error
}

func (f fakeSource) name() string { return "fake" }
func (f fakeSource) server(context.Context, func(string) string) (server, bool, error) {
	return f.srv, f.ok, f.err
}

func TestResolveServerTriesSourcesInOrder(t *testing.T) {
	t.Parallel()
	none := func(string) string { return "" }
	a := fakeSource{srv: server{source: "a"}, ok: true}
	b := fakeSource{srv: server{source: "b"}, ok: true}

	srv, err := resolveServer(context.Background(), none, []source{fakeSource{}, a, b})
	if err != nil || srv.source != "a" {
		t.Errorf("got %+v, %v; want the first source that applies", srv, err)
	}
	boom := errors.New("boom")
	_, err = resolveServer(context.Background(), none, []source{fakeSource{err: boom}, a})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the failing source's error", err)
	}
}

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, wantHost, wantUser string }{
		{"postgres://alice:pw@h1:5433/postgres?sslmode=disable&application_name=x", "h1", "alice"},
		{"postgresql://h2/admin?dbname=other&sslmode=disable", "h2", ""},
		{"host=h3 port=5432 user=bob dbname=postgres sslmode=disable", "h3", "bob"},
	}
	for _, c := range cases {
		got, err := databaseURL(c.in, "txoutbox_t_abc")
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Fatalf("%s -> %s: %v", c.in, got, err)
		}
		if cfg.Database != "txoutbox_t_abc" || cfg.Host != c.wantHost || (c.wantUser != "" && cfg.User != c.wantUser) {
			t.Errorf("%s -> %s: database=%q host=%q user=%q", c.in, got, cfg.Database, cfg.Host, cfg.User)
		}
	}
}

func TestTemplateName(t *testing.T) {
	t.Parallel()
	a1, err := templateName("")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := templateName("")
	b, _ := templateName("app-v1")
	if a1 != a2 {
		t.Errorf("name not deterministic: %s vs %s", a1, a2)
	}
	if a1 == b {
		t.Errorf("key does not change the name: %s", a1)
	}
	for _, n := range []string{a1, b} {
		if !strings.HasPrefix(n, templatePrefix) || len(wipPrefix)+len(n)-len(templatePrefix) > 63 {
			t.Errorf("bad template name %q", n)
		}
	}
}

func TestRetryInUse(t *testing.T) {
	t.Parallel()
	inUse := &pgconn.PgError{Code: "55006", Message: "source database is being accessed by other users"}

	calls := 0
	err := retryInUse(context.Background(), func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("create: %w", inUse)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("transient: err = %v after %d calls, want success on the 3rd", err, calls)
	}

	other := errors.New("permission denied")
	calls = 0
	err = retryInUse(context.Background(), func() error { calls++; return other })
	if !errors.Is(err, other) || calls != 1 {
		t.Errorf("other error: err = %v after %d calls, want it at once", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = retryInUse(ctx, func() error { return inUse })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, inUse) {
		t.Errorf("cancelled: err = %v, want both the cause and context.Canceled", err)
	}
}

// TestFailedTemplateLeavesNothing checks that a template whose Migrate
// fails is neither published nor left half-built.
func TestFailedTemplateLeavesNothing(t *testing.T) {
	t.Parallel()
	// A key of its own, so that Migrate runs even when earlier runs left
	// templates behind.
	key := fmt.Sprintf("outboxtest-selftest-failing-%d", time.Now().UnixNano())
	opts := Options{
		TemplateKey: key,
		Migrate: func(ctx context.Context, db *sql.DB) error {
			_, err := db.ExecContext(ctx, `CREATE TABLE broken (`)
			return err
		},
	}
	_, err := newDB(t, os.Getenv, defaultSources(), opts)
	if err == nil || !strings.Contains(err.Error(), "Options.Migrate on template") {
		t.Fatalf("err = %v, want the Migrate failure", err)
	}

	name, err := templateName(key)
	if err != nil {
		t.Fatal(err)
	}
	wip := wipPrefix + strings.TrimPrefix(name, templatePrefix)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv(envDatabaseURL))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, n := range []string{name, wip} {
		exists, err := databaseExists(ctx, conn, n)
		if err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s exists after a failed build", n)
		}
	}
}
