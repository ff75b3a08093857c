package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// AppName is the application_name of every session the bench opens, its
// relay processes' included: the drain scenario waits for the bench's
// sessions to end before it reads the statistics they report on exit.
const AppName = "txoutbox bench"

// ordersTable is the steady and enqueue scenarios' domain table.
const ordersTable = "txoutbox_bench_orders"

// relayPoolMinConns is the least the relays' pool gets: the relay benchmarks
// in relay/bench_test.go use 10, and pgxpool's own default (max(4, CPUs))
// is tight for a claim loop, a completer, heartbeats and maintenance.
const relayPoolMinConns = 10

// stallTimeout bounds a wait for the relay in which no entry got done: a
// hang guard, not a timing assertion.
const stallTimeout = time.Minute

// payload is the entries' JSON payload. Seq, from 1, numbers the steady
// scenario's entries; other entries have none.
type payload struct {
	N   int64 `json:"n"`
	Seq int64 `json:"seq,omitempty"`
}

// Topic implements outbox.Message.
func (payload) Topic() string { return Topic }

// Runner runs scenarios on one database. It is not safe for concurrent
// use: one scenario runs at a time.
type Runner struct {
	cfg       Config
	eff       Effective
	log       *slog.Logger
	app       *pgxpool.Pool // producers and setup statements
	relayPool *pgxpool.Pool // the relays and the raw loops
	handlers  *relay.Handlers
	rec       atomic.Pointer[recorder] // the steady scenario's start times
	// The connection string and database of the pools, for the relay
	// processes of Config.Processes.
	connString, database string
}

