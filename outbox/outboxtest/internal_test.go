package outboxtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/internal/pglocal"
	"github.com/txoutbox/txoutbox/internal/throwaway"
)

// fakeSource is a throwaway source with a fixed answer.
type fakeSource struct {
	kind     throwaway.Kind
	probeErr error
	startErr error
	url      string

	starts atomic.Int32
	stops  atomic.Int32
}

func (f *fakeSource) Kind() throwaway.Kind { return f.kind }

func (f *fakeSource) Probe(context.Context) error { return f.probeErr }

func (f *fakeSource) Start(context.Context, throwaway.Logf) (*throwaway.Server, error) {
	f.starts.Add(1)
	if f.startErr != nil {
		return nil, f.startErr
	}
	return throwaway.NewServer(f.url, f.kind, "fake "+string(f.kind), func(context.Context) error {
		f.stops.Add(1)
		return nil
	}), nil
}

// env returns a getenv over a fixed environment.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// fakeResolver returns a resolver over the given sources, as Main would
// run it.
func fakeResolver(srcs ...throwaway.Source) *resolver {
	r := &resolver{sources: func(string) []throwaway.Source { return srcs }}
	r.mainActive.Store(true)
	return r
}

const (
	containerURL = "postgres://postgres:postgres@127.0.0.1:40001/postgres?sslmode=disable"
	localURL     = "postgres://postgres@127.0.0.1:40002/postgres?sslmode=disable"
)

// TestResolveNothingAvailable is the fresh checkout: no URL, no Docker
// engine, no server binaries (found through the real finder, pointed at
// nothing).
func TestResolveNothingAvailable(t *testing.T) {
	t.Parallel()
	noDocker := &fakeSource{kind: throwaway.Container,
		probeErr: errors.New("no Docker engine answers: Cannot connect to the Docker daemon at unix:///var/run/docker.sock")}
	noBinaries := throwaway.LocalSource(pglocal.Finder{PgConfig: "txoutbox-test-no-pg_config", Globs: []string{}})
	for _, val := range []string{"", "   "} {
		res := fakeResolver(noDocker, noBinaries)
		_, err := res.resolve(env(envDatabaseURL, val), t.Logf)
		if !errors.Is(err, errNoServer) || !errors.Is(err, pglocal.ErrNoBinaries) {
			t.Fatalf("URL %q: err = %v, want errNoServer and pglocal.ErrNoBinaries", val, err)
		}
		msg := err.Error()
		if val == "" {
			t.Logf("the message:\n%s", msg)
		}
		for _, want := range []string{
			"set TXOUTBOX_TEST_DATABASE_URL", "CREATE DATABASE", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			"start a Docker engine", "postgres:17", "TXOUTBOX_TEST_POSTGRES_IMAGE",
			"install the PostgreSQL server binaries", "apt-get install postgresql", "brew install",
			"tried: container unavailable: no Docker engine answers: Cannot connect to the Docker daemon",
			"local unavailable: pglocal: no PostgreSQL server binaries", "txoutbox-test-no-pg_config is not on PATH",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("message lacks %q:\n%s", want, msg)
			}
		}
	}
	if n := noDocker.starts.Load(); n != 0 {
		t.Errorf("started an unavailable source %d times", n)
	}
}

