package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/migrations"
)

// scripts returns the embedded migrations' plain SQL for dir.
func scripts(t *testing.T, dir migrations.Direction) []migrations.Script {
	t.Helper()
	ss, err := migrations.SQL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) == 0 {
		t.Fatal("no embedded migrations")
	}
	return ss
}

func up(t *testing.T, db *sql.DB) []migrations.Result {
	t.Helper()
	rs, err := migrations.Up(context.Background(), db)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return rs
}

func requireAllApplied(t *testing.T, db *sql.DB, want bool) {
	t.Helper()
	st, err := migrations.Status(context.Background(), db)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if len(st) != len(scripts(t, migrations.DirectionUp)) {
		t.Errorf("Status lists %d migrations, want %d", len(st), len(scripts(t, migrations.DirectionUp)))
	}
	for _, s := range st {
		if s.Applied != want {
			t.Errorf("migration %d (%s) applied = %v, want %v", s.Version, s.Source, s.Applied, want)
		}
	}
}

func TestUpIsIdempotentAndUsesItsOwnVersionTable(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	all := scripts(t, migrations.DirectionUp)

	requireAllApplied(t, s.db, false)
	rs := up(t, s.db)
	if len(rs) != len(all) {
		t.Fatalf("first Up applied %d migrations, want %d", len(rs), len(all))
	}
	for i, r := range rs {
		if r.Version != all[i].Version || r.Source != all[i].Name {
			t.Errorf("applied #%d = %+v, want version %d from %s", i, r, all[i].Version, all[i].Name)
		}
	}
	if again := up(t, s.db); len(again) != 0 {
		t.Errorf("second Up applied %+v, want nothing", again)
	}
	requireAllApplied(t, s.db, true)

	if migrations.VersionTable != "txoutbox_goose_version" {
		t.Errorf("VersionTable = %q", migrations.VersionTable)
	}
	if !s.tableExists(t, migrations.VersionTable) {
		t.Errorf("version table %s missing", migrations.VersionTable)
	}
	if s.tableExists(t, "goose_db_version") {
		t.Error("goose's default version table exists; it belongs to the application")
	}
	for _, table := range []string{"outbox_entries", "outbox_processed_keys"} {
		if !s.tableExists(t, table) {
			t.Errorf("table %s missing after Up", table)
		}
	}
}

func TestDownThenUp(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	all := scripts(t, migrations.DirectionUp)
	up(t, s.db)

	for i := len(all) - 1; i >= 0; i-- {
		r, err := migrations.Down(context.Background(), s.db)
		if err != nil {
			t.Fatalf("Down: %v", err)
		}
		if r.Version != all[i].Version {
			t.Errorf("Down rolled back version %d, want %d", r.Version, all[i].Version)
		}
	}
	requireAllApplied(t, s.db, false)
	for _, table := range []string{"outbox_entries", "outbox_processed_keys"} {
		if s.tableExists(t, table) {
			t.Errorf("table %s still exists after rolling everything back", table)
		}
	}

	if rs := up(t, s.db); len(rs) != len(all) {
		t.Errorf("Up after Down applied %d migrations, want %d", len(rs), len(all))
	}
	requireAllApplied(t, s.db, true)
	if !s.tableExists(t, "outbox_entries") {
		t.Error("outbox_entries missing after Down then Up")
	}
}

