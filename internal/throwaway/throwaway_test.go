package throwaway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pglocal"
)

// childEnv, when set, turns the test binary into a process that tries the
// usual sources and prints the outcome (see TestNothingAvailable).
const childEnv = "TXOUTBOX_THROWAWAY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		srv, err := Start(context.Background(), Sources(""), nil)
		if err == nil {
			fmt.Printf("started %s\n", srv.Description)
			_ = srv.Close(context.Background())
			os.Exit(1)
		}
		fmt.Printf("error: %v\n", err)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

type fakeSource struct {
	kind     Kind
	probeErr error
	startErr error
	starts   atomic.Int32
}

func (f *fakeSource) Kind() Kind                  { return f.kind }
func (f *fakeSource) Probe(context.Context) error { return f.probeErr }
func (f *fakeSource) Start(_ context.Context, logf Logf) (*Server, error) {
	f.starts.Add(1)
	if f.startErr != nil {
		return nil, f.startErr
	}
	logf("fake %s started", f.kind)
	return NewServer("postgres://fake/"+string(f.kind), f.kind, "fake", nil), nil
}

func TestStartTakesTheFirstThatWorks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	a := &fakeSource{kind: Container}
	b := &fakeSource{kind: Local}
	srv, err := Start(ctx, []Source{a, b}, t.Logf)
	if err != nil || srv.Kind != Container || b.starts.Load() != 0 {
		t.Errorf("both available: got %+v, %v; want the first, the second untouched", srv, err)
	}

	a = &fakeSource{kind: Container, probeErr: errors.New("no Docker engine answers")}
	b = &fakeSource{kind: Local}
	srv, err = Start(ctx, []Source{a, b}, nil)
	if err != nil || srv.Kind != Local || a.starts.Load() != 0 {
		t.Errorf("first unavailable: got %+v, %v; want the second, the first not started", srv, err)
	}

	a = &fakeSource{kind: Container, startErr: errors.New("pull failed")}
	b = &fakeSource{kind: Local}
	srv, err = Start(ctx, []Source{a, b}, t.Logf)
	if err != nil || srv.Kind != Local || a.starts.Load() != 1 {
		t.Errorf("first fails to start: got %+v, %v; want the second", srv, err)
	}
}

