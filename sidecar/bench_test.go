package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/sidecar"
	"github.com/txoutbox/txoutbox/sidecar/internal/bench"
)

// The relay processes of bench --processes run this program's executable,
// which under test is the test binary: it hands the hidden subcommand to
// sidecar.Main, as cmd/txoutbox does, with the same signal handling.
func init() {
	if len(os.Args) < 2 || os.Args[1] != bench.RelayProcessCommand {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := sidecar.Main(ctx, os.Args[1:], sidecar.Options{})
	stop()
	os.Exit(code)
}

// The bench tests run every scenario at toy sizes against a real database
// and check what the command prints and leaves behind. They make no timing
// assertions.

var scratchName = regexp.MustCompile(`using scratch database (txoutbox_bench_[0-9a-f]+) `)

// benchCLI runs the bench command in-process with ctx and no environment.
func benchCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	return benchEnv(t, ctx, nil, args...)
}

// benchEnv runs the bench command in-process with ctx and env.
func benchEnv(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := sidecar.Main(ctx, append([]string{"bench"}, args...), sidecar.Options{
		Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errOut.String()
}

// jsonLines parses one JSON object per line.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// requireFields fails unless m has every key, each a number unless it is
// "scenario" or "summary".
func requireFields(t *testing.T, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			t.Errorf("%v: no %q", m["scenario"], k)
			continue
		}
		if _, isNum := v.(float64); !isNum {
			t.Errorf("%v: %q = %v (%T), want a number", m["scenario"], k, v, v)
		}
	}
}

func requireValue(t *testing.T, m map[string]any, key string, want float64) {
	t.Helper()
	if got, ok := m[key].(float64); !ok || got != want {
		t.Errorf("%v: %s = %v, want %v", m["scenario"], key, m[key], want)
	}
}

// requireDropped fails unless the scratch database named in stderr is gone
// from the server at adminURL.
func requireDropped(t *testing.T, adminURL, stderr string) {
	t.Helper()
	m := scratchName.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr names no scratch database: %q", stderr)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, m[1]).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("scratch database %s still exists", m[1])
	}
}

func TestBenchAllScenarios(t *testing.T) {
	t.Parallel()
	admin := outboxtest.AdminURL(t)
	code, out, errOut := benchCLI(t, context.Background(), "--json", "--database-url", admin,
		"--entries", "500", "--duration", "1s", "--rate", "200", "--producers", "4")
	if code != sidecar.ExitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	lines := jsonLines(t, out)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4: %s", len(lines), out)
	}
	for i, want := range []string{"enqueue", "raw", "drain", "steady"} {
		if lines[i]["scenario"] != want {
			t.Errorf("line %d is %v, want %s", i+1, lines[i]["scenario"], want)
		}
		if _, ok := lines[i]["run"]; ok {
			t.Errorf("%s: a single run has a run number", want)
		}
	}
	enq, raw, drain, steady := lines[0], lines[1], lines[2], lines[3]
	requireFields(t, enq, "tx", "bare_p50_ms", "bare_p99_ms", "enqueue_p50_ms", "enqueue_p99_ms",
		"overhead_p50_ms", "ratio_p50", "batch_size", "batch_tx", "batch_us_per_entry")
	requireFields(t, raw, "per_sec", "seconds", "per_sec_2", "seconds_2")
	requireFields(t, drain, "seconds", "per_sec", "rss_peak_mb", "unexpected_events",
		"wal_bytes_per_insert", "wal_bytes_per_entry", "row_writes_per_insert", "row_writes_per_entry")
	requireFields(t, steady, "offered_per_sec", "achieved_per_sec", "p50_ms", "p90_ms", "p99_ms",
		"max_ms", "backlog_end", "negative", "late_starts", "producers")
	for _, m := range []map[string]any{raw, drain, steady} {
		requireValue(t, m, "workers", 100)
		requireValue(t, m, "claim_batch", 100)
		requireValue(t, m, "complete_batch", 500)
	}
	requireValue(t, raw, "entries", 500)
	requireValue(t, drain, "entries", 500)
	requireValue(t, steady, "entries", 200)
	requireValue(t, steady, "offered_per_sec", 200)
	requireValue(t, steady, "backlog_before", 0)
	requireValue(t, drain, "unexpected_events", 0)
	for _, m := range []map[string]any{raw, drain} {
		if v, _ := m["per_sec"].(float64); v <= 0 {
			t.Errorf("%v: per_sec %v", m["scenario"], v)
		}
	}
	requireDropped(t, admin, errOut)
}

