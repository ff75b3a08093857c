package faultsuite

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/relay"
)

// childEnv, when set, turns the test binary into a relay process: the
// variable holds a childConfig as JSON. The process runs the relay until
// SIGTERM (graceful stop, exit 0) or SIGKILL.
const childEnv = "TXOUTBOX_FAULT_CHILD"

// childConfig configures a relay process.
type childConfig struct {
	URL      string         `json:"url"`
	ID       string         `json:"id"`        // relay ID, also application_name
	MaxConns int32          `json:"max_conns"` // pool size
	Queues   map[string]int `json:"queues"`    // queue name → MaxWorkers
	LeaseMS  int            `json:"lease_ms"`
	PollMS   int            `json:"poll_ms"`

	Tx            bool   `json:"tx"`    // fault.tx: transactional, one effects row
	Runs          bool   `json:"runs"`  // fault.run: plain, start/finish marks in runs
	Drain         bool   `json:"drain"` // fault.drain: plain, does nothing
	WebhookURL    string `json:"webhook_url,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// WebhookOutcomeBeforeNext registers the webhook handler with
	// relay.WithOutcomeBeforeNext.
	WebhookOutcomeBeforeNext bool `json:"webhook_outcome_before_next,omitempty"`
	// NatsURL, when set, registers the NATS JetStream publisher for
	// natsTopic, publishing to NatsSubject (a template).
	NatsURL     string `json:"nats_url,omitempty"`
	NatsSubject string `json:"nats_subject,omitempty"`
	// RabbitURL and RabbitExchange register the RabbitMQ publisher for
	// fault.rabbit entries (rabbit_test.go).
	RabbitURL      string `json:"rabbit_url,omitempty"`
	RabbitExchange string `json:"rabbit_exchange,omitempty"`
}

// childMain is the relay process's main.
func childMain(raw string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child: bad configuration:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.ConnConfig.RuntimeParams["application_name"] = cfg.ID
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	defer pool.Close()

	h := relay.NewHandlers()
	if cfg.Tx {
		relay.HandleTx(h, writeEffect(cfg.ID))
	}
	if cfg.Runs {
		relay.Handle(h, markRuns(pool, cfg.ID))
	}
	if cfg.Drain {
		relay.Handle(h, func(context.Context, *relay.Entry[drainWork]) error { return nil })
	}
	if cfg.WebhookURL != "" {
		var opts []relay.HandlerOption
		if cfg.WebhookOutcomeBeforeNext {
			opts = append(opts, relay.WithOutcomeBeforeNext())
		}
		err := webhook.Register(h, webhook.Config{
			Endpoints:            map[string]webhook.Endpoint{"recv": {URL: cfg.WebhookURL, Secrets: []string{cfg.WebhookSecret}}},
			AllowPrivateNetworks: true,
			Timeout:              scaled(5 * time.Second),
		}, opts...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
	}
	if cfg.NatsURL != "" {
		pub, err := nats.Register(h, nats.Config{URL: cfg.NatsURL, Topics: []string{natsTopic}, Subject: cfg.NatsSubject, AckTimeout: scaled(5 * time.Second)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		defer pub.Close()
	}
	if cfg.RabbitURL != "" {
		pub, err := rabbitmq.New(rabbitmq.Config{
			URL: cfg.RabbitURL, Exchange: cfg.RabbitExchange, ConfirmTimeout: scaled(10 * time.Second),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err == nil {
			err = rabbitmq.Register(h, pub, []string{rabbitTopic})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		defer func() { _ = pub.Close() }()
	}
	queues := map[string]relay.QueueConfig{}
	for name, n := range cfg.Queues {
		queues[name] = relay.QueueConfig{MaxWorkers: n}
	}
	lease := time.Duration(cfg.LeaseMS) * time.Millisecond
	r, err := relay.New(pool, relay.Config{
		Handlers:          h,
		Queues:            queues,
		ID:                cfg.ID,
		PollInterval:      time.Duration(cfg.PollMS) * time.Millisecond,
		LeaseDuration:     lease,
		RescueInterval:    max(lease/5, 50*time.Millisecond),
		RetentionInterval: -1,
		ShutdownTimeout:   scaled(10 * time.Second), // child.stop's limit follows it
		RetryPolicy:       noRetryDelay,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	fmt.Println("ready")
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child: relay:", err)
		return 1
	}
	return 0
}

// writeEffect returns the fault.tx handler: one effects row, in the
// handler's transaction; Fail entries are refused permanently.
func writeEffect(who string) relay.TxHandlerFunc[txWork] {
	return func(ctx context.Context, tx pgx.Tx, e *relay.Entry[txWork]) error {
		if e.Payload.Fail {
			return relay.Permanent(errors.New("poison by design"))
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, n, relay, attempt) VALUES ($1, $2, $3, $4)`,
			e.ID, e.Payload.N, who, e.Attempt)
		return err
	}
}

