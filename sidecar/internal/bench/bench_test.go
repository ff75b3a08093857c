package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar/internal/bench"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := bench.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range []struct {
		field  string
		change func(*bench.Config)
	}{
		{"Entries", func(c *bench.Config) { c.Entries = 0 }},
		{"Entries", func(c *bench.Config) { c.Entries = 100_000_001 }},
		{"Rate", func(c *bench.Config) { c.Rate = 0 }},
		{"Rate", func(c *bench.Config) { c.Rate = math.NaN() }},
		{"Rate", func(c *bench.Config) { c.Rate = math.Inf(1) }},
		{"Rate", func(c *bench.Config) { c.Rate, c.Duration = 1, 400*time.Millisecond }},
		{"Producers", func(c *bench.Config) { c.Producers = 0 }},
		{"Duration", func(c *bench.Config) { c.Duration = time.Millisecond }},
		{"Duration", func(c *bench.Config) { c.Duration = 25 * time.Hour }},
		{"Workers", func(c *bench.Config) { c.Workers = -1 }},
		{"ClaimBatch", func(c *bench.Config) { c.ClaimBatch = 1001 }},
		{"CompleteBatch", func(c *bench.Config) { c.CompleteBatch = 10_001 }},
		{"Backlog", func(c *bench.Config) { c.Backlog = -1 }},
		{"Processes", func(c *bench.Config) { c.Processes = -1 }},
		{"Processes", func(c *bench.Config) { c.Processes = 65 }},
		{"PhaseDuration", func(c *bench.Config) { c.PhaseDuration = 999 * time.Millisecond }},
		{"PhaseDuration", func(c *bench.Config) { c.PhaseDuration = 25 * time.Hour }},
		{"PressureRate", func(c *bench.Config) { c.PressureRate = 0 }},
		{"PressureRate", func(c *bench.Config) { c.PressureRate = math.NaN() }},
		{"PressureRate", func(c *bench.Config) { c.PressureRate, c.PhaseDuration = 0.4, time.Second }},
		{"PressureRate", func(c *bench.Config) { c.PressureRate, c.PhaseDuration = 1e6, time.Hour }},
	} {
		c := bench.DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		var ce *bench.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, bench.ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want a *ConfigError for %s", c, err, tc.field)
		}
	}
}

func TestEffective(t *testing.T) {
	t.Parallel()
	c := bench.DefaultConfig()
	if got, want := c.Effective(), (bench.Effective{Workers: 100, ClaimBatch: 100, CompleteBatch: 500}); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	c.Workers, c.ClaimBatch, c.CompleteBatch = 7, 8, 9
	if got, want := c.Effective(), (bench.Effective{Workers: 7, ClaimBatch: 8, CompleteBatch: 9}); got != want {
		t.Errorf("set: %+v, want %+v", got, want)
	}
}

func result(perSec float64) bench.Result {
	return bench.Result{Scenario: "drain", Metrics: []bench.Metric{
		{Name: "entries", Value: 1000, Setting: true},
		{Name: "seconds", Value: 1000 / perSec, Digits: 3},
		{Name: "per_sec", Value: perSec, Digits: 1},
	}}
}

func TestJSONLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := bench.WriteJSON(&buf, result(2000), 0); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), `{"scenario":"drain","entries":1000,"seconds":0.500,"per_sec":2000.0}`+"\n"; got != want {
		t.Errorf("single run:\n got %s want %s", got, want)
	}
	buf.Reset()
	if err := bench.WriteJSON(&buf, result(2000), 2); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), `{"scenario":"drain","run":2,`) {
		t.Errorf("numbered run: %s", buf.String())
	}

	buf.Reset()
	s := bench.Summarize([]bench.Result{result(1000), result(4000), result(2000)})
	if err := bench.WriteSummaryJSON(&buf, s); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{
		"scenario": "drain", "summary": true, "runs": 3.0, "entries": 1000.0,
		"per_sec": 2000.0, "per_sec_min": 1000.0, "per_sec_max": 4000.0,
		"seconds": 0.5, "seconds_min": 0.25, "seconds_max": 1.0,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("summary %s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["entries_min"]; ok {
		t.Errorf("a setting got a min: %s", buf.String())
	}

	// An even number of runs takes the mean of the middle two.
	if got := bench.Summarize([]bench.Result{result(1000), result(3000)}); got.Metrics[2].Median != 2000 {
		t.Errorf("median of two: %v", got.Metrics[2].Median)
	}
}