func TestBenchRunsSummaryAndRelaySettings(t *testing.T) {
	t.Parallel()
	admin := outboxtest.AdminURL(t)
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	code, out, errOut := benchCLI(t, context.Background(), "raw", "drain", "--runs", "2", "--json",
		"--database-url", admin, "--entries", "300", "--workers", "10", "--claim-batch", "20",
		"--complete-batch", "30", "--cpuprofile", profile)
	if code != sidecar.ExitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	lines := jsonLines(t, out)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 6 (two runs and a summary per scenario): %s", len(lines), out)
	}
	for i, scenario := range []string{"raw", "drain"} {
		run1, run2, sum := lines[3*i], lines[3*i+1], lines[3*i+2]
		for _, m := range []map[string]any{run1, run2, sum} {
			if m["scenario"] != scenario {
				t.Fatalf("got %v, want %s: %s", m["scenario"], scenario, out)
			}
			requireValue(t, m, "workers", 10)
			requireValue(t, m, "claim_batch", 20)
			requireValue(t, m, "complete_batch", 30)
			requireValue(t, m, "entries", 300)
		}
		requireValue(t, run1, "run", 1)
		requireValue(t, run2, "run", 2)
		if sum["summary"] != true {
			t.Errorf("%s: third line is not the summary: %v", scenario, sum)
		}
		requireValue(t, sum, "runs", 2)
		requireFields(t, sum, "per_sec", "per_sec_min", "per_sec_max", "seconds", "seconds_min", "seconds_max")
		lo, hi := sum["per_sec_min"].(float64), sum["per_sec_max"].(float64)
		if med := sum["per_sec"].(float64); lo > med || med > hi {
			t.Errorf("%s: median %v outside min %v, max %v", scenario, med, lo, hi)
		}
	}
	if st, err := os.Stat(profile); err != nil || st.Size() == 0 {
		t.Errorf("cpu profile: %v", err)
	}
	requireDropped(t, admin, errOut)
}