func TestResolveURLFirst(t *testing.T) {
	t.Parallel()
	const u = "postgres://alice:secret@db.example:6543/postgres?sslmode=disable"
	ctr := &fakeSource{kind: throwaway.Container, url: containerURL}
	res := fakeResolver(ctr)
	srv, err := res.resolve(env(envDatabaseURL, u), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if srv.adminURL != u || srv.source != envDatabaseURL || srv.addr != "db.example:6543" {
		t.Errorf("server = %+v", srv)
	}
	if strings.Contains(srv.addr+srv.source, "secret") {
		t.Errorf("loggable fields carry the password: %+v", srv)
	}
	if ctr.starts.Load() != 0 {
		t.Error("started a container although the URL is set")
	}
	if _, err := res.resolve(env(envDatabaseURL, "postgres://[::1"), t.Logf); err == nil || !strings.Contains(err.Error(), envDatabaseURL) {
		t.Errorf("malformed URL: err = %v, want one naming %s", err, envDatabaseURL)
	}
}

func TestResolveContainerThenLocal(t *testing.T) {
	t.Parallel()
	t.Run("container when Docker answers, once per process", func(t *testing.T) {
		ctr := &fakeSource{kind: throwaway.Container, url: containerURL}
		local := &fakeSource{kind: throwaway.Local, url: localURL}
		res := fakeResolver(ctr, local)
		for range 3 {
			srv, err := res.resolve(env(), t.Logf)
			if err != nil || srv.adminURL != containerURL || srv.source != "fake container" || srv.addr != "127.0.0.1:40001" {
				t.Fatalf("got %+v, %v; want the container", srv, err)
			}
		}
		if ctr.starts.Load() != 1 || local.starts.Load() != 0 {
			t.Errorf("starts: container %d, local %d; want 1 and 0", ctr.starts.Load(), local.starts.Load())
		}
	})
	t.Run("local when Docker does not answer", func(t *testing.T) {
		ctr := &fakeSource{kind: throwaway.Container, probeErr: errors.New("no Docker engine answers")}
		local := &fakeSource{kind: throwaway.Local, url: localURL}
		srv, err := fakeResolver(ctr, local).resolve(env(), t.Logf)
		if err != nil || srv.adminURL != localURL {
			t.Fatalf("got %+v, %v; want the local cluster", srv, err)
		}
		if !strings.HasSuffix(srv.source, "; container unavailable") {
			t.Errorf("source %q does not say why the container was passed over", srv.source)
		}
	})
	t.Run("local when the container fails to start", func(t *testing.T) {
		ctr := &fakeSource{kind: throwaway.Container, startErr: errors.New("image postgres:17 is not present and cannot be pulled")}
		local := &fakeSource{kind: throwaway.Local, url: localURL}
		res := fakeResolver(ctr, local)
		for range 2 {
			srv, err := res.resolve(env(), t.Logf)
			if err != nil || srv.adminURL != localURL || !strings.HasSuffix(srv.source, "; container failed to start") {
				t.Fatalf("got %+v, %v; want the local cluster, saying why not the container", srv, err)
			}
		}
		if ctr.starts.Load() != 1 {
			t.Errorf("container start tried %d times, want once per process", ctr.starts.Load())
		}
	})
}

func TestResolveForced(t *testing.T) {
	t.Parallel()
	const u = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	ctr := &fakeSource{kind: throwaway.Container, url: containerURL}
	local := &fakeSource{kind: throwaway.Local, url: localURL}
	res := fakeResolver(ctr, local)

	for _, c := range []struct{ source, url, want string }{
		{"url", u, u},
		{"container", u, containerURL},
		{"local", u, localURL},
		{" local ", "", localURL},
	} {
		srv, err := res.resolve(env(envSource, c.source, envDatabaseURL, c.url), t.Logf)
		if err != nil || srv.adminURL != c.want {
			t.Errorf("%s=%q: got %+v, %v; want %s", envSource, c.source, srv, err, c.want)
		}
	}

	_, err := res.resolve(env(envSource, "url"), t.Logf)
	if err == nil || !strings.Contains(err.Error(), "TXOUTBOX_TEST_SOURCE=url, but TXOUTBOX_TEST_DATABASE_URL is not set") {
		t.Errorf("forced url without one: %v", err)
	}
	_, err = res.resolve(env(envSource, "docker"), t.Logf)
	if err == nil || !strings.Contains(err.Error(), `TXOUTBOX_TEST_SOURCE="docker": want url, container or local`) {
		t.Errorf("bad value: %v", err)
	}

	// A forced source that is unavailable fails; it does not fall back.
	noDocker := &fakeSource{kind: throwaway.Container, probeErr: errors.New("no Docker engine answers")}
	local2 := &fakeSource{kind: throwaway.Local, url: localURL}
	_, err = fakeResolver(noDocker, local2).resolve(env(envSource, "container"), t.Logf)
	if err == nil || errors.Is(err, errNoServer) || local2.starts.Load() != 0 ||
		!strings.Contains(err.Error(), "TXOUTBOX_TEST_SOURCE=container, but container unavailable: no Docker engine answers") ||
		!strings.Contains(err.Error(), "start a Docker engine") {
		t.Errorf("forced unavailable container: %v (local starts: %d)", err, local2.starts.Load())
	}
}

func TestResolverCloseStopsWhatItStarted(t *testing.T) {
	t.Parallel()
	ctr := &fakeSource{kind: throwaway.Container, url: containerURL}
	local := &fakeSource{kind: throwaway.Local, url: localURL}
	res := fakeResolver(ctr, local)
	if _, err := res.resolve(env(), t.Logf); err != nil {
		t.Fatal(err)
	}
	if _, err := res.resolve(env(envSource, "local"), t.Logf); err != nil {
		t.Fatal(err)
	}
	if err := res.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ctr.stops.Load() != 1 || local.stops.Load() != 1 {
		t.Errorf("stops: container %d, local %d; want 1 each", ctr.stops.Load(), local.stops.Load())
	}
	// A later test starts anew.
	if _, err := res.resolve(env(), t.Logf); err != nil || ctr.starts.Load() != 2 {
		t.Errorf("after close: err %v, container starts %d; want a second start", err, ctr.starts.Load())
	}
	_ = res.close(context.Background())
}

// fakeM is a testing.M whose tests start a server and end with code.
type fakeM struct {
	res  *resolver
	code int
	t    *testing.T
}

func (m fakeM) Run() int {
	if _, err := m.res.resolve(env(), m.t.Logf); err != nil {
		m.t.Error(err)
	}
	if !m.res.mainActive.Load() {
		m.t.Error("mainActive not set while the tests run")
	}
	return m.code
}

func TestCleanupStopsServersAfterFailingTests(t *testing.T) {
	t.Parallel()
	for _, code := range []int{0, 1} {
		ctr := &fakeSource{kind: throwaway.Container, url: containerURL}
		res := fakeResolver(ctr)
		res.mainActive.Store(false)
		got := cleanupM{m: fakeM{res: res, code: code, t: t}, res: res, stderr: io.Discard}.Run()
		if got != code {
			t.Errorf("Run() = %d, want the tests' %d", got, code)
		}
		if ctr.stops.Load() != 1 {
			t.Errorf("tests exiting %d: container stopped %d times, want 1", code, ctr.stops.Load())
		}
		if res.mainActive.Load() {
			t.Error("mainActive still set")
		}
	}
}

func TestCleanupFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	res := &resolver{sources: func(string) []throwaway.Source { return []throwaway.Source{stuckSource{}} }}
	var stderr strings.Builder
	if got := (cleanupM{m: fakeM{res: res, t: t}, res: res, stderr: &stderr}).Run(); got != 1 {
		t.Errorf("Run() = %d after a failed cleanup, want 1", got)
	}
	if want := "outboxtest: after the tests: outboxtest: stop stuck: container removal refused"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
}

