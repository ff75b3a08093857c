package outboxtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultMaxConns is the size limit of [DB.Pool] when [Options.MaxConns] is
// zero.
const DefaultMaxConns = 10

// setupTimeout bounds creating (and, in cleanup, dropping) one database.
const setupTimeout = time.Minute

// Options changes how [NewWithOptions] prepares a database. The zero value
// is what [New] uses.
type Options struct {
	// Migrate, if set, runs on the template database after txoutbox's own
	// migrations, once per template: use it to add the application's own
	// schema. db is connected to the template and closed afterwards; do not
	// keep it. Migrate must leave no session open on the template.
	Migrate func(ctx context.Context, db *sql.DB) error

	// TemplateKey names what Migrate creates and is required when Migrate
	// is set. Templates are reused across test runs by name, and the name
	// is derived from txoutbox's migrations and this key, so change the key
	// whenever Migrate's result changes; a hash of the application's
	// migration files is a good key. Options with different keys get
	// different templates.
	TemplateKey string

	// MaxConns limits the connections of [DB.Pool]. Zero means
	// [DefaultMaxConns]. Connections are opened lazily.
	MaxConns int32
}

// DB is a freshly created, migrated database private to one test. It is
// closed and dropped when the test ends.
type DB struct {
	// Pool is connected to the database. Do not close it: cleanup does.
	Pool *pgxpool.Pool

	// SQL is a database/sql handle on Pool (through pgx's stdlib driver),
	// for code under test that takes a *sql.DB or *sql.Tx. Cleanup closes
	// it before Pool.
	SQL *sql.DB

	// URL is a connection string for the database, with the credentials
	// and settings of the server's admin connection string. Hand it to
	// another process (a relay started with os/exec, say) to share the
	// database.
	URL string

	// Name is the database's name on the server.
	Name string
}

// New returns a new database with txoutbox's schema, private to t and
// dropped when t ends. It fails t (t.Fatal) when no server is configured or
// the database cannot be made; see the package documentation for which
// server it uses. New is safe to call from parallel tests.
func New(t testing.TB) *DB {
	t.Helper()
	return NewWithOptions(t, Options{})
}

// NewWithOptions is [New] with [Options], for example the application's own
// migrations on top of txoutbox's.
func NewWithOptions(t testing.TB, opts Options) *DB {
	t.Helper()
	db, err := newDB(t, os.Getenv, processResolver, opts)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// AdminURL returns the connection string that [New] creates databases
// through: a role that may CREATE DATABASE on the server the package
// documentation describes, starting a throwaway server if that is the
// server. It is for tests that need databases New does not make, such as
// empty ones for testing migrations; drop what you create. It fails t when
// there is no server.
func AdminURL(t testing.TB) string {
	t.Helper()
	srv, err := processResolver.resolve(os.Getenv, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return srv.adminURL
}

// ServerURL is [AdminURL] for code without a testing.TB, such as runnable
// examples (Example functions): it returns the same connection string, or
// an error that says what to set or install.
func ServerURL() (string, error) {
	srv, err := processResolver.resolve(os.Getenv, nil)
	if err != nil {
		return "", err
	}
	return srv.adminURL, nil
}

// newDB does the work of NewWithOptions; its environment and resolver are
// parameters so tests can exercise them without touching the process's.
// It returns an error rather than failing t so that callers decide.
func newDB(t testing.TB, getenv func(string) string, res *resolver, opts Options) (*DB, error) {
	t.Helper()
	if opts.Migrate != nil && opts.TemplateKey == "" {
		return nil, errors.New("outboxtest: Options.TemplateKey is required with Options.Migrate; set it to a name (or hash) of the application's migrations")
	}
	if opts.MaxConns < 0 {
		return nil, errors.New("outboxtest: Options.MaxConns is negative")
	}
	maxConns := opts.MaxConns
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}

	// Each step has a deadline of its own: the server and the template are
	// shared, and a test may wait for another test's start of them.
	srv, err := res.resolve(getenv, t.Logf)
	if err != nil {
		return nil, err
	}
	tmpl, err := templateName(opts.TemplateKey)
	if err != nil {
		return nil, err
	}
	if err := ensureTemplate(srv, tmpl, opts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	name, err := createDatabase(ctx, srv, tmpl)
	if err != nil {
		return nil, err
	}
	// From here on the database exists: drop it whatever happens next.
	db := &DB{Name: name}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if db.SQL != nil {
			_ = db.SQL.Close() // leaves Pool open; errors are about the pool's conns, closed next
		}
		if db.Pool != nil {
			db.Pool.Close()
		}
		if err := dropDatabase(ctx, srv, name); err != nil {
			t.Errorf("outboxtest: cleanup: %v", err)
		}
	})

	db.URL, err = databaseURL(srv.adminURL, name)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return nil, fmt.Errorf("outboxtest: parse connection string: %w", err)
	}
	cfg.MaxConns = maxConns
	db.Pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("outboxtest: open pool on %s: %w", name, err)
	}
	if err := db.Pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("outboxtest: connect to %s: %w", name, err)
	}
	db.SQL = stdlib.OpenDBFromPool(db.Pool)
	t.Logf("outboxtest: database %s from template %s on %s (server: %s)", name, tmpl, srv.addr, srv.source)
	return db, nil
}
