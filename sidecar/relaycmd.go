package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txoutbox/txoutbox/migrations"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
)

func runRelay(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "relay", "relay [--config FILE] [--database-url URL] [--listen ADDR] [--migrate]",
		"relay --config /etc/txoutbox/relay.json",
		"relay --config relay.json --listen 0.0.0.0:9090 --migrate   # in a container: probes and scrapes come from outside")
	configPath := fs.String("config", "", "configuration file (JSON); see docs/sidecar.md")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default: the variable named by database_url_env, DATABASE_URL)")
	listen := fs.String("listen", "", "address for /healthz, /readyz and /metrics (overrides the file; default "+defaultListen+"; \"off\" disables)")
	migrate := fs.Bool("migrate", false, "apply pending migrations before starting (overrides the file)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *migrate {
		cfg.Migrate = true
	}
	url := *dbURL
	if url == "" {
		url = o.Getenv(cfg.DatabaseURLEnv)
	}
	if url == "" {
		return usagef("no database: pass --database-url or set %s", cfg.DatabaseURLEnv)
	}
	poolCfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return usagef("database URL: %w", err)
	}
	handlers, err := buildHandlers(o, cfg)
	if err != nil {
		return err
	}
	schedules, err := loadSchedules(o, cfg, handlers)
	if err != nil {
		return err
	}
	log := newLogger(o.Stderr, cfg.Log)

	s := &server{schedules: schedules}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg, s.currentPool)

	rc := cfg.Relay.toRelay()
	rc.Handlers = handlers
	rc.Logger = log
	rc.Observer = m
	// Validate the relay configuration before touching the database.
	if err := rc.Validate(); err != nil {
		return relayError(err)
	}

	dash, err := cfg.UI.newDashboard(s, o.Getenv, log)
	if err != nil {
		return err
	}

	if cfg.Listen != "off" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return usagef("listen %s: %w", cfg.Listen, err)
		}
		mux := s.mux(reg)
		if dash != nil {
			mux.Handle(UIPath, dash)
			log.Info("txoutbox: serving the dashboard", "path", UIPath)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutCtx)
		}()
		log.Info("txoutbox: serving health and metrics", "addr", ln.Addr().String())
	}

	// Connect, migrate and run; retry with backoff while the database is
	// down or not migrated, so the sidecar never crash-loops.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = 0
	for ctx.Err() == nil {
		err := s.session(ctx, poolCfg, rc, cfg.Migrate)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		wait := b.NextBackOff()
		log.Error("txoutbox: relay cannot run; retrying", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	log.Info("txoutbox: stopped before the relay could start")
	return nil
}

// server holds what the HTTP endpoints read.
type server struct {
	mu      sync.Mutex
	pool    *pgxpool.Pool
	relay   *relay.Relay
	running atomic.Bool

	schedules *schedule.Schedules // run next to the relay; nil when none
}

func (s *server) currentPool() *pgxpool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool
}

// session runs one connect-migrate-run cycle. It returns nil when ctx ended
// a running relay, or the error that stopped it from running.
func (s *server) session(ctx context.Context, poolCfg *pgxpool.Config, rc relay.Config, migrate bool) error {
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg.Copy())
	if err != nil {
		return err
	}
	defer pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot reach the database: %w", err)
	}
	if migrate {
		db := stdlib.OpenDBFromPool(pool)
		_, err := migrations.Up(ctx, db)
		_ = db.Close()
		if err != nil {
			return err
		}
	}
	r, err := relay.New(pool, rc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pool, s.relay = pool, r
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pool, s.relay = nil, nil
		s.mu.Unlock()
	}()
	s.running.Store(true)
	defer s.running.Store(false)
	defer s.startSchedules(ctx, pool, rc.Logger)()
	err = r.Run(ctx)
	if err == nil && ctx.Err() == nil {
		return errors.New("relay stopped unexpectedly")
	}
	return err
}

func (s *server) mux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		problems := s.notReady(r.Context())
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, p := range problems {
				fmt.Fprintln(w, "not ready:", p)
			}
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// notReady lists why the relay is not ready: no database, relay not
// running, or LISTEN down (unless disabled).
func (s *server) notReady(ctx context.Context) []string {
	s.mu.Lock()
	pool, r := s.pool, s.relay
	s.mu.Unlock()
	var out []string
	if pool == nil || !s.running.Load() {
		return []string{"relay not running (database unreachable or not migrated; see the logs)"}
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		out = append(out, "database unreachable: "+err.Error())
	}
	if r != nil && r.ListenerEnabled() && !r.Listening() {
		out = append(out, "LISTEN connection down")
	}
	return out
}
