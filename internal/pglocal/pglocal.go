// Package pglocal runs a throwaway PostgreSQL cluster from the server
// binaries installed on this machine: initdb into a temporary directory,
// postgres on a free loopback port, and everything removed on Close.
//
// It serves tests and examples, not production. By default the cluster
// trades durability for speed (fsync and full_page_writes are off), which
// still keeps committed data across a crash of the server ([Cluster.Kill])
// as long as the machine stays up.
//
// A cluster can be stopped hard and started again on the same port and data
// directory, so that "PostgreSQL restarted under the application" is tested
// for real:
//
//	c, err := pglocal.Start(ctx, pglocal.Options{})
//	if err != nil { ... }
//	defer c.Close()
//	pool, _ := pgxpool.New(ctx, c.URL())
//	...
//	_ = c.Kill()       // immediate shutdown: the crash case
//	_ = c.Start(ctx)   // same port, same data; crash recovery runs
//
// # Processes
//
// initdb and postgres refuse to run as root, so when the current process
// runs as root they run as the postgres OS user, who is given the
// temporary directory; without such a user [Start] fails and says so.
//
// The server runs in a process group of its own. On Linux it also gets an
// immediate shutdown from the kernel when the process that started it
// dies, so a test binary that crashes or is killed does not leave a server
// running. Its temporary directory is then left behind, and the next
// [Start] in the same temporary directory removes it. Servers log to a file
// in the directory ([Cluster.LogPath]); errors about starting include the
// file's last lines.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// dirPrefix starts the name of every cluster's temporary directory.
	dirPrefix = "txoutbox-pglocal-"
	// ownerFile, in the directory, holds the pid of the process that made
	// it, so that a later Start can tell an abandoned directory.
	ownerFile = "owner.pid"
	// logName is the server's log file in the directory.
	logName = "postgres.log"

	// DefaultStartTimeout is how long a start waits, when
	// [Options.StartTimeout] is zero, for the server to accept connections.
	DefaultStartTimeout = 30 * time.Second

	// stopGrace is how long a shutdown waits before escalating: from fast
	// to immediate, and from immediate to SIGKILL.
	stopGrace = 10 * time.Second

	// bindAttempts is how often Start tries another free port when the
	// one it picked was taken meanwhile.
	bindAttempts = 3
)

// ErrClosed is returned by the methods of a closed [Cluster].
var ErrClosed = errors.New("pglocal: cluster is closed")

// Options configure [Start]. The zero value is a fast cluster on a free
// port, from the binaries [Finder] finds.
type Options struct {
	// BinDir is the directory holding initdb and postgres. "" means the
	// one the zero [Finder] finds.
	BinDir string

	// Port is the loopback port to listen on. Zero means a free port,
	// chosen once: [Cluster.Start] reuses it.
	Port int

	// Durable keeps fsync and full_page_writes on. The default, off, makes
	// the cluster much faster; committed data still survives
	// [Cluster.Kill], only not a crash of the machine. (synchronous_commit
	// stays on either way: without it a server crash loses the last
	// commits, which would make Kill a different test.)
	Durable bool

	// Settings are extra server settings, passed as -c name=value after
	// the package's own (listen_addresses, port, unix_socket_directories,
	// shared_buffers=32MB, max_connections=200, max_wal_size=256MB,
	// wal_init_zero=off and the durability ones), so they override them.
	Settings map[string]string

	// TempDir is where the cluster's directory is made. "" means $TMPDIR
	// when that is set; else, on Linux, /dev/shm when it is a writable
	// tmpfs with at least 1 GiB free (creating a database is mostly file
	// system work, several times faster in memory); else os.TempDir().
	// When running as root it must be reachable by the postgres OS user.
	TempDir string

	// StartTimeout bounds each start's wait for the server to accept
	// connections (the context bounds it too). Zero means
	// [DefaultStartTimeout].
	StartTimeout time.Duration
}

// Cluster is a PostgreSQL cluster in a temporary directory, listening on
// 127.0.0.1 only, with a superuser "postgres" that needs no password. Its
// methods are safe for concurrent use.
type Cluster struct {
	binDir  string
	dir     string // the temporary directory; removed by Close
	dataDir string
	logPath string
	port    int
	args    []string // postgres's arguments
	user    *runAs
	timeout time.Duration

	mu       sync.Mutex
	proc     *serverProc // nil while stopped
	closed   bool
	closeErr error
}

