package migrations_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// scratch is an empty database for one test, dropped when the test ends.
// These tests cannot use outboxtest: its databases are already migrated.
type scratch struct {
	name string
	url  string
	db   *sql.DB
}

// newScratch creates an empty database on the server outboxtest finds for
// the tests (the configured one, else a container, else local binaries).
func newScratch(t *testing.T) *scratch {
	t.Helper()
	admin := outboxtest.AdminURL(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	s := &scratch{name: "txoutbox_mig_" + hex.EncodeToString(b[:])}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if s.db != nil {
			_ = s.db.Close()
		}
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop %s: %v", s.name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", s.name, err)
		}
	})

	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("the server's connection string must be a URL here: %v", err)
	}
	u.Path = "/" + s.name
	s.url = u.String()
	s.db = s.openDB(t)
	return s
}

// openDB opens another *sql.DB on the scratch database, closed at cleanup.
func (s *scratch) openDB(t *testing.T) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(s.url)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// conn opens a pgx connection to the scratch database, closed at cleanup.
func (s *scratch) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, s.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// tableExists reports whether table exists in the scratch database.
func (s *scratch) tableExists(t *testing.T, table string) bool {
	t.Helper()
	var name sql.NullString
	if err := s.db.QueryRowContext(context.Background(), "SELECT to_regclass($1)::text", table).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name.Valid
}

// sqlState returns err's SQLSTATE, or "" if it has none.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
