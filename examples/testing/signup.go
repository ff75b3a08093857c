// Package signup is a small application that uses txoutbox. Its tests
// (signup_test.go) show how an application tests its enqueue paths and its
// handlers against a real database with outbox/outboxtest, with its own
// migrations next to txoutbox's. docs/testing.md walks through them.
package signup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// migrationFiles is the application's schema, applied in file name order.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// WelcomeEmail asks for the welcome email of a new user.
type WelcomeEmail struct {
	UserID int64  `json:"user_id"`
	Email  string `json:"email"`
}

// Topic names the handler for WelcomeEmail.
func (WelcomeEmail) Topic() string { return "email.welcome" }

// SignupAudit asks for a signup to be recorded in the audit log.
type SignupAudit struct {
	UserID int64 `json:"user_id"`
}

// Topic names the handler for SignupAudit.
func (SignupAudit) Topic() string { return "audit.signup" }

// Register creates a user and, in the same transaction, enqueues the user's
// welcome email and audit record. Nothing is sent unless tx commits.
func Register(ctx context.Context, tx pgx.Tx, email string) (userID int64, err error) {
	if err := tx.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id`, email).Scan(&userID); err != nil {
		return 0, fmt.Errorf("signup: create user: %w", err)
	}
	_, err = outbox.EnqueueBatch(ctx, tx, []outbox.Item{
		outbox.NewItem(WelcomeEmail{UserID: userID, Email: email}, outbox.WithKey(fmt.Sprintf("welcome:%d", userID))),
		outbox.NewItem(SignupAudit{UserID: userID}, outbox.WithKey(fmt.Sprintf("audit-signup:%d", userID))),
	})
	if err != nil {
		return 0, fmt.Errorf("signup: enqueue: %w", err)
	}
	return userID, nil
}

// Mailer sends email. idempotencyKey is the same for every attempt at one
// email, so the mail service can drop duplicates.
type Mailer interface {
	Send(ctx context.Context, to, subject, idempotencyKey string) error
}

// Handlers returns the application's relay handlers: the welcome email goes
// out through mailer, and the audit record is written exactly once, in the
// transaction that completes its entry.
func Handlers(mailer Mailer) *relay.Handlers {
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[WelcomeEmail]) error {
		return mailer.Send(ctx, e.Payload.Email, "Welcome!", e.Key)
	})
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[SignupAudit]) error {
		_, err := tx.Exec(ctx, `INSERT INTO audit_log (user_id, event) VALUES ($1, 'signup')`, e.Payload.UserID)
		return err
	})
	return h
}

// Migrate applies the application's schema to db. A real application would
// use its migration tool here (goose, golang-migrate, Atlas...); what
// matters to the tests is one function that takes a *sql.DB.
func Migrate(ctx context.Context, db *sql.DB) error {
	names, err := migrationNames()
	if err != nil {
		return err
	}
	for _, name := range names {
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return fmt.Errorf("signup: read %s: %w", name, err)
		}
		if _, err := db.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("signup: apply %s: %w", name, err)
		}
	}
	return nil
}

// MigrationsKey identifies the application's schema: a hash of the
// migration files, which changes whenever one of them does. Tests pass it
// as outboxtest.Options.TemplateKey.
func MigrationsKey() (string, error) {
	names, err := migrationNames()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range names {
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return "", fmt.Errorf("signup: read %s: %w", name, err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(body))
		h.Write(body)
	}
	return "signup-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

func migrationNames() ([]string, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("signup: list migrations: %w", err)
	}
	sort.Strings(names)
	return names, nil
}