// New validates cfg, opens two pools on the database poolCfg names (one
// for producers and setup, sized for cfg.Producers; one for the relay,
// with at least 10 connections), their sessions named AppName, and
// creates the domain table. The database must be migrated. Call Close when
// done.
func New(ctx context.Context, poolCfg *pgxpool.Config, cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if poolCfg == nil {
		return nil, errors.New("bench: nil pool configuration")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		cfg: cfg, eff: cfg.Effective(), log: cfg.Logger, handlers: relay.NewHandlers(),
		connString: poolCfg.ConnString(), database: poolCfg.ConnConfig.Database,
	}
	relay.Handle(r.handlers, r.handle)

	poolCfg = nameSessions(poolCfg)
	appCfg := poolCfg.Copy()
	appCfg.MaxConns = int32(max(cfg.Producers+2, 4))
	app, err := pgxpool.NewWithConfig(ctx, appCfg)
	if err != nil {
		return nil, fmt.Errorf("bench: producer pool: %w", err)
	}
	relayCfg := poolCfg.Copy()
	relayCfg.MaxConns = max(relayCfg.MaxConns, relayPoolMinConns)
	rp, err := pgxpool.NewWithConfig(ctx, relayCfg)
	if err != nil {
		app.Close()
		return nil, fmt.Errorf("bench: relay pool: %w", err)
	}
	r.app, r.relayPool = app, rp
	if _, err := app.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ordersTable+` (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		note text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		r.closePools()
		return nil, fmt.Errorf("bench: creating %s: %w", ordersTable, err)
	}
	return r, nil
}

// nameSessions returns a copy of c whose sessions are named AppName.
func nameSessions(c *pgxpool.Config) *pgxpool.Config {
	c = c.Copy()
	if c.ConnConfig.RuntimeParams == nil {
		c.ConnConfig.RuntimeParams = map[string]string{}
	}
	c.ConnConfig.RuntimeParams["application_name"] = AppName
	return c
}

// Effective returns the relay settings the scenarios run with.
func (r *Runner) Effective() Effective { return r.eff }

// Close drops the domain table, with Config.Existing deletes the entries
// and processed keys of Topic, and closes the pools.
func (r *Runner) Close(ctx context.Context) error {
	defer r.closePools()
	var errs []error
	if r.cfg.Existing {
		if err := r.clean(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := r.app.Exec(ctx, `DROP TABLE IF EXISTS `+ordersTable); err != nil {
		errs = append(errs, fmt.Errorf("bench: dropping %s: %w", ordersTable, err))
	}
	return errors.Join(errs...)
}

func (r *Runner) closePools() {
	r.app.Close()
	r.relayPool.Close()
}

// Run runs one scenario once and returns its result: one Result, or for
// a scenario with phases (pressure) one per phase, in order.
func (r *Runner) Run(ctx context.Context, scenario string) ([]Result, error) {
	var res []Result
	var err error
	one := func(f func(context.Context) (Result, error)) {
		var single Result
		if single, err = f(ctx); err == nil {
			res = []Result{single}
		}
	}
	switch scenario {
	case "enqueue":
		one(r.enqueue)
	case "raw":
		one(r.raw)
	case "drain":
		one(r.drain)
	case "steady":
		one(r.steady)
	case "pressure":
		res, err = r.pressure(ctx)
	default:
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownScenario, scenario, strings.Join(Scenarios(), ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", scenario, err)
	}
	for i := range res {
		res[i].Scenario = scenario
	}
	return res, nil
}

// relaySettings adds the effective relay configuration to res.
func (r *Runner) relaySettings(res *Result) {
	res.setting("workers", float64(r.eff.Workers), 0)
	res.setting("claim_batch", float64(r.eff.ClaimBatch), 0)
	res.setting("complete_batch", float64(r.eff.CompleteBatch), 0)
}

// handle is the no-op handler. For steady entries it records when it
// started, first thing.
func (r *Runner) handle(_ context.Context, e *relay.Entry[payload]) error {
	now := time.Now()
	if e.Payload.Seq > 0 {
		if rec := r.rec.Load(); rec != nil {
			rec.started(e.Payload.Seq-1, now)
		}
	}
	return nil
}

// clean empties what the scenarios write: the whole outbox when the
// database is the bench's own, else only rows of Topic.
func (r *Runner) clean(ctx context.Context) error {
	stmts := []string{`TRUNCATE outbox_entries, outbox_processed_keys, ` + ordersTable}
	if r.cfg.Existing {
		stmts = []string{
			`DELETE FROM outbox_entries WHERE topic = '` + Topic + `'`,
			`DELETE FROM outbox_processed_keys WHERE scope = '` + Topic + `'`,
			`TRUNCATE ` + ordersTable,
		}
	}
	for _, q := range stmts {
		if _, err := r.app.Exec(ctx, q); err != nil {
			return fmt.Errorf("cleaning up: %w", err)
		}
	}
	return nil
}

// insertPending writes n pending entries of Topic with one COPY, bypassing
// the producer API (whose cost is the enqueue scenario's business).
func (r *Runner) insertPending(ctx context.Context, n int) error {
	r.log.Info("bench: writing pending entries with COPY", "entries", n, "chosen_keys", r.cfg.ChosenKeys)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		i++
		payload := json.RawMessage(fmt.Appendf(nil, `{"n":%d}`, i))
		if r.cfg.ChosenKeys {
			return []any{Topic, payload, fmt.Sprintf("bench-%d", i), false}, nil
		}
		// As outbox.Enqueue without WithKey: the key column's default (a
		// generated, time-ordered key), marked as generated.
		return []any{Topic, payload, true}, nil
	})
	cols := []string{"topic", "payload", "key_generated"}
	if r.cfg.ChosenKeys {
		cols = []string{"topic", "payload", "key", "key_generated"}
	}
	got, err := r.app.CopyFrom(ctx, pgx.Identifier{"outbox_entries"}, cols, src)
	if err != nil {
		return fmt.Errorf("copying entries: %w", err)
	}
	if got != int64(n) {
		return fmt.Errorf("copying entries: wrote %d of %d", got, n)
	}
	return nil
}

// settle runs VACUUM ANALYZE on the entries and a CHECKPOINT, so that the
// timed part starts from fresh statistics and no pending checkpoint.
func (r *Runner) settle(ctx context.Context) error {
	for _, q := range []string{`VACUUM ANALYZE outbox_entries`, `CHECKPOINT`} {
		if err := r.privileged(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// privileged runs q, a maintenance statement. A role without the
// privilege for it (error 42501) skips it with a warning.
func (r *Runner) privileged(ctx context.Context, q string) error {
	_, err := r.app.Exec(ctx, q)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		r.log.Warn("bench: skipped for lack of privilege; figures may vary more", "statement", q, "error", pgErr.Message)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

// notDone counts entries of Topic that are not done.
func (r *Runner) notDone(ctx context.Context) (int64, error) {
	var n int64
	err := r.app.QueryRow(ctx, `SELECT count(*) FROM outbox_entries WHERE topic = $1 AND state <> 'done'`, Topic).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting entries not done: %w", err)
	}
	return n, nil
}

// verifyDone fails unless every entry of Topic is done.
func (r *Runner) verifyDone(ctx context.Context) error {
	n, err := r.notDone(ctx)
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d entries are not done after the run", n)
	}
	return nil
}

// observer counts the relay's events.
type observer struct {
	done       atomic.Int64 // done and skipped entries
	unexpected atomic.Int64 // retries, deaths, fences, lost leases, hand-backs, errors
	target     atomic.Int64
	mu         sync.Mutex
	reached    chan struct{} // closed when done reaches target; nil once closed
	up         chan struct{} // closed when the listener first connects
	upOnce     sync.Once
}

func newObserver() *observer {
	o := &observer{up: make(chan struct{})}
	o.target.Store(1<<63 - 1)
	return o
}

// Observe implements relay.Observer.
func (o *observer) Observe(e relay.Event) {
	switch e.Kind {
	case relay.EventDone, relay.EventSkipped:
		d := o.done.Add(1)
		if d >= o.target.Load() {
			o.mu.Lock()
			if o.reached != nil && d >= o.target.Load() {
				close(o.reached)
				o.reached = nil
			}
			o.mu.Unlock()
		}
	case relay.EventListenerUp:
		o.upOnce.Do(func() { close(o.up) })
	case relay.EventRetry, relay.EventDead, relay.EventFenced, relay.EventLeaseLost,
		relay.EventHandedBack, relay.EventError:
		o.unexpected.Add(1)
	}
}

// arm returns a channel closed once done reaches target (at once if it
// has).
func (o *observer) arm(target int64) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch := make(chan struct{})
	o.target.Store(target)
	if o.done.Load() >= target {
		close(ch)
		o.reached = nil
	} else {
		o.reached = ch
	}
	return ch
}

// running is a relay started by startRelay.
type running struct {
	obs    *observer
	cancel context.CancelFunc
	exited chan struct{}
	err    error // Run's result, once exited is closed
}

// relayConfig is the default relay configuration with the bench's
// handler, a Warn-level logger and obs, changed only by the Config fields
// that are set.
func (r *Runner) relayConfig(obs relay.Observer) relay.Config {
	return relayConfig(r.cfg, r.handlers, r.log, obs)
}

// relayConfig is the relay configuration of Runner.relayConfig for c,
// handlers h and the logger log; the relay processes of
// Config.Processes use it too.
func relayConfig(c Config, h *relay.Handlers, log *slog.Logger, obs relay.Observer) relay.Config {
	cfg := relay.Config{
		Handlers: h,
		Logger:   slog.New(minLevel{min: slog.LevelWarn, h: log.Handler()}),
		Observer: obs,
	}
	if c.Workers > 0 {
		cfg.Queues = map[string]relay.QueueConfig{outbox.DefaultQueue: {MaxWorkers: c.Workers}}
	}
	cfg.ClaimBatchSize = c.ClaimBatch
	cfg.CompleteBatchSize = c.CompleteBatch
	return cfg
}

// startRelay starts a relay on the relay pool. Cancelling ctx stops it.
func (r *Runner) startRelay(ctx context.Context) (*running, error) {
	obs := newObserver()
	rl, err := relay.New(r.relayPool, r.relayConfig(obs))
	if err != nil {
		return nil, fmt.Errorf("starting the relay: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	rr := &running{obs: obs, cancel: cancel, exited: make(chan struct{})}
	go func() {
		rr.err = rl.Run(rctx)
		close(rr.exited)
	}()
	return rr, nil
}

// stop stops the relay gracefully and returns Run's error.
func (rr *running) stop() error {
	rr.cancel()
	<-rr.exited
	if rr.err != nil {
		return fmt.Errorf("relay: %w", rr.err)
	}
	return nil
}

// await waits until the relay has counted target entries done. It fails
// when ctx ends, when the relay stops, or when no entry got done for
// stallTimeout.
func (rr *running) await(ctx context.Context, target int64) error {
	reached := rr.obs.arm(target)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastChange := rr.obs.done.Load(), time.Now()
	for {
		select {
		case <-reached:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-rr.exited:
			if rr.err != nil {
				return fmt.Errorf("the relay stopped: %w", rr.err)
			}
			return errors.New("the relay stopped early")
		case <-tick.C:
			if d := rr.obs.done.Load(); d != last {
				last, lastChange = d, time.Now()
			} else if time.Since(lastChange) > stallTimeout {
				return fmt.Errorf("only %d of %d entries done, none for %s", d, target, stallTimeout)
			}
		}
	}
}

// awaitListener waits until the relay's LISTEN connection is up, so that
// the first entries wake it rather than wait for a poll.
func (rr *running) awaitListener(ctx context.Context) error {
	t := time.NewTimer(stallTimeout)
	defer t.Stop()
	select {
	case <-rr.obs.up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-rr.exited:
		if rr.err != nil {
			return fmt.Errorf("the relay stopped: %w", rr.err)
		}
		return errors.New("the relay stopped early")
	case <-t.C:
		return errors.New("the relay's listener did not connect")
	}
}

// minLevel drops records below min, so that the relays log only warnings
// to a logger that shows progress at Info.
type minLevel struct {
	min slog.Level
	h   slog.Handler
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m minLevel) Handle(ctx context.Context, rec slog.Record) error { return m.h.Handle(ctx, rec) }

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{min: m.min, h: m.h.WithAttrs(as)}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{min: m.min, h: m.h.WithGroup(name)}
}