// serverProc is one run of the postmaster.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's result; read after done
}

// Start creates a cluster in a new temporary directory and starts its
// server, returning once the server accepts connections. Close the cluster
// to stop the server and remove the directory. A Start that fails leaves
// nothing behind, and its error includes the output of initdb or the end
// of the server log.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if err := supported(); err != nil {
		return nil, err
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("pglocal: Options.Port %d out of range", opts.Port)
	}
	if opts.StartTimeout < 0 {
		return nil, errors.New("pglocal: Options.StartTimeout is negative")
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = (Finder{}).BinDir(ctx); err != nil {
			return nil, err
		}
	} else if err := hasServer(binDir); err != nil {
		return nil, fmt.Errorf("pglocal: Options.BinDir %s: %w", binDir, err)
	}
	user, err := serverUser()
	if err != nil {
		return nil, err
	}
	tempDir := opts.TempDir
	if tempDir == "" {
		tempDir = defaultTempDir()
	}
	sweep(tempDir)

	dir, err := os.MkdirTemp(tempDir, dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("pglocal: make temporary directory: %w", err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // the server reports its data directory absolute
	}
	c = &Cluster{
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, logName),
		port:    opts.Port,
		user:    user,
		timeout: opts.StartTimeout,
	}
	if c.timeout == 0 {
		c.timeout = DefaultStartTimeout
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
			c = nil
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return c, fmt.Errorf("pglocal: %w", err)
	}
	if err := user.chown(dir); err != nil {
		return c, err
	}
	if err := c.initdb(ctx); err != nil {
		return c, err
	}

	for attempt := 1; ; attempt++ {
		pickPort := opts.Port == 0
		if pickPort {
			if c.port, err = freePort(); err != nil {
				return c, err
			}
		}
		c.args = serverArgs(c.dataDir, dir, c.port, opts)
		c.mu.Lock()
		err = c.startLocked(ctx)
		c.mu.Unlock()
		if err == nil {
			return c, nil
		}
		if !pickPort || attempt == bindAttempts || !errors.Is(err, errPortTaken) {
			return c, err
		}
	}
}

// initdb creates the data directory.
func (c *Cluster) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"),
		"-D", c.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = sysProcAttr(c.user)
	// initdb runs postgres in bootstrap mode: on cancellation, kill both.
	cmd.Cancel = func() error { killGroup(cmd.Process.Pid); return nil }
	// Pdeathsig is tied to the starting thread; keep it for the run.
	runtime.LockOSThread()
	out, err := cmd.CombinedOutput()
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("pglocal: initdb (as %s) in %s: %w\n%s", c.user, c.dataDir, err, tail(string(out), 20))
	}
	return nil
}

// serverArgs returns postgres's command line.
func serverArgs(dataDir, sockDir string, port int, opts Options) []string {
	// A Unix socket path is limited to about 100 bytes; TCP suffices.
	if len(sockDir)+len("/.s.PGSQL.65535") > 100 {
		sockDir = ""
	}
	settings := [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(port)},
		{"unix_socket_directories", sockDir},
		{"shared_buffers", "32MB"},
		{"max_connections", "200"},
		{"logging_collector", "off"},
		{"lc_messages", "C"},
		// Keep the WAL small (it may live in memory) and skip zero-filling
		// its new segments.
		{"max_wal_size", "256MB"},
		{"min_wal_size", "32MB"},
		{"wal_init_zero", "off"},
	}
	if !opts.Durable {
		settings = append(settings,
			[2]string{"fsync", "off"},
			[2]string{"full_page_writes", "off"})
	}
	names := make([]string, 0, len(opts.Settings))
	for name := range opts.Settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		settings = append(settings, [2]string{name, opts.Settings[name]})
	}
	args := []string{"-D", dataDir}
	for _, s := range settings {
		args = append(args, "-c", s[0]+"="+s[1])
	}
	return args
}

// serverEnv is the environment of initdb and postgres: this process's,
// minus the variables that would point them elsewhere.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PGDATA=") || strings.HasPrefix(kv, "PGPORT=") || strings.HasPrefix(kv, "PGHOST=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// errPortTaken marks a start that failed because the port is in use.
var errPortTaken = errors.New("port in use")

