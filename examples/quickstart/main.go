// Command quickstart shows txoutbox end to end in one process: a "signup
// request" writes a user row and a welcome-email entry in one transaction
// and returns at once; the relay delivers the email in the background,
// retries a flaky webhook, skips a duplicate signup, and records an invoice
// exactly once with a transactional handler.
//
// Run it with:
//
//	go run ./examples/quickstart
//
// With DATABASE_URL set (a server where you may CREATE DATABASE), it
// creates a throwaway database there, migrates it, runs, and drops it at
// the end. Without DATABASE_URL it starts a throwaway PostgreSQL server
// first, the way the tests do: a container when a Docker engine answers
// (image postgres:17, or TXOUTBOX_TEST_POSTGRES_IMAGE), else a cluster from
// this machine's PostgreSQL server binaries; it says which, and removes the
// server at the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/internal/throwaway"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// WelcomeEmail is the payload of the welcome email sent after a signup.
type WelcomeEmail struct {
	UserID int64  `json:"user_id"`
	Email  string `json:"email"`
}

// Topic names the handler for WelcomeEmail.
func (WelcomeEmail) Topic() string { return "email.welcome" }

// SignupWebhook notifies a partner system of a signup.
type SignupWebhook struct {
	UserID int64 `json:"user_id"`
}

// Topic names the handler for SignupWebhook.
func (SignupWebhook) Topic() string { return "webhook.signup" }

// Invoice asks for an invoice row to be written, exactly once.
type Invoice struct {
	UserID int64 `json:"user_id"`
	Cents  int64 `json:"cents"`
}

// Topic names the handler for Invoice.
func (Invoice) Topic() string { return "billing.invoice" }

func main() {
	tclog.SetDefault(tclog.NewNoopLogger()) // no Docker banner in the example's output
	// Ctrl-C ends the run through its context, so the cleanup still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := runWithServer(ctx, os.Stdout, os.Getenv("DATABASE_URL"), os.Getenv("TXOUTBOX_TEST_POSTGRES_IMAGE"))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// runWithServer runs the example on serverURL or, when that is empty, on a
// throwaway server (a container of image, "" meaning postgres:17, or a local
// cluster) that it removes afterwards.
func runWithServer(ctx context.Context, out io.Writer, serverURL, image string) error {
	if serverURL != "" {
		return run(ctx, out, serverURL)
	}
	fmt.Fprintln(out, "0. DATABASE_URL is not set: starting a throwaway PostgreSQL server (a container, else local binaries)")
	// Say which server it used and why it passed over the others, but not
	// testcontainers-go's own progress lines.
	logf := func(format string, args ...any) {
		if strings.HasPrefix(format, "throwaway: ") {
			fmt.Fprintf(out, "   "+format+"\n", args...)
		}
	}
	srv, err := throwaway.Start(ctx, throwaway.Sources(image), logf)
	if err != nil {
		return fmt.Errorf("%w\nset DATABASE_URL to a server where you may CREATE DATABASE, %s, or %s",
			err, throwaway.HintContainer, throwaway.HintLocal)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "quickstart: removing the throwaway server:", err)
		}
	}()
	return run(ctx, out, srv.URL)
}

// run is the whole example on the server at serverURL.
func run(ctx context.Context, out io.Writer, serverURL string) error {
	pool, dropDB, err := scratchdb.Create(ctx, serverURL, "txoutbox_quickstart")
	if err != nil {
		return fmt.Errorf("%w (set DATABASE_URL to a server where you may CREATE DATABASE)", err)
	}
	defer dropDB()
	fmt.Fprintln(out, "1. migrated a throwaway database")

	if _, err := pool.Exec(ctx, `
		CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL);
		CREATE TABLE invoices (user_id bigint NOT NULL, cents bigint NOT NULL)`); err != nil {
		return err
	}

	// The background work, as typed handlers.
	var webhookCalls atomic.Int64
	finished := make(chan string, 16)
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[WelcomeEmail]) error {
		time.Sleep(200 * time.Millisecond) // a slow SMTP server
		finished <- fmt.Sprintf("email to %s sent (Message-ID <%s@quickstart>)", e.Payload.Email, e.Key)
		return nil
	})
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[SignupWebhook]) error {
		if webhookCalls.Add(1) == 1 {
			return errors.New("partner answered 503")
		}
		finished <- fmt.Sprintf("webhook for user %d delivered on attempt %d (webhook-id %s)", e.Payload.UserID, e.Attempt, e.Key)
		return nil
	}, relay.WithRetryPolicy(relay.ExponentialRetry{Initial: 300 * time.Millisecond}))
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[Invoice]) error {
		_, err := tx.Exec(ctx, `INSERT INTO invoices (user_id, cents) VALUES ($1, $2)`, e.Payload.UserID, e.Payload.Cents)
		if err == nil {
			finished <- fmt.Sprintf("invoice for user %d written in the same transaction as its completion", e.Payload.UserID)
		}
		return err
	})
	r, err := relay.New(pool, relay.Config{
		Handlers: h,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	// The "request": domain row and entries in one transaction.
	signup := func(email string) (time.Duration, bool, error) {
		start := time.Now()
		tx, err := pool.Begin(ctx)
		if err != nil {
			return 0, false, err
		}
		defer tx.Rollback(ctx)
		var id int64
		err = tx.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1)
			ON CONFLICT (email) DO UPDATE SET email = excluded.email RETURNING id`, email).Scan(&id)
		if err != nil {
			return 0, false, err
		}
		res, err := outbox.Enqueue(ctx, tx, WelcomeEmail{UserID: id, Email: email},
			outbox.WithKey(fmt.Sprintf("welcome:%d", id)))
		if err != nil {
			return 0, false, err
		}
		if !res.Duplicate {
			items := []outbox.Item{
				outbox.NewItem(SignupWebhook{UserID: id}, outbox.WithKey(fmt.Sprintf("signup:%d", id))),
				outbox.NewItem(Invoice{UserID: id, Cents: 4900}, outbox.WithKey(fmt.Sprintf("invoice:%d:first", id))),
			}
			if _, err := outbox.EnqueueBatch(ctx, tx, items); err != nil {
				return 0, false, err
			}
		}
		return time.Since(start), res.Duplicate, tx.Commit(ctx)
	}

	took, _, err := signup("ada@example.com")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. signup request committed in %s: user row + 3 outbox entries, nothing slow done yet\n", took.Round(time.Millisecond))
	_, dup, err := signup("ada@example.com")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "3. the same signup again: duplicate=%v, no second email is queued\n", dup)

	bgStart := time.Now()
	for i := range 3 {
		select {
		case msg := <-finished:
			fmt.Fprintf(out, "%d. background: %s\n", 4+i, msg)
		case <-time.After(30 * time.Second):
			stopRelay()
			return errors.New("background work did not finish within 30s")
		}
	}
	fmt.Fprintf(out, "7. all background work done %s after the request returned\n", time.Since(bgStart).Round(10*time.Millisecond))
	stopRelay()
	if err := <-relayDone; err != nil {
		return err
	}

	var users, invoices, done int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM invoices),
		(SELECT count(*) FROM outbox_entries WHERE state = 'done')`).Scan(&users, &invoices, &done); err != nil {
		return err
	}
	fmt.Fprintf(out, "8. database: %d user, %d invoice, %d entries done; the webhook needed %d calls\n", users, invoices, done, webhookCalls.Load())
	return nil
}
