package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/store"
	"github.com/txoutbox/txoutbox/relay"
)

// RelayProcessCommand is the subcommand, hidden from the sidecar's help,
// that runs one relay process of the drain scenario (Config.Processes) by
// calling [RunRelayProcess]. The bench process starts its own executable
// as
//
//	<executable> bench-relay [--database NAME] [--workers W] [--claim-batch C] [--complete-batch B]
//
// with the connection string in $DATABASE_URL rather than on the command
// line, where other users of the machine could read a password, and
// --database naming the database the bench works in (a scratch database
// is not the URL's).
const RelayProcessCommand = "bench-relay"

// The lines of the protocol between the bench process and a relay
// process: the child writes readyLine on its standard output, the parent
// writes goLine on the child's standard input.
const (
	readyLine = "ready"
	goLine    = "go"
)

// Timing of the relay processes.
const (
	// processReadyTimeout bounds the wait for every process's ready line:
	// a hang guard.
	processReadyTimeout = time.Minute
	// processStopTimeout is how long a stopping process may take before
	// it is killed.
	processStopTimeout = 30 * time.Second
	// remainingInterval is how often the drain scenario asks the database
	// whether entries remain while relay processes drain them: the
	// granularity of its clock.
	remainingInterval = 10 * time.Millisecond
	// progressInterval is how often it counts the entries left, for the
	// stall guard.
	progressInterval = 5 * time.Second
)

// RunRelayProcess is a relay process of the drain scenario, the other end
// of Config.Processes; the sidecar's hidden RelayProcessCommand calls it.
// It opens a pool on poolCfg as the bench's own relay pool (at least 10
// connections, sessions named AppName), checks the schema, and writes the
// line "ready" on stdout. On the line "go" on stdin it runs one relay with
// the bench's no-op handler for Topic and cfg's relay settings (Workers,
// ClaimBatch, CompleteBatch), logging to cfg.Logger at Warn level and
// above, until ctx ends or stdin reaches its end; then it returns the
// relay's result, nil after a graceful stop. If ctx ends or stdin closes before "go", it
// returns nil without running a relay. It writes nothing else on stdout.
func RunRelayProcess(ctx context.Context, poolCfg *pgxpool.Config, cfg Config, stdin io.Reader, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if poolCfg == nil {
		return errors.New("bench: nil pool configuration")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pc := nameSessions(poolCfg)
	pc.MaxConns = max(pc.MaxConns, relayPoolMinConns)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("bench: relay pool: %w", err)
	}
	defer pool.Close()
	if err := store.CheckSchema(ctx, pool); err != nil {
		return fmt.Errorf("bench: relay process: %w", err)
	}
	handlers := relay.NewHandlers()
	relay.Handle(handlers, func(context.Context, *relay.Entry[payload]) error { return nil })
	obs := newObserver()
	rl, err := relay.New(pool, relayConfig(cfg, handlers, cfg.Logger, obs))
	if err != nil {
		return fmt.Errorf("bench: relay process: %w", err)
	}

	// Read stdin to its end: the first line is the start signal, the end
	// the stop signal.
	first := make(chan string, 1)
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stdin)
		if sc.Scan() {
			first <- sc.Text()
		}
		for sc.Scan() { // the end of stdin is the stop signal
		}
	}()
	if _, err := io.WriteString(stdout, readyLine+"\n"); err != nil {
		return fmt.Errorf("bench: relay process: %w", err)
	}
	var line string
	select {
	case <-ctx.Done():
		return nil
	case line = <-first:
	case <-eof:
		select {
		case line = <-first:
		default:
			return nil
		}
	}
	if line != goLine {
		return fmt.Errorf("bench: relay process: got %q on standard input, want %q", line, goLine)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-eof:
			cancel()
		case <-rctx.Done():
		}
	}()
	err = rl.Run(rctx)
	if n := obs.unexpected.Load(); n > 0 {
		cfg.Logger.Warn("bench: relay process: unexpected relay events (retries, dead entries, fenced outcomes, lost leases, hand-backs, errors)", "count", n)
	}
	if err != nil {
		return fmt.Errorf("bench: relay process: %w", err)
	}
	return nil
}

// drainProcesses is the timed part of the drain scenario with
// Config.Processes relay processes: it starts them, waits until each is
// ready, starts the clock and their relays, stops the clock once no entry
// of Topic is pending or running, as seen by a query every
// remainingInterval, and stops the processes.
func (r *Runner) drainProcesses(ctx context.Context, n int) (Result, error) {
	g, err := r.startProcesses(ctx)
	if err != nil {
		return Result{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			g.kill()
		}
	}()
	if err := g.awaitReady(ctx); err != nil {
		return Result{}, err
	}
	r.log.Info("bench: drain: relay processes ready; starting them", "processes", len(g.procs), "entries", n)

	t0 := time.Now()
	if err := g.start(); err != nil {
		return Result{}, err
	}
	if err := r.awaitDrained(ctx, g, int64(n)); err != nil {
		return Result{}, err
	}
	elapsed := time.Since(t0)
	peak, havePeak := g.peakRSS()
	stopped = true
	if err := g.stop(); err != nil {
		return Result{}, err
	}

	var res Result
	res.setting("entries", float64(n), 0)
	r.relaySettings(&res)
	res.setting("processes", float64(len(g.procs)), 0)
	res.measure("seconds", elapsed.Seconds(), 3)
	res.measure("per_sec", float64(n)/elapsed.Seconds(), 1)
	if havePeak {
		res.measure("rss_peak_mb", float64(peak)/(1<<20), 1)
	}
	return res, nil
}

