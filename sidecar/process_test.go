package sidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pglocal"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// A team's own sidecar, as examples/sidecar builds it: the test binary
// re-executed with helperEnv set runs sidecar.Main with two Go handlers.
const helperEnv = "TXOUTBOX_SIDECAR_HELPER"

// Record asks for one row in effects, written exactly once.
type Record struct {
	Note    string `json:"note"`
	SleepMS int    `json:"sleep_ms"`
}

func (Record) Topic() string { return "test.record" }

func init() {
	if os.Getenv(helperEnv) == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := sidecar.Main(ctx, os.Args[1:], sidecar.Options{
		Name: "test-sidecar",
		Handlers: func(h *relay.Handlers) error {
			relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[Record]) error {
				if e.Payload.SleepMS > 0 {
					// A mark other sessions see at once, while the
					// handler runs: an advisory lock of the transaction
					// (see handlersRunning).
					if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, e.ID); err != nil {
						return err
					}
					select {
					case <-time.After(time.Duration(e.Payload.SleepMS) * time.Millisecond):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				_, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, note) VALUES ($1, $2)`, e.ID, e.Payload.Note)
				return err
			})
			return nil
		},
	})
	stop()
	os.Exit(code)
}

// proc is a running sidecar process.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	mu     sync.Mutex
	output strings.Builder
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// startSidecar runs the test binary as a sidecar with args.
func startSidecar(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), helperEnv+"=1"), env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.output.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { p.err = cmd.Wait(); _ = pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("sidecar output:\n%s", p.log())
		}
	})
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("sidecar did not exit; output:\n%s", p.log())
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func createEffects(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE effects (entry_id bigint NOT NULL, note text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// handlersRunning counts the Record handlers with a SleepMS that run now
// on pool's database: each holds an advisory lock in its transaction.
func handlersRunning(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	return count(t, pool, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
}

const fastRelay = `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms", "lease_duration": "2s", "rescue_interval": "100ms", "shutdown_timeout": "30s"}}`

// SIGTERM with slow handlers in flight: they finish, the process exits 0.
func TestSidecarDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	createEffects(t, db.Pool)
	items := make([]outbox.Item, 5)
	for i := range items {
		items[i] = outbox.NewItem(Record{Note: fmt.Sprint(i), SleepMS: 3000})
	}
	if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
		t.Fatal(err)
	}
	// A pool with room for all five handlers' transactions at once
	// (pgxpool's default is 4 connections on 2 CPUs).
	url := db.URL + "&pool_max_conns=16"
	if !strings.Contains(db.URL, "?") {
		url = db.URL + "?pool_max_conns=16"
	}
	p := startSidecar(t, []string{"DATABASE_URL=" + url}, "relay", "--config", writeConfig(t, fastRelay), "--listen", "off")
	// Running handlers, not claimed entries: an entry is running from its
	// claim on, but a claimed entry whose handler has not started yet (its
	// worker not yet scheduled, on a loaded machine) is handed back at
	// shutdown, not run.
	poll(t, "all five handlers running", func() bool { return handlersRunning(t, db.Pool) == 5 })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.log())
	}
	if n := count(t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'done'`); n != 5 {
		t.Fatalf("%d of 5 done after the drain", n)
	}
	if n := count(t, db.Pool, `SELECT count(*) FROM effects`); n != 5 {
		t.Fatalf("%d effects", n)
	}
}

// SIGKILL mid-run and a restart: nothing lost, unfinished entries rerun,
// transactional effects exactly once.
func TestSidecarSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	createEffects(t, db.Pool)
	const total = 300
	items := make([]outbox.Item, total)
	for i := range items {
		items[i] = outbox.NewItem(Record{Note: fmt.Sprint(i), SleepMS: 5})
	}
	if _, err := outbox.EnqueueBatch(ctx, db.Pool, items); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fastRelay)
	env := []string{"DATABASE_URL=" + db.URL}
	p := startSidecar(t, env, "relay", "--config", cfg, "--listen", "off")
	poll(t, "some entries done", func() bool {
		return count(t, db.Pool, `SELECT count(*) FROM effects`) >= 30
	})
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	killedAt := count(t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'done'`)
	running := count(t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'running'`)
	t.Logf("killed with %d done and %d running", killedAt, running)

	startSidecar(t, env, "relay", "--config", cfg, "--listen", "off")
	poll(t, "all done after the restart", func() bool {
		return count(t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'done'`) == total
	})
	if n, d := count(t, db.Pool, `SELECT count(*) FROM effects`), count(t, db.Pool, `SELECT count(DISTINCT entry_id) FROM effects`); n != total || d != total {
		t.Fatalf("%d effects for %d entries; want exactly one each of %d", n, d, total)
	}
}

// A database that is down at start: the sidecar retries instead of
// crashing, /readyz says not ready, and once the database is up (and
// migrated by --migrate) it becomes ready and /metrics reports the table.
func TestSidecarWaitsForDatabaseAndReportsMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("local cluster: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startSidecar(t, []string{"DATABASE_URL=" + cluster.URL()}, "relay", "--config", writeConfig(t, fastRelay), "--listen", addr, "--migrate")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll(t, "the health endpoint", func() bool { code, _ := get("/healthz"); return code == 200 })
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Fatalf("/readyz with the database down: %d %q", code, body)
	}
	poll(t, "a logged retry", func() bool { return strings.Contains(p.log(), "retrying") })

	if err := cluster.Start(ctx); err != nil {
		t.Fatal(err)
	}
	poll(t, "ready", func() bool { code, _ := get("/readyz"); return code == 200 })

	pool, err := pgxpool.New(ctx, cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i := range 3 {
		// A topic no handler here takes: it stays pending and shows as lag.
		if _, err := outbox.Enqueue(ctx, pool, outbox.Raw{TopicName: "nobody.handles", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`txoutbox_entries_pending{queue="default",topic="nobody.handles"} 3`,
		`txoutbox_entries_due{queue="default",topic="nobody.handles"} 3`,
		`txoutbox_database_up 1`,
		`txoutbox_listener_connected 1`,
		`txoutbox_completion_batch_size_bucket`,
		`txoutbox_claim_batch_size_bucket`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
