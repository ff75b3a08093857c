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
		res, err := r.Run(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if res.Scenario != s {
			t.Errorf("scenario %q, want %q", res.Scenario, s)
		}
		for name, want := range map[string]float64{"entries": 120, "workers": 100, "claim_batch": 7, "complete_batch": 5} {
			if got, ok := res.Get(name); !ok || got != want {
				t.Errorf("%s: %s = %v (%v), want %v", s, name, got, ok, want)
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