// markRuns returns the fault.run handler: it records the run's start in
// runs, works for SleepUS, and records the finish, even when its context
// was cancelled (the finish is when the handler stopped, which is what an
// overlap check needs).
//
// Both marks are bookkeeping of the outside world, not work under the
// lease, so the handler's context does not cut them short: a start mark
// sent under a context cancelled mid-statement (a lease lost just as the
// handler began) could commit on the server while its reply was lost, and
// leave a run that never finishes for a handler that did.
func markRuns(pool *pgxpool.Pool, who string) relay.HandlerFunc[runWork] {
	return func(ctx context.Context, e *relay.Entry[runWork]) error {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), scaled(30*time.Second))
		defer cancel()
		var runID int64
		err := pool.QueryRow(mctx, `INSERT INTO runs (entry_id, attempt, relay, started_at)
			VALUES ($1, $2, $3, clock_timestamp()) RETURNING run_id`, e.ID, e.Attempt, who).Scan(&runID)
		if err != nil {
			return err
		}
		var workErr error
		if e.Payload.SleepUS > 0 {
			select {
			case <-time.After(time.Duration(e.Payload.SleepUS) * time.Microsecond):
			case <-ctx.Done():
				workErr = context.Cause(ctx)
			}
		}
		if _, err := pool.Exec(mctx, `UPDATE runs SET finished_at = clock_timestamp() WHERE run_id = $1`, runID); err != nil {
			return errors.Join(workErr, err)
		}
		if workErr == nil && e.Payload.FailOnce && e.Attempt == 1 {
			return errors.New("fails on its first attempt, by design")
		}
		return workErr
	}
}

// child is a relay process started by a test.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	out []string // the last lines of its output
}

const keepLines = 200

// startChild starts a relay process and waits until it reports ready. It is
// killed when t ends, if still running; its output is logged if t failed.
func startChild(t testing.TB, cfg childConfig) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// The child stretches its timing as this process does.
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw), fmt.Sprintf("%s=%g", timeScaleEnv, timeScale()))
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	c := &child{name: cfg.ID, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				once.Do(func() { close(ready) })
				continue
			}
			c.mu.Lock()
			c.out = append(c.out, line)
			if len(c.out) > 2*keepLines {
				c.out = append(c.out[:0], c.out[len(c.out)-keepLines:]...)
			}
			c.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() { _ = cmd.Wait(); _ = pw.Close(); close(c.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("output of relay process %s:\n%s", c.name, c.output())
		}
	})
	select {
	case <-ready:
	case <-c.done:
		t.Fatalf("relay process %s exited before it was ready: %v\n%s", c.name, cmd.ProcessState, c.output())
	case <-time.After(time.Minute):
		t.Fatalf("relay process %s not ready after a minute\n%s", c.name, c.output())
	}
	return c
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.out
	if len(lines) > keepLines {
		lines = lines[len(lines)-keepLines:]
	}
	return strings.Join(lines, "\n")
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	<-c.done
}

// stop sends SIGTERM and waits for a clean exit.
func (c *child) stop(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Its shutdown may take ShutdownTimeout plus the relay's hand-back
	// grace; a minute more catches a hang.
	limit := scaled(10*time.Second) + time.Minute
	select {
	case <-c.done:
	case <-time.After(limit):
		t.Fatalf("relay process %s did not stop within %s of SIGTERM", c.name, limit)
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("relay process %s exited with %d after SIGTERM:\n%s", c.name, code, c.output())
	}
}