// reclaimed counts the entries of Topic claimed more than once.
func (r *Runner) reclaimed(ctx context.Context) (int64, error) {
	var n int64
	if err := r.app.QueryRow(ctx, `SELECT count(*) FROM outbox_entries WHERE topic = $1 AND attempt > 1`, Topic).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting entries claimed more than once: %w", err)
	}
	return n, nil
}

// remaining reports whether an entry of Topic is pending or running. Each
// half reads the first entry of a partial index in its order (the claim
// index's for pending entries, the lease index's for running ones), so
// the query costs about what a claim costs however large the backlog; a
// count would read the whole table, for tens of milliseconds at 100,000
// entries.
func (r *Runner) remaining(ctx context.Context) (bool, error) {
	var left bool
	err := r.app.QueryRow(ctx, `SELECT
		(SELECT 1 FROM outbox_entries WHERE state = 'pending' AND topic = $1
			ORDER BY queue, priority DESC, run_at, id LIMIT 1) IS NOT NULL
		OR (SELECT 1 FROM outbox_entries WHERE state = 'running' AND topic = $1
			ORDER BY lease_until LIMIT 1) IS NOT NULL`, Topic).Scan(&left)
	if err != nil {
		return false, fmt.Errorf("looking for entries not done: %w", err)
	}
	return left, nil
}

// awaitDrained waits until no entry of Topic is pending or running. It
// fails when ctx ends, when a relay process exits, or when the number of
// entries not done stayed at one value for stallTimeout.
func (r *Runner) awaitDrained(ctx context.Context, g *processGroup, total int64) error {
	tick := time.NewTicker(remainingInterval)
	defer tick.Stop()
	last, lastChange := total, time.Now()
	nextCount := lastChange.Add(progressInterval)
	for {
		left, err := r.remaining(ctx)
		if err != nil {
			return err
		}
		if !left {
			return nil
		}
		if now := time.Now(); now.After(nextCount) {
			d, err := r.notDone(ctx)
			if err != nil {
				return err
			}
			if d != last {
				last, lastChange = d, now
			} else if now.Sub(lastChange) > stallTimeout {
				return fmt.Errorf("%d of %d entries not done, no progress for %s", d, total, stallTimeout)
			}
			nextCount = time.Now().Add(progressInterval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.exited:
			return g.exitedEarly()
		case <-tick.C:
		}
	}
}

// processGroup is the relay processes of one drain run.
type processGroup struct {
	log    *slog.Logger
	cancel context.CancelFunc // ends the processes' context: SIGTERM, and SIGKILL processStopTimeout later
	procs  []*relayProcess
	exited chan struct{} // closed when the first process exits
	once   sync.Once
}

// relayProcess is one relay process.
type relayProcess struct {
	num    int // from 1
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan error // one value: nil on the ready line, else why not
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// processArgs are the arguments of every relay process.
func (r *Runner) processArgs() []string {
	args := []string{RelayProcessCommand}
	if r.database != "" {
		args = append(args, "--database", r.database)
	}
	for _, f := range []struct {
		flag string
		v    int
	}{{"--workers", r.cfg.Workers}, {"--claim-batch", r.cfg.ClaimBatch}, {"--complete-batch", r.cfg.CompleteBatch}} {
		if f.v > 0 {
			args = append(args, f.flag, strconv.Itoa(f.v))
		}
	}
	return args
}

// startProcesses starts Config.Processes relay processes of this
// executable. They inherit the environment, with DATABASE_URL set to the
// bench's connection string.
func (r *Runner) startProcesses(ctx context.Context) (*processGroup, error) {
	if r.connString == "" {
		return nil, errors.New("relay processes need the connection string the pool configuration was parsed from (pgxpool.ParseConfig)")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable for the relay processes: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	g := &processGroup{log: r.log, cancel: cancel, exited: make(chan struct{})}
	args := r.processArgs()
	env := append(os.Environ(), "DATABASE_URL="+r.connString)
	r.log.Info("bench: drain: starting relay processes", "processes", r.cfg.Processes, "command", exe+" "+RelayProcessCommand)
	for i := range r.cfg.Processes {
		if err := g.add(pctx, i+1, exe, args, env); err != nil {
			g.kill()
			return nil, err
		}
	}
	return g, nil
}

// add starts relay process num.
func (g *processGroup) add(ctx context.Context, num int, exe string, args, env []string) error {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = processStopTimeout
	cmd.Stderr = &lineLogger{log: g.log, num: num}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("relay process %d: %w", num, err)
	}
	// A pipe of our own rather than StdoutPipe, whose reader Wait closes
	// under a reader that may not be done.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("relay process %d: %w", num, err)
	}
	cmd.Stdout = pw
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		return fmt.Errorf("starting relay process %d: %w", num, err)
	}
	p := &relayProcess{num: num, cmd: cmd, stdin: stdin, ready: make(chan error, 1), exited: make(chan struct{})}
	g.procs = append(g.procs, p)
	go p.readStdout(pr, g.log)
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
		g.once.Do(func() { close(g.exited) })
	}()
	return nil
}

