package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/txoutbox/txoutbox/migrations"
	"github.com/txoutbox/txoutbox/relay"
)

// run starts the shop on the database at databaseURL (the application's
// tables are created there), places a few orders and prints what happened.
func run(ctx context.Context, out io.Writer, databaseURL string) error {
	p := &printer{out: out}

	// The application's handle, as before txoutbox: database/sql on pgx.
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// At start, like the application's own migrations: applied ones are
	// skipped, and concurrent starts wait on an advisory lock.
	if _, err := migrations.Up(ctx, db); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return err
	}

	// The relay needs a pgxpool on the same database. (To share one pool
	// instead, open the pool first and get the *sql.DB from
	// stdlib.OpenDBFromPool(pool).)
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	mail := &mailService{p: p}
	h := relay.NewHandlers()
	// A plain handler: the effect is outside the database. Pass the key on,
	// so the receiver can drop the duplicate a crash can cause.
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[OrderConfirmation]) error {
		return mail.send(ctx, e.Payload.Customer, "Your order "+e.Payload.Summary, e.Key)
	})
	// A transactional handler: the effect is in the same database, so it
	// commits with the entry's completion, exactly once.
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[LoyaltyPoints]) error {
		var total int64
		err := tx.QueryRow(ctx, `
			INSERT INTO loyalty_points (customer, points) VALUES ($1, $2)
			ON CONFLICT (customer) DO UPDATE SET points = loyalty_points.points + excluded.points
			RETURNING points`, e.Payload.Customer, e.Payload.Points).Scan(&total)
		if err == nil {
			p.printf("relay:   %d points for %s (order %d), %d in all; written in the relay's transaction", e.Payload.Points, e.Payload.Customer, e.Payload.OrderID, total)
		}
		return err
	})
	r, err := relay.New(pool, relay.Config{Handlers: h, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopRelay()
		return errors.Join(err, <-relayDone)
	}
	srv := &http.Server{Handler: (&shop{db: db}).routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	// At shutdown: stop taking requests first, then stop the relay, which
	// finishes (or hands back) what it is running.
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		stopRelay()
		<-relayDone
	}()
	base := "http://" + lis.Addr().String()
	p.printf("shop listening on %s; relay running in the same process", base)

	for _, body := range []string{
		`{"customer":"ada@example.com","sku":"tea","quantity":2}`,
		`{"customer":"bob@example.com","sku":"tea","quantity":9}`,
		`{"customer":"ada@example.com","sku":"mug","quantity":1}`,
	} {
		resp, err := http.Post(base+"/orders", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		note := ""
		if resp.StatusCode == http.StatusConflict {
			note = " (the transaction rolled back: no order, and no entries)"
		}
		p.printf("request: POST /orders %s -> %s %s%s", body, resp.Status, strings.TrimSpace(string(answer)), note)
	}

	// Wait for the relay: every entry done.
	deadline := time.Now().Add(time.Minute)
	for {
		var pending, done int
		if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state <> 'done'), count(*) FILTER (WHERE state = 'done') FROM outbox_entries`).Scan(&pending, &done); err != nil {
			return err
		}
		if pending == 0 {
			var orders, points int64
			if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT coalesce(sum(points), 0) FROM loyalty_points)`).Scan(&orders, &points); err != nil {
				return err
			}
			p.printf("result:  %d orders, %d entries done, %d emails sent, %d loyalty points in all", orders, done, mail.count(), points)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d entries not done after a minute", pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mailService stands in for a mail provider that honours idempotency
// keys. (The quickstart sends real email with handlers/email.)
type mailService struct {
	p *printer

	mu   sync.Mutex
	sent map[string]bool
}

func (o *mailService) send(_ context.Context, to, subject, key string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent[key] { // the receiver's side of the idempotency key
		return nil
	}
	if o.sent == nil {
		o.sent = map[string]bool{}
	}
	o.sent[key] = true
	o.p.printf("relay:   email to %s: %q (idempotency key %s)", to, subject, key)
	return nil
}

func (o *mailService) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.sent)
}

// printer prints lines from many goroutines.
type printer struct {
	mu  sync.Mutex
	out io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format+"\n", args...)
}
