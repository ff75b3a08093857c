//go:build unix

package pglocal_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pglocal"
)

// childEnv, when set, turns the test binary into a process that starts a
// cluster in the directory the variable names, prints its pid, port and
// directory, and waits to be killed.
const childEnv = "TXOUTBOX_PGLOCAL_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(child(dir))
	}
	goleak.VerifyTestMain(m)
}

func child(dir string) int {
	c, err := pglocal.Start(context.Background(), pglocal.Options{TempDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%d %d %s\n", c.PID(), c.Port(), c.Dir())
	select {} // until killed
}

// start starts a cluster closed at the end of the test.
func start(t *testing.T, opts pglocal.Options) *pglocal.Cluster {
	t.Helper()
	begin := time.Now()
	c, err := pglocal.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster on port %d from %s in %s, started in %v", c.Port(), c.BinDir(), c.Dir(), time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// sharedTempDir returns a fresh directory the postgres OS user can reach
// when the tests run as root (t.TempDir's are private to the current user).
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "txoutbox-pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestKillAndStartAgainKeepsPortAndData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := start(t, pglocal.Options{})
	port, url := c.Port(), c.URL()
	if !strings.Contains(url, "127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(url, "sslmode=disable") {
		t.Errorf("URL() = %s", url)
	}

	conn := connect(t, url)
	exec1(t, conn, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the crash')`)
	var fsync, listen string
	if err := conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('listen_addresses')`).Scan(&fsync, &listen); err != nil {
		t.Fatal(err)
	}
	if fsync != "off" || listen != "127.0.0.1" {
		t.Errorf("fsync=%s listen_addresses=%s, want off and 127.0.0.1", fsync, listen)
	}

	pid := c.PID()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if c.PID() != 0 {
		t.Errorf("PID() = %d after Kill, want 0", c.PID())
	}
	if processExists(pid) {
		t.Errorf("postmaster %d still exists after Kill", pid)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("old connection still works after Kill")
	}
	if _, err := pgx.Connect(ctx, url); err == nil {
		t.Error("connected to a killed cluster")
	}
	if err := c.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Port() != port || c.URL() != url {
		t.Errorf("restarted on %s, want %s", c.URL(), url)
	}
	if err := c.Start(ctx); err == nil {
		t.Error("Start on a running cluster succeeded")
	}
	conn2 := connect(t, url)
	var v string
	if err := conn2.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "before the crash" {
		t.Errorf("after crash and restart: %q, %v; want the committed row", v, err)
	}
	log, err := os.ReadFile(c.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "was not properly shut down") {
		t.Errorf("log does not show crash recovery:\n%s", log)
	}
}

func TestStopAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := start(t, pglocal.Options{Durable: true, Settings: map[string]string{"application_name": "pglocal-test"}})
	conn := connect(t, c.URL())
	exec1(t, conn, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)`)
	var fsync, app string
	if err := conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('application_name')`).Scan(&fsync, &app); err != nil {
		t.Fatal(err)
	}
	if fsync != "on" {
		t.Errorf("Durable: fsync=%s", fsync)
	}

	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := connect(t, c.URL()).QueryRow(ctx, `SELECT count(*) FROM kept`).Scan(&n); err != nil || n != 1 {
		t.Errorf("count = %d, %v; want 1", n, err)
	}
}

func TestStartAfterTheServerDiedByItself(t *testing.T) {
	t.Parallel()
	c := start(t, pglocal.Options{})
	pid := c.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.PID() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.PID() != 0 {
		t.Fatalf("PID() = %d after the server was killed", c.PID())
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	exec1(t, connect(t, c.URL()), `SELECT 1`)
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	c, err := pglocal.Start(context.Background(), pglocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := c.PID(), c.Dir()
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("no data directory: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s after Close: %v", dir, err)
	}
	if processExists(pid) {
		t.Errorf("postmaster %d still exists after Close", pid)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, pglocal.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if err := c.Stop(context.Background()); !errors.Is(err, pglocal.ErrClosed) {
		t.Errorf("Stop after Close: %v, want ErrClosed", err)
	}
}

func TestParallelClustersGetDifferentPorts(t *testing.T) {
	t.Parallel()
	var (
		wg       sync.WaitGroup
		clusters [2]*pglocal.Cluster
		errs     [2]error
	)
	for i := range clusters {
		wg.Go(func() { clusters[i], errs[i] = pglocal.Start(context.Background(), pglocal.Options{}) })
	}
	wg.Wait()
	for i, c := range clusters {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	a, b := clusters[0], clusters[1]
	if a.Port() == b.Port() || a.Dir() == b.Dir() {
		t.Errorf("ports %d and %d, dirs %s and %s: want different", a.Port(), b.Port(), a.Dir(), b.Dir())
	}
	exec1(t, connect(t, a.URL()), `CREATE TABLE only_in_a ()`)
	var found *string
	if err := connect(t, b.URL()).QueryRow(context.Background(), `SELECT to_regclass('only_in_a')::text`).Scan(&found); err != nil || found != nil {
		t.Errorf("cluster b sees a's table: %v, %v", found, err)
	}
}

func TestStartFailureShowsLogAndLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := sharedTempDir(t)
	_, err := pglocal.Start(context.Background(), pglocal.Options{
		TempDir:  dir,
		Settings: map[string]string{"shared_buffers": "lots"},
	})
	if err == nil {
		t.Fatal("Start succeeded with a bad setting")
	}
	for _, want := range []string{"server log", `invalid value for parameter "shared_buffers"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("left behind in %s: %v", dir, left)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]pglocal.Options{
		"port":    {Port: 70000},
		"timeout": {StartTimeout: -time.Second},
		"bindir":  {BinDir: t.TempDir()},
	} {
		if _, err := pglocal.Start(context.Background(), opts); err == nil {
			t.Errorf("%s: Start succeeded", name)
		}
	}
}

func TestStartOnAGivenPort(t *testing.T) {
	t.Parallel()
	a := start(t, pglocal.Options{})
	port := a.Port()
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	b := start(t, pglocal.Options{Port: port})
	if b.Port() != port {
		t.Errorf("port %d, want %d", b.Port(), port)
	}
	// a cannot come back while b holds its port.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Start(ctx); err == nil || !strings.Contains(err.Error(), "server log") {
		t.Errorf("a.Start on a taken port: %v, want a failure with the server log", err)
	}
}

// TestServerDiesWithTestProcess kills a process that started a cluster and
// checks that the server goes away with it and that the next Start removes
// the abandoned directory.
func TestServerDiesWithTestProcess(t *testing.T) {
	t.Parallel()
	tmp := sharedTempDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+tmp)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %v", err)
	}
	var pid, port int
	var dir string
	if _, err := fmt.Sscan(line, &pid, &port, &dir); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	if !processExists(pid) {
		t.Fatalf("postmaster %d is not running", pid)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // no cleanup at all
	_ = cmd.Wait()

	if pglocal.DiesWithParent {
		deadline := time.Now().Add(20 * time.Second)
		for processExists(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processExists(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d outlived its test process", pid)
		}
	} else {
		syscall.Kill(pid, syscall.SIGQUIT)
		time.Sleep(time.Second)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("abandoned directory %s: %v (expected it to remain until the next Start)", dir, err)
	}

	c := start(t, pglocal.Options{TempDir: tmp})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("abandoned directory %s survived the next Start: %v", dir, err)
	}
	if _, err := os.Stat(c.Dir()); err != nil {
		t.Errorf("new cluster's directory: %v", err)
	}
}

func processExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie has exited; only its parent has not reaped it yet.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return false
		}
	}
	return true
}