func TestBenchSteadyAfterBacklogTable(t *testing.T) {
	t.Parallel()
	admin := outboxtest.AdminURL(t)
	code, out, errOut := benchCLI(t, context.Background(), "steady", "--database-url", admin,
		"--backlog", "400", "--duration", "500ms", "--rate", "100", "--producers", "2")
	if code != sidecar.ExitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{"steady", "backlog_before=400", "entries=50", "p99_ms", "backlog_drain_seconds", "achieved_per_sec"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	requireDropped(t, admin, errOut)
}

// TestBenchPressureRuns runs the pressure scenario twice at toy size: a
// line per phase and run, then a summary per phase.
func TestBenchPressureRuns(t *testing.T) {
	t.Parallel()
	admin := outboxtest.AdminURL(t)
	code, out, errOut := benchCLI(t, context.Background(), "pressure", "--runs", "2", "--json",
		"--database-url", admin, "--phase-duration", "1s", "--pressure-rate", "40", "--producers", "2")
	if code != sidecar.ExitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	phases := []string{"clean", "pinned", "recovery", "readers", "recovery2"}
	lines := jsonLines(t, out)
	if len(lines) != 3*len(phases) {
		t.Fatalf("%d lines, want %d (two runs and a summary per phase): %s", len(lines), 3*len(phases), out)
	}
	for i, m := range lines {
		phase := phases[i%len(phases)]
		if m["scenario"] != "pressure" || m["phase"] != phase {
			t.Errorf("line %d: %v/%v, want pressure/%s", i+1, m["scenario"], m["phase"], phase)
		}
		requireValue(t, m, "offered_per_sec", 40)
		requireFields(t, m, "achieved_per_sec", "p50_ms", "p99_ms", "max_ms", "backlog_end", "dead_tuples", "table_bytes")
		switch i / len(phases) {
		case 0, 1:
			requireValue(t, m, "run", float64(i/len(phases)+1))
		case 2:
			if m["summary"] != true {
				t.Errorf("line %d is not a summary: %v", i+1, m)
			}
			requireFields(t, m, "p99_ms_min", "p99_ms_max")
		}
	}
	// The keys of a phase line start as documented.
	first := strings.SplitN(out, "\n", 2)[0]
	if want := `{"scenario":"pressure","phase":"clean","run":1,"offered_per_sec":40,"achieved_per_sec":`; !strings.HasPrefix(first, want) {
		t.Errorf("first line %s, want it to start %s", first, want)
	}
	requireDropped(t, admin, errOut)
}

// TestBenchExisting runs in a database of its own and leaves it, and what
// it held, in place.
func TestBenchExisting(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	other, err := outbox.Enqueue(ctx, db.Pool, outbox.Raw{TopicName: "app.other", Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := benchCLI(t, ctx, "--existing", "--database-url", db.URL, "--json",
		"--entries", "200", "drain", "raw")
	if code != sidecar.ExitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if lines := jsonLines(t, out); len(lines) != 2 || lines[0]["scenario"] != "drain" || lines[1]["scenario"] != "raw" {
		t.Fatalf("output: %s", out)
	}
	if scratchName.MatchString(errOut) {
		t.Errorf("--existing made a scratch database: %s", errOut)
	}
	// The database is still there, with the application's entry pending
	// and none of the bench's rows.
	e, err := outbox.Get(ctx, db.Pool, other.ID)
	if err != nil || e.State != "pending" {
		t.Fatalf("the application's entry: %+v, %v", e, err)
	}
	var bench, keys int
	var table *string
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox_entries WHERE topic = 'bench.noop'),
		(SELECT count(*) FROM outbox_processed_keys WHERE scope = 'bench.noop'),
		to_regclass('txoutbox_bench_orders')::text`).Scan(&bench, &keys, &table); err != nil {
		t.Fatal(err)
	}
	if bench != 0 || keys != 0 || table != nil {
		t.Errorf("left behind: %d entries, %d processed keys, table %v", bench, keys, table)
	}
}

// TestBenchInterruptDropsScratch cancels a long steady run: the command
// fails, and the scratch database is dropped all the same.
func TestBenchInterruptDropsScratch(t *testing.T) {
	t.Parallel()
	admin := outboxtest.AdminURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt once the scratch database exists (its name is on stderr),
	// however long creating it took on a busy machine.
	errW := &watchedBuffer{match: scratchName, seen: make(chan struct{})}
	go func() {
		select {
		case <-errW.seen:
		case <-time.After(2 * time.Minute):
		}
		cancel()
	}()
	var outW bytes.Buffer
	code := sidecar.Main(ctx, []string{"bench", "steady", "--database-url", admin, "--duration", "1m",
		"--rate", "50", "--producers", "2"}, sidecar.Options{
		Stdout: &outW, Stderr: errW,
		Getenv: func(string) string { return "" },
	})
	out, errOut := outW.String(), errW.String()
	if code != sidecar.ExitFailure || !strings.Contains(errOut, "interrupted") {
		t.Fatalf("exit %d, want 1 and a word about the interruption\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	requireDropped(t, admin, errOut)
}

// watchedBuffer is a bytes.Buffer safe for concurrent use that closes seen
// once its content first matches match.
type watchedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	match *regexp.Regexp
	seen  chan struct{}
	done  bool
}

func (w *watchedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if !w.done && w.match.Match(w.buf.Bytes()) {
		w.done = true
		close(w.seen)
	}
	return n, err
}

func (w *watchedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Should a case pass validation after all, it fails fast on this
	// unreachable server rather than running a benchmark.
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none?connect_timeout=1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--entries", "0"}, "--entries"},
		{[]string{"--entries", "lots"}, "-entries"},
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--rate", "-5"}, "--rate"},
		{[]string{"--rate", "NaN"}, "--rate"},
		{[]string{"--rate", "0.4", "--duration", "1s"}, "--rate"},
		{[]string{"--producers", "0"}, "--producers"},
		{[]string{"--duration", "10ms"}, "--duration"},
		{[]string{"--duration", "soon"}, "-duration"},
		{[]string{"--workers", "-1"}, "--workers"},
		{[]string{"--workers", "10001"}, "--workers"},
		{[]string{"--claim-batch", "1001"}, "--claim-batch"},
		{[]string{"--complete-batch", "-3"}, "--complete-batch"},
		{[]string{"--backlog", "-1"}, "--backlog"},
		{[]string{"--processes", "-1"}, "--processes"},
		{[]string{"--processes", "65"}, "--processes"},
		{[]string{"--runs", "0"}, "--runs"},
		{[]string{"--phase-duration", "500ms"}, "--phase-duration"},
		{[]string{"--phase-duration", "25h"}, "--phase-duration"},
		{[]string{"--pressure-rate", "0"}, "--pressure-rate"},
		{[]string{"--pressure-rate", "0.4", "--phase-duration", "1s"}, "--pressure-rate"},
		{[]string{"frobnicate"}, "unknown scenario"},
		{[]string{"drain", "drain"}, "twice"},
		{[]string{"--database-url", "postgres://%zz"}, "--database-url"},
		{[]string{"--cpuprofile", filepath.Join(dir, "no", "such", "dir", "cpu.pprof")}, "--cpuprofile"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		code, _, errOut := benchEnv(t, context.Background(), env, tc.args...)
		if code != sidecar.ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message naming %s", tc.args, code, errOut, tc.want)
		}
	}
	// --existing needs a database named, not a scratch one on a throwaway
	// server.
	if code, _, errOut := benchCLI(t, context.Background(), "--existing"); code != sidecar.ExitUsage || !strings.Contains(errOut, "--existing") {
		t.Errorf("--existing without a database: exit %d, stderr %q", code, errOut)
	}
	// An unreachable server is a failure, not a usage error.
	if code, _, errOut := benchEnv(t, context.Background(), env, "drain"); code != sidecar.ExitFailure {
		t.Errorf("unreachable server: exit %d, stderr %q; want 1", code, errOut)
	}
}

// requireNoRelayProcess fails if a relay process of the scratch database
// named in stderr is still running, or exited and was not waited for.
// Without /proc it checks nothing.
func requireNoRelayProcess(t *testing.T, stderr string) {
	t.Helper()
	m := scratchName.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr names no scratch database: %q", stderr)
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, path := range cmdlines {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[1] == bench.RelayProcessCommand && strings.Contains(string(b), "\x00"+m[1]+"\x00") {
			t.Errorf("relay process %s of %s is left: %q", filepath.Base(filepath.Dir(path)), m[1], args)
		}
	}
}

// TestBenchDrainProcesses runs the drain scenario with two relay processes
// to the end, and again interrupted while they drain: either way no relay
// process outlives the command.
func TestBenchDrainProcesses(t *testing.T) {
	t.Parallel()
	admin := outboxtest.AdminURL(t)

	t.Run("complete", func(t *testing.T) {
		code, out, errOut := benchCLI(t, context.Background(), "drain", "--json", "--processes", "2",
			"--entries", "2000", "--workers", "50", "--database-url", admin)
		if code != sidecar.ExitOK {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		lines := jsonLines(t, out)
		if len(lines) != 1 || lines[0]["scenario"] != "drain" {
			t.Fatalf("output: %s", out)
		}
		drain := lines[0]
		requireValue(t, drain, "processes", 2)
		requireValue(t, drain, "entries", 2000)
		requireValue(t, drain, "workers", 50)
		requireValue(t, drain, "claim_batch", 100)
		requireValue(t, drain, "reclaimed", 0)
		requireFields(t, drain, "seconds", "per_sec", "wal_bytes_per_entry", "row_writes_per_entry")
		// The relay processes' writes count once they have exited.
		if ins, all := drain["row_writes_per_insert"].(float64), drain["row_writes_per_entry"].(float64); ins < 1 || all <= ins {
			t.Errorf("row writes per insert %v, per entry %v: want 1 ≤ insert < entry", ins, all)
		}
		if _, err := os.Stat("/proc/self/status"); err == nil {
			requireFields(t, drain, "rss_peak_mb")
		}
		if v, _ := drain["per_sec"].(float64); v <= 0 {
			t.Errorf("per_sec %v", v)
		}
		if _, ok := drain["unexpected_events"]; ok {
			t.Errorf("unexpected_events, which the relay processes do not report: %s", out)
		}
		// The scenario itself fails unless every entry ended done.
		if strings.Contains(errOut, "relay process") && strings.Contains(errOut, "level=WARN") {
			t.Errorf("the relay processes warned or wrote unexpected output:\n%s", errOut)
		}
		requireNoRelayProcess(t, errOut)
		requireDropped(t, admin, errOut)
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out bytes.Buffer
		var errOut syncBuffer
		done := make(chan int)
		go func() {
			done <- sidecar.Main(ctx, []string{"bench", "drain", "--processes", "2", "--entries", "20000",
				"--database-url", admin}, sidecar.Options{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		}()
		var code int
		deadline := time.After(time.Minute)
	wait:
		for {
			select {
			case code = <-done:
				t.Fatalf("finished before the relay processes were ready: exit %d\nstderr: %s", code, errOut.String())
			case <-deadline:
				t.Fatalf("the relay processes were not ready in a minute:\n%s", errOut.String())
			case <-time.After(5 * time.Millisecond):
				if strings.Contains(errOut.String(), "relay processes ready") {
					cancel()
					break wait
				}
			}
		}
		select {
		case code = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("the command did not return a minute after the interrupt:\n%s", errOut.String())
		}
		if code != sidecar.ExitFailure || !strings.Contains(errOut.String(), "interrupted") {
			t.Fatalf("exit %d, want 1 and a word about the interruption\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
		}
		requireNoRelayProcess(t, errOut.String())
		requireDropped(t, admin, errOut.String())
	})
}

func TestBenchRelayProcessCommand(t *testing.T) {
	t.Parallel()
	var help bytes.Buffer
	sidecar.Main(context.Background(), []string{"--help"}, sidecar.Options{Stdout: &help})
	if strings.Contains(help.String(), bench.RelayProcessCommand) {
		t.Errorf("help lists the hidden %s command:\n%s", bench.RelayProcessCommand, help.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no database"},
		{[]string{"--claim-batch", "5000", "--database-url", "postgres://127.0.0.1:1/none"}, "--claim-batch"},
		{[]string{"--database-url", "postgres://%zz"}, "--database-url"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var out, errOut bytes.Buffer
		code := sidecar.Main(context.Background(), append([]string{bench.RelayProcessCommand}, tc.args...), sidecar.Options{
			Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" },
		})
		if code != sidecar.ExitUsage || !strings.Contains(errOut.String(), tc.want) || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing on stdout and a message naming %s",
				tc.args, code, out.String(), errOut.String(), tc.want)
		}
	}
}
