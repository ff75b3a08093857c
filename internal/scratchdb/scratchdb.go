// Package scratchdb creates a uniquely named, migrated database on a
// PostgreSQL server and drops it afterwards. The runnable examples and the
// quickstart use it; tests use the public outbox/outboxtest instead, which
// adds templates and testing.TB integration.
package scratchdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/migrations"
)

var validPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,30}$`)

// Create makes a database named prefix_<random> on the server at serverURL
// (a role that may CREATE DATABASE), applies txoutbox's migrations, and
// returns a pool on it and a function that closes the pool and drops the
// database.
func Create(ctx context.Context, serverURL, prefix string) (*pgxpool.Pool, func(), error) {
	if !validPrefix.MatchString(prefix) {
		return nil, nil, fmt.Errorf("scratchdb: invalid prefix %q", prefix)
	}
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, nil, fmt.Errorf("scratchdb: connecting to %s (a server where you may CREATE DATABASE): %w", Redact(serverURL), err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, nil, fmt.Errorf("scratchdb: creating database: %w", err)
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), serverURL)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	cfg, err := pgxpool.ParseConfig(serverURL)
	if err != nil {
		drop()
		return nil, nil, fmt.Errorf("scratchdb: %w", err)
	}
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		drop()
		return nil, nil, fmt.Errorf("scratchdb: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	_, err = migrations.Up(ctx, db)
	_ = db.Close()
	if err != nil {
		pool.Close()
		drop()
		return nil, nil, fmt.Errorf("scratchdb: %w", err)
	}
	return pool, func() { pool.Close(); drop() }, nil
}

// Redact returns a connection URL with its password hidden, for messages.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the configured server"
	}
	return u.Redacted()
}