func TestTable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := bench.WriteTable(&buf, []bench.Result{result(1000), result(3000)}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"drain  entries=1000", "RUN 1", "RUN 2", "MEDIAN", "per_sec", "2000.0", "3000.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nentries") || strings.Contains(out, "  entries ") {
		t.Errorf("a setting got a row:\n%s", out)
	}
}

func phaseResult(phase string, p50 float64) bench.Result {
	return bench.Result{Scenario: "pressure", Phase: phase, Metrics: []bench.Metric{
		{Name: "offered_per_sec", Value: 500, Setting: true},
		{Name: "achieved_per_sec", Value: 499.5, Digits: 1},
		{Name: "p50_ms", Value: p50, Digits: 3},
	}}
}

func TestPhases(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := bench.WriteJSON(&buf, phaseResult("pinned", 2), 0); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), `{"scenario":"pressure","phase":"pinned","offered_per_sec":500,"achieved_per_sec":499.5,"p50_ms":2.000}`+"\n"; got != want {
		t.Errorf("phase line:\n got %s want %s", got, want)
	}

	// Two runs of two phases: one group, summary and column per phase.
	runs := []bench.Result{phaseResult("clean", 1), phaseResult("pinned", 10), phaseResult("clean", 3), phaseResult("pinned", 30)}
	groups := bench.Groups(runs)
	if len(groups) != 2 || len(groups[0]) != 2 || groups[0][1].Phase != "clean" || groups[1][0].Phase != "pinned" {
		t.Fatalf("groups: %+v", groups)
	}
	buf.Reset()
	if err := bench.WriteSummaryJSON(&buf, bench.Summarize(groups[1])); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), `{"scenario":"pressure","phase":"pinned","summary":true,"runs":2,`) || !strings.Contains(buf.String(), `"p50_ms":20.000,"p50_ms_min":10.000,"p50_ms_max":30.000`) {
		t.Errorf("phase summary: %s", buf.String())
	}
	buf.Reset()
	if err := bench.WriteTable(&buf, runs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"pressure  offered_per_sec=500  (medians of 2 runs)", "CLEAN", "PINNED", "2.000", "20.000"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestRunner runs the quick scenarios at toy sizes on a database of its
// own; the sidecar's tests run all four through the command line.
func TestRunner(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	cfg := bench.DefaultConfig()
	cfg.Entries = 120
	cfg.ClaimBatch = 7 // batches that do not divide the entries
	cfg.CompleteBatch = 5
	r, err := bench.New(ctx, db.Pool.Config(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"raw", "drain"} {
		results, err := r.Run(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if len(results) != 1 {
			t.Fatalf("%s: %d results, want 1", s, len(results))
		}
		res := results[0]
		if res.Scenario != s || res.Phase != "" {
			t.Errorf("scenario %q phase %q, want %q and none", res.Scenario, res.Phase, s)
		}
		for name, want := range map[string]float64{"entries": 120, "workers": 100, "claim_batch": 7, "complete_batch": 5} {
			if got, ok := res.Get(name); !ok || got != want {
				t.Errorf("%s: %s = %v (%v), want %v", s, name, got, ok, want)
			}
		}
		if s != "drain" {
			continue
		}
		// Whatever the storage layout, an entry is written at least once
		// and its completion at least once more. (With the layout of
		// schema version 5 the counts are exactly 1 and 3: an insert, then
		// two updates.)
		for _, kind := range []string{"row_writes", "wal_bytes"} {
			insert, ok1 := res.Get(kind + "_per_insert")
			entry, ok2 := res.Get(kind + "_per_entry")
			if !ok1 || !ok2 || insert < 1 || entry <= insert {
				t.Errorf("drain: %s per insert %v, per entry %v: want 1 ≤ insert < entry", kind, insert, entry)
			}
		}
	}
	if _, err := r.Run(ctx, "sideways"); !errors.Is(err, bench.ErrUnknownScenario) {
		t.Errorf("unknown scenario: %v", err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var table *string
	if err := db.Pool.QueryRow(ctx, `SELECT to_regclass('txoutbox_bench_orders')::text`).Scan(&table); err != nil || table != nil {
		t.Errorf("domain table after Close: %v, %v", table, err)
	}
	if _, err := bench.New(ctx, db.Pool.Config(), bench.Config{}); !errors.Is(err, bench.ErrInvalidConfig) {
		t.Errorf("New with a zero Config: %v", err)
	}
}

// TestRunnerPressure runs the pressure scenario at toy size, five phases
// of a second at 50 entries a second, while a watcher looks for the
// pinning session: idle in its transaction, holding a transaction id.
func TestRunnerPressure(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	cfg := bench.DefaultConfig()
	cfg.PhaseDuration = time.Second
	cfg.PressureRate = 50
	cfg.Producers = 4
	r, err := bench.New(ctx, db.Pool.Config(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
	}()

	watchCtx, stopWatching := context.WithCancel(ctx)
	pinSeen := make(chan bool, 1)
	go func() {
		for {
			var n int
			err := db.Pool.QueryRow(watchCtx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'idle in transaction'
					AND backend_xid IS NOT NULL AND query = 'SELECT txid_current()'`).Scan(&n)
			if err == nil && n == 1 {
				pinSeen <- true
				return
			}
			select {
			case <-watchCtx.Done():
				pinSeen <- false
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	results, err := r.Run(ctx, "pressure")
	stopWatching()
	if err != nil {
		t.Fatal(err)
	}
	if !<-pinSeen {
		t.Error("no session was seen idle in a transaction holding an id")
	}

	phases := []string{"clean", "pinned", "recovery", "readers", "recovery2"}
	if len(results) != len(phases) {
		t.Fatalf("%d results, want %d: %+v", len(results), len(phases), results)
	}
	var entries float64
	for i, res := range results {
		if res.Scenario != "pressure" || res.Phase != phases[i] {
			t.Errorf("result %d: %s/%s, want pressure/%s", i, res.Scenario, res.Phase, phases[i])
		}
		get := func(name string) float64 {
			v, ok := res.Get(name)
			if !ok || v < 0 || math.IsNaN(v) {
				t.Errorf("%s: %s = %v (%v)", res.Phase, name, v, ok)
			}
			return v
		}
		for name, want := range map[string]float64{"offered_per_sec": 50, "phase_s": 1, "producers": 4, "workers": 100, "unexpected_events": 0} {
			if got := get(name); got != want {
				t.Errorf("%s: %s = %v, want %v", res.Phase, name, got, want)
			}
		}
		if p50, p99, mx := get("p50_ms"), get("p99_ms"), get("max_ms"); p50 > p99 || p99 > mx {
			t.Errorf("%s: p50 %v, p99 %v, max %v out of order", res.Phase, p50, p99, mx)
		}
		if get("table_bytes") == 0 {
			t.Errorf("%s: no table bytes", res.Phase)
		}
		for _, name := range []string{"achieved_per_sec", "backlog_end", "dead_tuples", "xmin_age", "vacuums", "autovacuum"} {
			get(name)
		}
		entries += get("entries")
	}
	if entries != 250 {
		t.Errorf("%v entries over the phases, want 250", entries)
	}
	// Every entry committed in the pinned phase took an id after the
	// pinning session's.
	if age, _ := results[1].Get("xmin_age"); age < 1 {
		t.Errorf("pinned: xmin_age %v", age)
	}
}

// The bench's copies of the relay's defaults must follow the relay.
func TestRelayDefaultsMatchTheRelay(t *testing.T) {
	h := relay.NewHandlers()
	relay.Handle(h, func(context.Context, *relay.Entry[benchPayload]) error { return nil })
	c, err := relay.Config{Handlers: h}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.Queues[outbox.DefaultQueue].MaxWorkers, c.ClaimBatchSize, c.CompleteBatchSize, c.LeaseDuration}
	want := []any{bench.RelayDefaultWorkers, bench.RelayDefaultClaimBatch, bench.RelayDefaultCompleteBatch, bench.RelayDefaultLease}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("relay defaults (workers, claim batch, complete batch, lease) = %v; the bench assumes %v", got, want)
	}
}

type benchPayload struct{}

func (benchPayload) Topic() string { return bench.Topic }