// startLocked starts the server and waits until it accepts connections.
// c.mu must be held.
func (c *Cluster) startLocked(ctx context.Context) error {
	if c.closed {
		return ErrClosed
	}
	c.forgetExitedLocked()
	if c.proc != nil {
		return fmt.Errorf("pglocal: server on port %d is already running", c.port)
	}
	// After a server was killed (SIGKILL), its helper processes notice
	// only after a moment, and until then a new server refuses to start.
	deadline := time.Now().Add(c.timeout)
	for {
		err := c.spawnLocked(ctx)
		if err == nil || !errors.Is(err, errOldProcesses) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errOldProcesses marks a start that failed because processes of a killed
// server still hold its shared memory.
var errOldProcesses = errors.New("processes of the previous server are still running")

// spawnLocked starts the server once and waits until it accepts
// connections. c.mu must be held.
func (c *Cluster) spawnLocked(ctx context.Context) error {
	logFile, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pglocal: open server log: %w", err)
	}
	var logStart int64
	if fi, err := logFile.Stat(); err == nil {
		logStart = fi.Size()
	}

	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), c.args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(c.user)
	p := &serverProc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The kernel's parent-death signal (Linux) fires when the thread
		// that started the server exits, not the process: hold the thread
		// until the server is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	err = <-started
	_ = logFile.Close() // the server has its own descriptor
	if err != nil {
		return fmt.Errorf("pglocal: start postgres (as %s): %w", c.user, err)
	}
	c.proc = p

	if err := c.waitReady(ctx, p); err != nil {
		c.stopLocked(sigImmediate, stopGrace)
		msg := tail(c.logSince(logStart), 20)
		switch {
		case strings.Contains(msg, "Address already in use") || strings.Contains(msg, "could not bind"):
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		case strings.Contains(msg, "pre-existing shared memory block"):
			err = fmt.Errorf("%w: %w", errOldProcesses, err)
		}
		return fmt.Errorf("pglocal: start server on 127.0.0.1:%d: %w\nserver log (%s):\n%s", c.port, err, c.logPath, msg)
	}
	return nil
}

// waitReady polls until the server accepts a connection, it exits, or the
// start timeout or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, p *serverProc) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	url := c.URL()
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attemptCtx, url)
		if err == nil {
			// The port may belong to another server (the one that took it
			// while this one was stopped): make sure it is this one.
			err = c.checkDataDir(attemptCtx, conn)
			if cerr := conn.Close(ctx); err == nil && cerr != nil {
				err = cerr
			}
			if err == nil {
				cancelAttempt()
				return nil
			}
		}
		cancelAttempt()
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited during startup: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections (last attempt: %v): %w", err, ctx.Err())
		case <-time.After(15 * time.Millisecond):
		}
	}
}

// checkDataDir checks that conn is served from c's data directory.
func (c *Cluster) checkDataDir(ctx context.Context, conn *pgconn.PgConn) error {
	res, err := conn.Exec(ctx, "SHOW data_directory").ReadAll()
	if err != nil {
		return fmt.Errorf("ask the server for its data directory: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return errors.New("ask the server for its data directory: unexpected result")
	}
	if got := string(res[0].Rows[0][0]); got != c.dataDir {
		return fmt.Errorf("another server (data directory %s) answers on port %d", got, c.port)
	}
	return nil
}

// stopLocked signals the server and waits up to grace for it to exit,
// escalating to an immediate shutdown and then to SIGKILL. It reports
// whether the server went down on the first signal. c.mu must be held.
func (c *Cluster) stopLocked(sig os.Signal, grace time.Duration) bool {
	p := c.proc
	if p == nil {
		return true
	}
	c.proc = nil
	_ = p.cmd.Process.Signal(sig) // fails only if it has exited already
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
	}
	if sig != sigImmediate {
		_ = p.cmd.Process.Signal(sigImmediate)
		select {
		case <-p.done:
			return false
		case <-time.After(stopGrace):
		}
	}
	killGroup(p.cmd.Process.Pid)
	<-p.done
	return false
}