// errNoReadyLine says a process closed its stdout without a ready line.
var errNoReadyLine = errors.New("no ready line")

// readStdout reads the process's stdout to its end: the ready line, then
// (unexpectedly) anything else, which is logged.
func (p *relayProcess) readStdout(r io.ReadCloser, log *slog.Logger) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			if sc.Text() == readyLine {
				p.ready <- nil
			} else {
				p.ready <- fmt.Errorf("relay process %d wrote %q, want %q", p.num, sc.Text(), readyLine)
			}
			continue
		}
		log.Warn("bench: unexpected output of a relay process", "process", p.num, "line", sc.Text())
	}
	if first {
		p.ready <- errNoReadyLine
	}
}

// exitStatus describes how an exited process ended.
func (p *relayProcess) exitStatus() string {
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

// awaitReady waits for every process's ready line.
func (g *processGroup) awaitReady(ctx context.Context) error {
	t := time.NewTimer(processReadyTimeout)
	defer t.Stop()
	for _, p := range g.procs {
		select {
		case err := <-p.ready:
			if errors.Is(err, errNoReadyLine) {
				select {
				case <-p.exited:
					return fmt.Errorf("relay process %d exited before it was ready (%s); its standard error is logged above", p.num, p.exitStatus())
				case <-t.C:
					return fmt.Errorf("relay process %d closed its standard output without a ready line", p.num)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("relay process %d was not ready after %s", p.num, processReadyTimeout)
		}
	}
	return nil
}

// start sends every process the start signal.
func (g *processGroup) start() error {
	for _, p := range g.procs {
		if _, err := io.WriteString(p.stdin, goLine+"\n"); err != nil {
			return fmt.Errorf("starting the relay of process %d: %w", p.num, err)
		}
	}
	return nil
}

// exitedEarly describes the first process that exited.
func (g *processGroup) exitedEarly() error {
	for _, p := range g.procs {
		select {
		case <-p.exited:
			return fmt.Errorf("relay process %d exited before the entries were done (%s); its standard error is logged above", p.num, p.exitStatus())
		default:
		}
	}
	return errors.New("a relay process exited before the entries were done")
}

// peakRSS returns the largest peak resident set size (VmHWM) among the
// processes, in bytes, and whether there was one to read (not without
// /proc).
func (g *processGroup) peakRSS() (int64, bool) {
	var peak int64
	ok := false
	for _, p := range g.procs {
		if v, found := readStatusKB(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid), "VmHWM:"); found {
			peak, ok = max(peak, v<<10), true
		}
	}
	return peak, ok
}

// stop closes the processes' stdin, which stops their relays gracefully,
// and waits for them to exit; a process still running processStopTimeout
// later is killed. It fails unless every process exited with status 0.
func (g *processGroup) stop() error {
	defer g.cancel()
	for _, p := range g.procs {
		_ = p.stdin.Close()
	}
	t := time.NewTimer(processStopTimeout)
	defer t.Stop()
	var errs []error
	for _, p := range g.procs {
		select {
		case <-p.exited:
		case <-t.C:
			for _, q := range g.procs {
				_ = q.cmd.Process.Kill()
			}
			<-p.exited
			errs = append(errs, fmt.Errorf("relay process %d did not stop within %s: killed", p.num, processStopTimeout))
			continue
		}
		if p.err != nil {
			errs = append(errs, fmt.Errorf("relay process %d: %s; its standard error is logged above", p.num, p.exitStatus()))
		}
	}
	return errors.Join(errs...)
}

// kill stops the processes on a failure path: SIGTERM and closed stdin,
// SIGKILL for any still running processStopTimeout later. It returns once
// every process has exited.
func (g *processGroup) kill() {
	g.cancel()
	for _, p := range g.procs {
		_ = p.stdin.Close()
	}
	for _, p := range g.procs {
		<-p.exited
	}
}

// lineLogger logs each line a relay process writes on its stderr at Warn
// level (the process logs nothing below).
type lineLogger struct {
	log *slog.Logger
	num int
	buf []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimSpace(l.buf[:i]); len(line) > 0 {
			l.log.Warn("bench: relay process", "process", l.num, "stderr", string(line))
		}
		l.buf = l.buf[i+1:]
	}
	return len(b), nil
}