// TestConcurrentUp starts four migrators at once, as four relays starting
// together would: each gets its own *sql.DB, all succeed, and the
// migrations are applied exactly once between them.
func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	const n = 4
	dbs := make([]*sql.DB, n)
	for i := range dbs {
		dbs[i] = s.openDB(t)
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied int
		errs    []error
	)
	for _, db := range dbs {
		wg.Go(func() {
			rs, err := migrations.Up(context.Background(), db)
			mu.Lock()
			defer mu.Unlock()
			applied += len(rs)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()

	if len(errs) != 0 {
		t.Fatalf("concurrent Up failed: %v", errs)
	}
	if want := len(scripts(t, migrations.DirectionUp)); applied != want {
		t.Errorf("migrators applied %d migrations between them, want %d (each exactly once)", applied, want)
	}
	requireAllApplied(t, s.db, true)
}

// schemaQueries describe the parts of the public schema that must not
// depend on how it was created. Each returns one text column.
var schemaQueries = map[string]string{
	"columns": `
		SELECT format('%s.%s #%s %s nullable=%s default=%s', table_name, column_name, ordinal_position,
		              data_type, is_nullable, coalesce(column_default, '-'))
		FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name <> $1`,
	"indexes": `
		SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> $1`,
	"constraints": `
		SELECT format('%s %s', c.conname, pg_get_constraintdef(c.oid))
		FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
		WHERE n.nspname = 'public' AND c.conrelid <> coalesce(to_regclass($1)::oid, 0)`,
	"triggers": `
		SELECT format('%s %s %s %s', event_object_table, trigger_name, event_manipulation, action_statement)
		FROM information_schema.triggers WHERE trigger_schema = 'public' AND event_object_table <> $1`,
	"functions": `
		SELECT p.proname || ' ' || md5(p.prosrc)
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public' AND $1 <> ''`,
}

// schemaOf returns the sorted result of every schema query on db.
func schemaOf(t *testing.T, db *sql.DB) map[string][]string {
	t.Helper()
	out := make(map[string][]string, len(schemaQueries))
	for name, q := range schemaQueries {
		rows, err := db.QueryContext(context.Background(), q, migrations.VersionTable)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		slices.Sort(lines)
		out[name] = lines
	}
	return out
}

// TestPlainSQLMatchesGoose applies the exported plain SQL with nothing but
// Postgres, as a team on another migration tool would, and checks that it
// yields the schema goose does, and that the down scripts remove it all.
func TestPlainSQLMatchesGoose(t *testing.T) {
	t.Parallel()
	viaGoose := newScratch(t)
	viaSQL := newScratch(t)
	ctx := context.Background()

	up(t, viaGoose.db)
	apply := func(dir migrations.Direction) {
		t.Helper()
		for _, sc := range scripts(t, dir) {
			if strings.Contains(sc.SQL, "+goose") {
				t.Errorf("%s still carries goose annotations", sc.Name)
			}
			tx, err := viaSQL.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, sc.SQL); err != nil {
				_ = tx.Rollback()
				t.Fatalf("%s (%v): %v", sc.Name, dir, err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	apply(migrations.DirectionUp)

	want, got := schemaOf(t, viaGoose.db), schemaOf(t, viaSQL.db)
	for name := range schemaQueries {
		if len(want[name]) == 0 {
			t.Errorf("%s: goose-migrated schema has none; the comparison is vacuous", name)
		}
		if !slices.Equal(want[name], got[name]) {
			t.Errorf("%s differ:\ngoose:\n\t%s\nplain SQL:\n\t%s", name,
				strings.Join(want[name], "\n\t"), strings.Join(got[name], "\n\t"))
		}
	}
	if viaSQL.tableExists(t, migrations.VersionTable) {
		t.Error("plain SQL created goose's version table")
	}

	apply(migrations.DirectionDown)
	for name, lines := range schemaOf(t, viaSQL.db) {
		if len(lines) != 0 {
			t.Errorf("after the down scripts, %s remain: %q", name, lines)
		}
	}
}

// TestPlainInsertGetsDefaultsAndNotifies is the sidecar contract: a
// producer in any language inserts topic and payload, every other column
// takes its default, and relays listening on channel txoutbox are woken
// with the entry's queue, once per statement and queue, at commit.
func TestPlainInsertGetsDefaultsAndNotifies(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	up(t, s.db)
	listener := s.conn(t)
	producer := s.conn(t)
	ctx := context.Background()

	if _, err := listener.Exec(ctx, "LISTEN txoutbox"); err != nil {
		t.Fatal(err)
	}
	// next waits for the next notification on listener.
	next := func() *pgconn.Notification {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("waiting for a notification: %v", err)
		}
		if n.Channel != "txoutbox" {
			t.Fatalf("notification on channel %q, want txoutbox", n.Channel)
		}
		return n
	}
	// untilSentinel collects notification payloads up to a marker inserted
	// after everything of interest, so "no other notification" is checked
	// without waiting for one not to come.
	untilSentinel := func(sentinel string) []string {
		t.Helper()
		if _, err := producer.Exec(ctx, `INSERT INTO outbox_entries (topic, queue) VALUES ('sentinel', $1)`, sentinel); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			n := next()
			if n.Payload == sentinel {
				slices.Sort(got)
				return got
			}
			got = append(got, n.Payload)
		}
	}

	var (
		id                          int64
		key, queue, state           string
		attempt, attemptBase, maxAt int
		priority                    int
		orderingKey, lastError      *string
		payload, headers            string
		runAt, createdAt            time.Time
		finishedAt, leaseUntil      *time.Time
	)
	err := producer.QueryRow(ctx, `INSERT INTO outbox_entries (topic, payload) VALUES ('t', '{}')
		RETURNING id, key, queue, state, attempt, attempt_base, max_attempts, priority, ordering_key,
		          last_error, payload::text, headers::text, run_at, created_at, finished_at, lease_until`).
		Scan(&id, &key, &queue, &state, &attempt, &attemptBase, &maxAt, &priority, &orderingKey,
			&lastError, &payload, &headers, &runAt, &createdAt, &finishedAt, &leaseUntil)
	if err != nil {
		t.Fatal(err)
	}
	if id <= 0 || key == "" || queue != "default" || state != "pending" || attempt != 0 || attemptBase != 0 ||
		maxAt <= 0 || priority != 0 || orderingKey != nil || lastError != nil || payload != "{}" || headers != "{}" ||
		runAt.IsZero() || createdAt.IsZero() || finishedAt != nil || leaseUntil != nil {
		t.Errorf("defaults: id=%d key=%q queue=%q state=%q attempt=%d attempt_base=%d max_attempts=%d priority=%d "+
			"ordering_key=%v last_error=%v payload=%s headers=%s run_at=%v created_at=%v finished_at=%v lease_until=%v",
			id, key, queue, state, attempt, attemptBase, maxAt, priority, orderingKey, lastError, payload, headers,
			runAt, createdAt, finishedAt, leaseUntil)
	}
	if n := next(); n.Payload != "default" {
		t.Errorf("notification payload = %q, want the queue, default", n.Payload)
	}

	var key2 string
	if err := producer.QueryRow(ctx, `INSERT INTO outbox_entries (topic) VALUES ('t') RETURNING key`).Scan(&key2); err != nil {
		t.Fatal(err)
	}
	if key2 == key {
		t.Errorf("two entries got the same default key %q", key)
	}
	if got := untilSentinel("sentinel-1"); !slices.Equal(got, []string{"default"}) {
		t.Errorf("second insert notified %q, want [default]", got)
	}

	// One statement, three rows, two queues: one notification per queue.
	if _, err := producer.Exec(ctx, `INSERT INTO outbox_entries (topic, queue) VALUES ('t', 'urgent'), ('t', 'urgent'), ('t', 'bulk')`); err != nil {
		t.Fatal(err)
	}
	if got := untilSentinel("sentinel-2"); !slices.Equal(got, []string{"bulk", "urgent"}) {
		t.Errorf("multi-row insert notified %q, want [bulk urgent]", got)
	}

	// Uncommitted inserts notify nobody until commit.
	tx, err := producer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox_entries (topic, queue) VALUES ('t', 'in-tx')`); err != nil {
		t.Fatal(err)
	}
	other := s.conn(t)
	if _, err := other.Exec(ctx, `INSERT INTO outbox_entries (topic, queue) VALUES ('sentinel', 'sentinel-3')`); err != nil {
		t.Fatal(err)
	}
	if n := next(); n.Payload != "sentinel-3" {
		t.Errorf("got %q before the transaction committed, want only sentinel-3", n.Payload)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := next(); n.Payload != "in-tx" {
		t.Errorf("after commit got %q, want in-tx", n.Payload)
	}
}

func TestConstraintsRejectBadRows(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	up(t, s.db)
	conn := s.conn(t)
	ctx := context.Background()

	if _, err := conn.Exec(ctx, `INSERT INTO outbox_entries (topic, key) VALUES ('dup', 'k')`); err != nil {
		t.Fatal(err)
	}
	const (
		checkViolation   = "23514"
		notNullViolation = "23502"
		uniqueViolation  = "23505"
	)
	long := strings.Repeat("x", 256)
	cases := []struct {
		name, sql, code string
	}{
		{"empty topic", `INSERT INTO outbox_entries (topic) VALUES ('')`, checkViolation},
		{"null topic", `INSERT INTO outbox_entries (topic) VALUES (NULL)`, notNullViolation},
		{"topic too long", fmt.Sprintf(`INSERT INTO outbox_entries (topic) VALUES ('%s')`, long), checkViolation},
		{"empty key", `INSERT INTO outbox_entries (topic, key) VALUES ('t', '')`, checkViolation},
		{"empty ordering key", `INSERT INTO outbox_entries (topic, ordering_key) VALUES ('t', '')`, checkViolation},
		{"empty queue", `INSERT INTO outbox_entries (topic, queue) VALUES ('t', '')`, checkViolation},
		{"unknown state", `INSERT INTO outbox_entries (topic, state) VALUES ('t', 'bogus')`, checkViolation},
		{"negative attempt", `INSERT INTO outbox_entries (topic, attempt) VALUES ('t', -1)`, checkViolation},
		{"zero max attempts", `INSERT INTO outbox_entries (topic, max_attempts) VALUES ('t', 0)`, checkViolation},
		{"null payload", `INSERT INTO outbox_entries (topic, payload) VALUES ('t', NULL)`, notNullViolation},
		{"duplicate topic and key", `INSERT INTO outbox_entries (topic, key) VALUES ('dup', 'k')`, uniqueViolation},
		{"duplicate processed key", `INSERT INTO outbox_processed_keys (scope, key) VALUES ('s', 'k'), ('s', 'k')`, uniqueViolation},
		{"headers not an object", `INSERT INTO outbox_entries (topic, headers) VALUES ('t', '["a"]')`, checkViolation},
		{"header value a number", `INSERT INTO outbox_entries (topic, headers) VALUES ('t', '{"retries": 3}')`, checkViolation},
		{"header value an object", `INSERT INTO outbox_entries (topic, headers) VALUES ('t', '{"nested": {"a": "b"}}')`, checkViolation},
		{"header value null", `INSERT INTO outbox_entries (topic, headers) VALUES ('t', '{"a": null}')`, checkViolation},
	}
	for _, c := range cases {
		_, err := conn.Exec(ctx, c.sql)
		if got := sqlState(err); got != c.code {
			t.Errorf("%s: err = %v (SQLSTATE %q), want SQLSTATE %s", c.name, err, got, c.code)
		}
	}

	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM outbox_entries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d entries stored, want only the first good one", n)
	}
}

// TestPlainSQLDeduplicationWithoutConflictTarget runs the deduplicating
// insert docs/schema.md gives plain-SQL producers, in the target-less form
// that also works on the partitioned layout of docs/storage.md: a second
// insert of a topic and key inserts nothing and returns no id.
func TestPlainSQLDeduplicationWithoutConflictTarget(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	up(t, s.db)
	conn := s.conn(t)
	ctx := context.Background()

	const insert = `INSERT INTO outbox_entries (topic, key, payload)
		VALUES ('email.welcome', 'welcome:42', '{"user_id":42}')
		ON CONFLICT DO NOTHING
		RETURNING id`
	var first int64
	if err := conn.QueryRow(ctx, insert).Scan(&first); err != nil {
		t.Fatalf("first insert: %v", err)
	}
	rows, err := conn.Query(ctx, insert)
	if err != nil {
		t.Fatalf("second insert: %v", err)
	}
	var again []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		again = append(again, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("second insert: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second insert returned ids %v, want none", again)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM outbox_entries WHERE topic = 'email.welcome' AND key = 'welcome:42'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d entries for the key, want 1 (entry %d)", n, first)
	}
}

// Version 5 makes the database refuse headers that are not an object of
// strings. Entries written before it that the relay will still update
// (pending, running, dead) are converted by the migration, so that no
// claim, outcome or replay of them fails the new check; done entries stay
// as they are.
func TestUpgradeToVersion5ConvertsHeaders(t *testing.T) {
	t.Parallel()
	s := newScratch(t)
	up(t, s.db)
	if r, err := migrations.Down(context.Background(), s.db); err != nil || r.Version != 5 {
		t.Fatalf("Down: %v, %+v; want version 5 rolled back", err, r)
	}
	conn := s.conn(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `INSERT INTO outbox_entries (topic, key, state, headers) VALUES
		('t', 'pending', 'pending', '{"retries": 3, "nested": {"a": "b"}, "s": "x", "none": null}'),
		('t', 'running', 'running', '{"n": 1.5}'),
		('t', 'dead', 'dead', '["not", "an", "object"]'),
		('t', 'done', 'done', '{"retries": 3}'),
		('t', 'good', 'pending', '{"traceparent": "00-1-2-01"}')`); err != nil {
		t.Fatal(err)
	}
	up(t, s.db)
	want := map[string]string{
		"pending": `{"s": "x", "none": "null", "nested": "{\"a\": \"b\"}", "retries": "3"}`,
		"running": `{"n": "1.5"}`,
		"dead":    `{"txoutbox_original_headers": "[\"not\", \"an\", \"object\"]"}`,
		"done":    `{"retries": 3}`,
		"good":    `{"traceparent": "00-1-2-01"}`,
	}
	for key, w := range want {
		var got string
		if err := conn.QueryRow(ctx, `SELECT headers::text FROM outbox_entries WHERE key = $1`, key).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("%s: headers %s; want %s", key, got, w)
		}
	}
	// What the relay does to such entries now succeeds.
	if _, err := conn.Exec(ctx, `UPDATE outbox_entries SET state = 'running', attempt = attempt + 1 WHERE state = 'pending'`); err != nil {
		t.Fatalf("claiming converted entries: %v", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE outbox_entries SET state = 'pending' WHERE state = 'dead'`); err != nil {
		t.Fatalf("replaying a converted entry: %v", err)
	}
}