// shutdown stops the server with sig, giving it until ctx ends (at most
// grace) before escalating.
func (c *Cluster) shutdown(ctx context.Context, sig os.Signal, what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	grace := stopGrace
	if d, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(d))
	}
	if !c.stopLocked(sig, grace) {
		return fmt.Errorf("pglocal: %s did not finish in %v; the server was killed", what, grace.Round(time.Millisecond))
	}
	return nil
}

// URL returns the connection string of database postgres as superuser
// postgres (no password), with sslmode=disable.
func (c *Cluster) URL() string {
	return "postgres://postgres@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) + "/postgres?sslmode=disable"
}

// Port returns the loopback port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Dir returns the cluster's temporary directory, which holds the data
// directory ("data") and the server log.
func (c *Cluster) Dir() string { return c.dir }

// LogPath returns the path of the server's log file.
func (c *Cluster) LogPath() string { return c.logPath }

// BinDir returns the directory of the binaries the cluster runs.
func (c *Cluster) BinDir() string { return c.binDir }

// forgetExitedLocked forgets a server that exited by itself (it crashed,
// or someone else stopped it). c.mu must be held.
func (c *Cluster) forgetExitedLocked() {
	if c.proc == nil {
		return
	}
	select {
	case <-c.proc.done:
		c.proc = nil
	default:
	}
}

// PID returns the process id of the running server (the postmaster), or 0
// while it is stopped.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetExitedLocked()
	if c.proc == nil {
		return 0
	}
	return c.proc.cmd.Process.Pid
}

// Stop shuts the server down fast: open transactions roll back, sessions
// are disconnected, and a checkpoint is written. If the server has not
// exited when ctx ends (or after 10 seconds), it is shut down immediately
// and, failing that, killed; Stop then reports an error. Stopping a stopped
// cluster does nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	return c.shutdown(ctx, sigFast, "fast shutdown")
}

// Kill shuts the server down immediately, as pg_ctl stop -m immediate
// does: the crash case. Backends quit without a checkpoint, and the next
// start runs crash recovery. Committed data survives (the machine did not
// crash). Killing a stopped cluster does nothing.
func (c *Cluster) Kill() error {
	return c.shutdown(context.Background(), sigImmediate, "immediate shutdown")
}

// Start starts a stopped cluster again, on the same port and data, and
// returns once it accepts connections. Starting a running cluster is an
// error.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startLocked(ctx)
}

// Restart is [Cluster.Stop] followed by [Cluster.Start].
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return c.Start(ctx)
}

// Close stops the server (fast, escalating like [Cluster.Stop]) and removes
// the temporary directory. It may be called more than once; later calls
// return the first one's result.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.closeErr
	}
	c.closed = true
	var errs []error
	if !c.stopLocked(sigFast, stopGrace) {
		errs = append(errs, fmt.Errorf("pglocal: fast shutdown did not finish in %v; the server was killed", stopGrace))
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("pglocal: remove %s: %w", c.dir, err))
	}
	c.closeErr = errors.Join(errs...)
	return c.closeErr
}

// logSince returns the server log from byte offset off on.
func (c *Cluster) logSince(off int64) string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// defaultTempDir is where clusters go when Options.TempDir is empty.
func defaultTempDir() string {
	if os.Getenv("TMPDIR") != "" {
		return os.TempDir()
	}
	if dir := memoryTempDir(); dir != "" {
		return dir
	}
	return os.TempDir()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pglocal: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pglocal: find a free port: %w", err)
	}
	return port, nil
}

// sweep removes the directories of clusters whose owning process died
// without closing them (a crashed or killed test binary), once their server
// is gone too. Directories it cannot judge are left alone.
func sweep(tempDir string) {
	dirs, err := filepath.Glob(filepath.Join(tempDir, dirPrefix+"*"))
	if err != nil {
		return
	}
	for _, d := range dirs {
		if abandoned(d) {
			_ = os.RemoveAll(d) // best effort; the next Start tries again
		}
	}
}

// abandoned reports whether cluster directory dir belongs to no live
// process.
func abandoned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		// Being made right now, or made by a crash between mkdir and
		// writing the owner: give it time.
		fi, err := os.Stat(dir)
		return err == nil && fi.IsDir() && time.Since(fi.ModTime()) > 10*time.Minute
	}
	owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || processAlive(owner) {
		return false
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && processAlive(pid) {
			return false
		}
	}
	return true
}