func TestWarnsWithoutMain(t *testing.T) {
	t.Parallel()
	local := &fakeSource{kind: throwaway.Local, url: localURL}
	res := &resolver{sources: func(string) []throwaway.Source { return []throwaway.Source{local} }}
	var logs []string
	logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	if _, err := res.resolve(env(), logf); err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(logs, "\n"); !strings.Contains(all, "WARNING: TestMain does not run the tests through outboxtest.Main") ||
		!strings.Contains(all, "outboxtest.Main(m)") {
		t.Errorf("no warning about Main in the log:\n%s", all)
	}
	_ = res.close(context.Background())
}

// stuckSource starts a server that cannot be stopped.
type stuckSource struct{}

func (stuckSource) Kind() throwaway.Kind        { return throwaway.Container }
func (stuckSource) Probe(context.Context) error { return nil }
func (stuckSource) Start(context.Context, throwaway.Logf) (*throwaway.Server, error) {
	return throwaway.NewServer(containerURL, throwaway.Container, "stuck", func(context.Context) error {
		return errors.New("container removal refused")
	}), nil
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
	_, err := newDB(t, os.Getenv, processResolver, opts)
	if err == nil || !strings.Contains(err.Error(), "Options.Migrate on template") {
		t.Fatalf("err = %v, want the Migrate failure", err)
	}

	name, err := templateName(key)
	if err != nil {
		t.Fatal(err)
	}
	wip := wipPrefix + strings.TrimPrefix(name, templatePrefix)
	ctx := context.Background()
	srv, err := processResolver.resolve(os.Getenv, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.adminURL)
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

// TestSourceInUse logs which server this run uses and, when
// TXOUTBOX_TEST_SOURCE forces one, checks that it is the one used: CI runs
// the package once per source to show that the same tests pass on each.
func TestSourceInUse(t *testing.T) {
	t.Parallel()
	srv, err := processResolver.resolve(os.Getenv, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server: %s at %s", srv.source, srv.addr)
	want := map[string]string{
		sourceURL:       envDatabaseURL,
		sourceContainer: " container (",
		sourceLocal:     "a local cluster from ",
	}[strings.TrimSpace(os.Getenv(envSource))]
	if !strings.Contains(srv.source, want) {
		t.Errorf("%s=%s, but the server is %s", envSource, os.Getenv(envSource), srv.source)
	}
}
