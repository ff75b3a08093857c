package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/migrations"
	"github.com/txoutbox/txoutbox/sidecar/internal/bench"
)

// benchPrefix names the scratch databases of the bench command:
// txoutbox_bench_<random>.
const benchPrefix = "txoutbox_bench"

// maxBenchRuns bounds --runs.
const maxBenchRuns = 1000

// benchFlagNames maps bench.Config fields to the flags that set them, for
// messages.
var benchFlagNames = map[string]string{
	"Entries": "--entries", "Rate": "--rate", "Producers": "--producers", "Duration": "--duration",
	"Workers": "--workers", "ClaimBatch": "--claim-batch", "CompleteBatch": "--complete-batch",
	"Backlog": "--backlog", "Processes": "--processes",
	"PressureRate": "--pressure-rate", "PhaseDuration": "--phase-duration",
}

func runBench(ctx context.Context, o *Options, args []string) error {
	scenarios := bench.Scenarios()
	fs := newFlags(o, "bench", "bench [flags] ["+strings.Join(scenarios, "|")+" ...]",
		"bench                                   # "+strings.Join(bench.DefaultScenarios(), ", ")+" on a scratch database, dropped afterwards",
		"bench --json drain raw",
		"bench --runs 5 --json steady --rate 2000 --duration 30s",
		"bench steady --backlog 1000000          # steady load on a table that just drained a million entries",
		"bench --existing --database-url postgres://app@db/staging drain",
		"bench --json --processes 4 drain        # four relay processes drain the backlog",
		"bench --json pressure --phase-duration 1m  # 500/s through a pinned horizon and REPEATABLE READ readers")
	dbURL := dbFlag(o, fs)
	def := bench.DefaultConfig()
	existing := fs.Bool("existing", false, "use the database in the URL as it is (migrated up, not dropped; only the bench's own rows are touched) instead of a scratch database on its server")
	entries := fs.Int("entries", def.Entries, "entries the drain and raw scenarios write and empty")
	rate := fs.Float64("rate", def.Rate, "steady: offered transactions (one entry each) per second, all producers together")
	producers := fs.Int("producers", def.Producers, "steady, pressure: producer goroutines, each on its own connection")
	duration := fs.Duration("duration", def.Duration, "steady: how long load is offered; enqueue: about how long it measures")
	workers := fs.Int("workers", 0, "relay MaxWorkers of the default queue (0: the relay's default, 100)")
	claimBatch := fs.Int("claim-batch", 0, "relay ClaimBatchSize (0: the relay's default, 100)")
	completeBatch := fs.Int("complete-batch", 0, "relay CompleteBatchSize (0: the relay's default, 500)")
	backlog := fs.Int("backlog", 0, "steady: first write and drain this many entries, then offer the load")
	chosenKeys := fs.Bool("chosen-keys", false, "drain, raw: backlog entries carry producer-chosen keys (processed keys probed and recorded) instead of generated ones")
	processes := fs.Int("processes", 0, "drain: run the relays in this many child processes of this program (0: one relay inside the bench process)")
	pressureRate := fs.Float64("pressure-rate", def.PressureRate, "pressure: offered transactions (one entry each) per second, all producers together")
	phaseDuration := fs.Duration("phase-duration", def.PhaseDuration, "pressure: length of each of its five phases")
	runs := fs.Int("runs", 1, "run each scenario this many times; above 1, print a median, min and max summary")
	asJSON := fs.Bool("json", false, "print one JSON object per scenario run (per phase of a pressure run) and summary on its own line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process to this file")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}

	chosen := fs.Args()
	if len(chosen) == 0 {
		chosen = bench.DefaultScenarios()
	}
	for i, s := range chosen {
		if !bench.KnownScenario(s) {
			return usagef("unknown scenario %q (known: %s)", s, strings.Join(scenarios, ", "))
		}
		if slices.Contains(chosen[:i], s) {
			return usagef("scenario %q named twice; use --runs to repeat it", s)
		}
	}
	if *runs < 1 || *runs > maxBenchRuns {
		return usagef("--runs must be 1–%d, got %d", maxBenchRuns, *runs)
	}
	cfg := bench.Config{
		Entries: *entries, Rate: *rate, Producers: *producers, Duration: *duration,
		Workers: *workers, ClaimBatch: *claimBatch, CompleteBatch: *completeBatch,
		Backlog: *backlog, Existing: *existing, ChosenKeys: *chosenKeys, Processes: *processes,
		PressureRate: *pressureRate, PhaseDuration: *phaseDuration,
	}
	if err := cfg.Validate(); err != nil {
		return benchConfigError(err)
	}
	url := *dbURL
	if url == "" {
		url = o.Getenv("DATABASE_URL")
	}
	if *existing && url == "" {
		return usagef("--existing needs a database: pass --database-url or set DATABASE_URL")
	}
	var poolCfg *pgxpool.Config
	if url != "" {
		var err error
		if poolCfg, err = pgxpool.ParseConfig(url); err != nil {
			return usagef("--database-url: %w", err)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return usagef("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return usagef("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Logger = benchLogger(o.Stderr, slog.LevelInfo)

	b := &benchCmd{o: o, cfg: cfg, scenarios: chosen, runs: *runs, json: *asJSON}
	var err error
	if *existing {
		err = b.onExisting(ctx, poolCfg)
	} else {
		err = scratchdb.Run(ctx, o.Stderr, url, benchPrefix, func(pool *pgxpool.Pool) error {
			c := pool.Config()
			fmt.Fprintf(o.Stderr, "%s bench: using scratch database %s on %s (dropped at the end)\n",
				o.Name, c.ConnConfig.Database, hostPort(c))
			return b.run(ctx, c)
		})
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return err
}

// benchConfigError turns bench.Config's error into a usage error naming
// the flag.
func benchConfigError(err error) error {
	var ce *bench.ConfigError
	if errors.As(err, &ce) {
		return usagef("%s %s", benchFlagNames[ce.Field], ce.Reason)
	}
	return usageOf(err)
}

// benchLogger logs text records from level up to w, without times.
func benchLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// hostPort names the server of c for messages, without credentials.
func hostPort(c *pgxpool.Config) string {
	return fmt.Sprintf("%s:%d", c.ConnConfig.Host, c.ConnConfig.Port)
}

// benchCmd is one invocation of the bench command.
type benchCmd struct {
	o         *Options
	cfg       bench.Config
	scenarios []string
	runs      int
	json      bool
}

// onExisting migrates the database poolCfg names up and runs the
// scenarios in it.
func (b *benchCmd) onExisting(ctx context.Context, poolCfg *pgxpool.Config) error {
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg.Copy())
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(pool)
	_, err = migrations.Up(ctx, db)
	_ = db.Close()
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrating %s: %w", poolCfg.ConnConfig.Database, err)
	}
	fmt.Fprintf(b.o.Stderr, "%s bench: using the existing database %s on %s (kept; only %s entries are touched)\n",
		b.o.Name, poolCfg.ConnConfig.Database, hostPort(poolCfg), bench.Topic)
	return b.run(ctx, poolCfg)
}

// run runs every chosen scenario runs times and prints the results as
// they come.
func (b *benchCmd) run(ctx context.Context, poolCfg *pgxpool.Config) (err error) {
	r, err := bench.New(ctx, poolCfg, b.cfg)
	if err != nil {
		return err
	}
	defer func() {
		// Clean up even when interrupted.
		if cerr := r.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	out := b.o.Stdout
	for _, s := range b.scenarios {
		var results []bench.Result
		for i := range b.runs {
			if b.runs > 1 {
				b.cfg.Logger.Info(fmt.Sprintf("bench: %s: run %d of %d", s, i+1, b.runs))
			}
			rs, err := r.Run(ctx, s)
			if err != nil {
				return err
			}
			results = append(results, rs...)
			if b.json {
				run := 0
				if b.runs > 1 {
					run = i + 1
				}
				for _, res := range rs {
					if err := bench.WriteJSON(out, res, run); err != nil {
						return err
					}
				}
			}
		}
		if b.json {
			if b.runs > 1 {
				for _, g := range bench.Groups(results) {
					if err := bench.WriteSummaryJSON(out, bench.Summarize(g)); err != nil {
						return err
					}
				}
			}
			continue
		}
		if err := bench.WriteTable(out, results); err != nil {
			return err
		}
	}
	return nil
}

// runBenchRelay is the hidden command bench.RelayProcessCommand: one relay
// process of `bench --processes N drain`, started by the bench process,
// which talks to it through its standard input and output (see
// bench.RunRelayProcess). It logs warnings and errors to standard error.
func runBenchRelay(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, bench.RelayProcessCommand, bench.RelayProcessCommand+" [flags]  (started by bench --processes; not for direct use)")
	dbURL := dbFlag(o, fs)
	database := fs.String("database", "", "database to work in, instead of the URL's")
	workers := fs.Int("workers", 0, "relay MaxWorkers of the default queue (0: the relay's default)")
	claimBatch := fs.Int("claim-batch", 0, "relay ClaimBatchSize (0: the relay's default)")
	completeBatch := fs.Int("complete-batch", 0, "relay CompleteBatchSize (0: the relay's default)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg := bench.DefaultConfig()
	cfg.Workers, cfg.ClaimBatch, cfg.CompleteBatch = *workers, *claimBatch, *completeBatch
	if err := cfg.Validate(); err != nil {
		return benchConfigError(err)
	}
	url := *dbURL
	if url == "" {
		url = o.Getenv("DATABASE_URL")
	}
	if url == "" {
		return usagef("no database: pass --database-url or set DATABASE_URL")
	}
	poolCfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return usagef("--database-url: %w", err)
	}
	if *database != "" {
		poolCfg.ConnConfig.Database = *database
	}
	cfg.Logger = benchLogger(o.Stderr, slog.LevelWarn)
	return bench.RunRelayProcess(ctx, poolCfg, cfg, os.Stdin, o.Stdout)
}
