// Package notifier keeps one LISTEN connection open and turns Postgres
// notifications into callbacks. It reconnects with backoff after any error
// (a restarted server, a terminated backend, a dropped network) and calls
// OnConnect after every (re)connect, so the caller can poll once for
// whatever was notified while it was away.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
)

// Config configures a Listener.
type Config struct {
	// ConnConfig is copied for the dedicated connection.
	ConnConfig *pgx.ConnConfig
	// Channel is the notification channel to LISTEN on.
	Channel string
	// OnNotify is called with each notification's payload.
	OnNotify func(payload string)
	// OnConnect is called after every successful LISTEN (also the first).
	OnConnect func()
	// OnDisconnect is called with the error that broke the connection.
	OnDisconnect func(err error)
	// Logger receives connection problems.
	Logger *slog.Logger
	// MaxBackoff bounds the wait between reconnect attempts (default 5s).
	MaxBackoff time.Duration
}

// Listener is one LISTEN connection. Create it with New and run it with Run.
type Listener struct {
	cfg       Config
	connected atomic.Bool
}

// New returns a Listener for cfg.
func New(cfg Config) (*Listener, error) {
	if cfg.ConnConfig == nil {
		return nil, errors.New("notifier: nil ConnConfig")
	}
	if cfg.Channel == "" {
		return nil, errors.New("notifier: empty channel")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	return &Listener{cfg: cfg}, nil
}

// Connected reports whether the LISTEN connection is up.
func (l *Listener) Connected() bool { return l.connected.Load() }

// Run listens until ctx is done, reconnecting after errors.
func (l *Listener) Run(ctx context.Context) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = l.cfg.MaxBackoff
	b.MaxElapsedTime = 0
	for ctx.Err() == nil {
		err := l.session(ctx, b)
		l.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if l.cfg.OnDisconnect != nil {
			l.cfg.OnDisconnect(err)
		}
		wait := b.NextBackOff()
		l.cfg.Logger.Warn("txoutbox: listener connection lost; reconnecting", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session connects, listens and waits for notifications until an error.
func (l *Listener) session(ctx context.Context, b *backoff.ExponentialBackOff) error {
	conn, err := pgx.ConnectConfig(ctx, l.cfg.ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.cfg.Channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	l.connected.Store(true)
	b.Reset()
	if l.cfg.OnConnect != nil {
		l.cfg.OnConnect()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		if l.cfg.OnNotify != nil {
			l.cfg.OnNotify(n.Payload)
		}
	}
}