func TestStartSaysWhatWasTried(t *testing.T) {
	t.Parallel()
	noDocker := errors.New("no Docker engine answers")
	_, err := Start(context.Background(), []Source{
		&fakeSource{kind: Container, probeErr: noDocker},
		LocalSource(pglocal.Finder{PgConfig: "txoutbox-no-such-pg_config", Globs: []string{}}),
	}, t.Logf)
	var e *Error
	if !errors.As(err, &e) || len(e.Attempts) != 2 {
		t.Fatalf("err = %v, want an *Error with two attempts", err)
	}
	if !errors.Is(err, noDocker) || !errors.Is(err, pglocal.ErrNoBinaries) {
		t.Errorf("err = %v, want it to wrap both causes", err)
	}
	for _, want := range []string{"container unavailable: no Docker engine answers", "local unavailable: pglocal: no PostgreSQL server binaries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}

	_, err = Start(context.Background(), []Source{&fakeSource{kind: Local, startErr: errors.New("initdb failed")}}, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "local failed to start: initdb failed") {
		t.Errorf("start failure: %v", err)
	}
	if _, err := Start(context.Background(), nil, nil); err == nil || !strings.Contains(err.Error(), "no source was tried") {
		t.Errorf("no sources: %v", err)
	}
}

func TestHint(t *testing.T) {
	t.Parallel()
	if !strings.Contains(Hint(Container), "Docker") || !strings.Contains(Hint(Local), "apt-get install postgresql") {
		t.Errorf("hints: %q, %q", Hint(Container), Hint(Local))
	}
}

func TestServerCloseOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	boom := errors.New("boom")
	s := NewServer("u", Local, "d", func(context.Context) error { calls.Add(1); return boom })
	for range 2 {
		if err := s.Close(context.Background()); !errors.Is(err, boom) {
			t.Errorf("Close = %v, want boom", err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("stop called %d times", calls.Load())
	}
}

func TestOwnerParts(t *testing.T) {
	t.Parallel()
	host, boot, pid := ownerParts("ci-runner/0f1e-22/4242")
	if host != "ci-runner" || boot != "0f1e-22" || pid != 4242 {
		t.Errorf("got %q %q %d", host, boot, pid)
	}
	if _, _, pid := ownerParts("garbage"); pid != 0 {
		t.Errorf("garbage: pid %d", pid)
	}
	if _, _, pid := ownerParts("h//x"); pid != 0 {
		t.Errorf("bad pid: %d", pid)
	}
	h, _, p := ownerParts(ownerID())
	if self, _ := os.Hostname(); h != self || p != os.Getpid() {
		t.Errorf("ownerID() = %q", ownerID())
	}
}

// TestLocalSource starts a real cluster from this machine's binaries.
func TestLocalSource(t *testing.T) {
	t.Parallel()
	src := LocalSource(pglocal.Finder{})
	if err := src.Probe(context.Background()); err != nil {
		t.Skipf("no local binaries, so the local source cannot be shown to work here: %v", err)
	}
	srv, err := Start(context.Background(), []Source{src}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	checkServer(t, srv, Local)
}

// TestContainerSource starts a real container of TXOUTBOX_TEST_POSTGRES_IMAGE
// (default DefaultImage). It skips when no Docker engine answers, unless
// TXOUTBOX_TEST_SOURCE=container demands the container path.
func TestContainerSource(t *testing.T) {
	t.Parallel()
	src := ContainerSource(os.Getenv("TXOUTBOX_TEST_POSTGRES_IMAGE"))
	if err := src.Probe(context.Background()); err != nil {
		if os.Getenv("TXOUTBOX_TEST_SOURCE") == "container" {
			t.Fatalf("TXOUTBOX_TEST_SOURCE=container, but %v", err)
		}
		t.Skipf("the container source cannot be shown to work here: %v", err)
	}
	srv, err := Start(context.Background(), []Source{src}, t.Logf)
	if errors.Is(err, ErrImageUnavailable) && os.Getenv("TXOUTBOX_TEST_SOURCE") != "container" {
		t.Skipf("a Docker engine answers, but the container source cannot be shown to work here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	checkServer(t, srv, Container)
}

// checkServer checks that srv works and that Close stops it.
func checkServer(t *testing.T, srv *Server, kind Kind) {
	t.Helper()
	ctx := context.Background()
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = srv.Close(ctx)
		}
	})
	if srv.Kind != kind || srv.Description == "" {
		t.Errorf("server = %+v", srv)
	}
	conn, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var fsync string
	var super bool
	err = conn.QueryRow(ctx, `SELECT current_setting('fsync'), rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&fsync, &super)
	_ = conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fsync != "off" || !super {
		t.Errorf("fsync=%s superuser=%v, want off and true", fsync, super)
	}
	closed = true
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, srv.URL); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("%s still answers after Close", srv.Description)
	}
}

// TestNothingAvailable runs the real probes in a process that sees no
// Docker engine and no server binaries: a mount namespace (so it needs
// root and unshare) where /run, /usr/lib/postgresql and pg_config are
// hidden, and HOME and DOCKER_HOST point nowhere.
func TestNothingAvailable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to hide Docker and the binaries in a mount namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1), to hide Docker and the binaries in a mount namespace")
	}
	script := `set -e
mount --make-rprivate /
for d in /run /usr/lib/postgresql; do if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi; done
pc=$(command -v pg_config || true)
if [ -n "$pc" ]; then mount --bind /dev/null "$pc"; fi
exec "$0" -test.run='^$'`
	cmd := exec.Command(unshare, "-m", "sh", "-c", script, os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOME="+t.TempDir(), "DOCKER_HOST=", "DOCKER_CONTEXT=")
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "unshare failed") {
		t.Skipf("no mount namespace here: %s", out)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
	for _, want := range []string{"error: throwaway: no PostgreSQL server: container unavailable: no Docker engine answers",
		"local unavailable: pglocal: no PostgreSQL server binaries", "apt-get install postgresql"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q", want)
		}
	}
}
