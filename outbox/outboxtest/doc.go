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
// New finds a server the first of these ways that works, and every test
// logs which one it got:
//
//  1. TXOUTBOX_TEST_DATABASE_URL, when set: an existing server, through a
//     connection string for a role that may CREATE DATABASE, for example
//     TXOUTBOX_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'.
//     The fastest: templates survive between runs.
//  2. A PostgreSQL container through testcontainers-go, when a Docker engine
//     answers: the image in TXOUTBOX_TEST_POSTGRES_IMAGE, by default the
//     official postgres:17, or any image that behaves like it.
//  3. A cluster from this machine's PostgreSQL server binaries (initdb and
//     postgres, 13 or later), found through pg_config --bindir or the usual
//     Debian, Homebrew and Postgres.app directories, in a temporary
//     directory and on a free loopback port. As root it runs as the
//     postgres OS user.
//
// When none works, New fails the test with a message that says what to set
// or install; it never skips. A container that fails to start (an image
// that cannot be pulled, say) is passed over for local binaries, and the
// test log says so. TXOUTBOX_TEST_SOURCE=url, container or local forces one
// way, and fails rather than falling back, so that CI can prove each.
//
// A container or local cluster is started once per test binary, when the
// first test needs it, and shared by the package's tests, each of which
// still gets a database of its own. Both trade durability for speed (fsync
// off, data in memory where possible). To stop the server when the tests
// end, run them through [Main] from the package's TestMain:
//
//	func TestMain(m *testing.M) { outboxtest.Main(m) }
//
// or [WithCleanup] with another TestMain helper. Without it a local cluster
// stops when the test process exits (on Linux), and a container is removed
// by testcontainers-go's Ryuk unless TESTCONTAINERS_RYUK_DISABLED is set;
// either way the next test binary that starts a server removes what a
// crashed one left.
//
// Every database a test gets counts against the server's max_connections
// only while it is in use: each [DB.Pool] opens connections lazily, up to
// [Options.MaxConns]. [AdminURL] gives tests that need databases of their
// own (empty ones, for migrations) the same server.
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
// The package keeps two pieces of mutable state, both mutex-guarded and per
// test process: the throwaway server it started (see above), which [Main]
// stops, and a record of which templates are ready on which server, so that
// only the first test in a process pays for checking (or creating) a
// template.
// Creation is serialised across processes with a PostgreSQL advisory lock,
// and a template only takes its final name once fully migrated, so a test
// run that crashes part-way through never leaves a half-migrated template
// behind for later runs.
package outboxtest
