// Package outboxtest gives tests a throwaway, fully migrated PostgreSQL
// database each, and assertions about what was enqueued.
//
// # A database per test
//
// [New] returns a [DB] whose database already has txoutbox's schema. The
// database is private to the test, so tests may call t.Parallel freely; it
// is dropped when the test ends.
//
//	func TestSignup(t *testing.T) {
//		t.Parallel()
//		db := outboxtest.New(t)
//
//		tx, err := db.Pool.Begin(t.Context())
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer tx.Rollback(context.Background())
//
//		if err := signup(t.Context(), tx, "ada@example.com"); err != nil {
//			t.Fatal(err)
//		}
//		got := outboxtest.RequireEnqueued(t, tx, func(p WelcomeEmail) bool {
//			return p.Email == "ada@example.com"
//		})
//		_ = got // the decoded payloads that matched
//	}
//
// Each database is a copy of a template database that is created and
// migrated once, then reused by every test, test binary and later test run
// against the same server, so a new database costs one CREATE DATABASE
// (milliseconds), not a migration run. The template's name carries a hash of
// the migrations, so changing a migration yields a new template rather than
// a stale one. Old templates are left on the server; drop them with
// ALTER DATABASE name IS_TEMPLATE false followed by DROP DATABASE.
//
// # Which server
//
// Set TXOUTBOX_TEST_DATABASE_URL to a connection string for a role that may
// CREATE DATABASE, for example
//
//	TXOUTBOX_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' go test ./...
//
// If it is unset, [New] fails the test with a message that says what to set.
// Every database a test gets counts against the server's max_connections
// only while it is in use: each [DB.Pool] opens connections lazily, up to
// [Options.MaxConns].
//
// # The application's own schema
//
// Applications usually keep their own migrations next to txoutbox's. Pass
// them as [Options.Migrate] to [NewWithOptions]: the hook runs once on the
// template, after txoutbox's migrations, and every database cloned from it
// has both schemas. [Options.TemplateKey] names what the hook creates; change
// it whenever the hook's result changes (a hash of the migration files is a
// good key).
//
// # Assertions
//
// [RequireEnqueued], [RequireNotEnqueued], [Count] and [Entries] read
// outbox_entries through a [Querier] — a pgx.Tx, *pgx.Conn or *pgxpool.Pool
// — so entries enqueued inside a test's uncommitted transaction are visible
// when the transaction itself is passed.
//
// # Process-wide state
//
// The package keeps one piece of mutable state: a mutex-guarded record, per
// test process, of which templates are ready on which server, so that only
// the first test in a process pays for checking (or creating) a template.
// Creation is serialised across processes with a PostgreSQL advisory lock,
// and a template only takes its final name once fully migrated, so a test
// run that crashes part-way through never leaves a half-migrated template
// behind for later runs.
package outboxtest
