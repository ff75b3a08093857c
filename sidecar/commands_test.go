package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/sidecar"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// cli runs the command line in-process and returns its exit code and output.
func cli(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := sidecar.Main(context.Background(), args, sidecar.Options{
		Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errOut.String()
}

func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	env := map[string]string{"DATABASE_URL": db.URL}
	ctx := context.Background()

	code, out, _ := cli(t, env, "migrate", "status")
	if code != 0 || !strings.Contains(out, "applied  00001_outbox_tables.sql") {
		t.Fatalf("migrate status: %d %q", code, out)
	}
	if code, out, _ := cli(t, env, "migrate", "up"); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate up: %d %q", code, out)
	}

	code, out, errOut := cli(t, env, "enqueue", "email.welcome", `{"user_id": 42}`, "--key", "welcome:42", "--queue", "mail")
	if code != 0 || !strings.Contains(out, "enqueued entry") {
		t.Fatalf("enqueue: %d %q %q", code, out, errOut)
	}
	if code, out, _ := cli(t, env, "enqueue", "--key", "welcome:42", "email.welcome", `{"user_id": 42}`); code != 0 || !strings.Contains(out, "duplicate") {
		t.Fatalf("enqueue duplicate: %d %q", code, out)
	}
	e, err := outbox.GetByKey(ctx, db.Pool, "email.welcome", "welcome:42")
	if err != nil || e.Queue != "mail" || string(e.Payload) != `{"user_id": 42}` {
		t.Fatalf("entry %+v, %v", e, err)
	}

	// Two dead entries of another topic.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_entries (topic, state, attempt, finished_at, last_error)
		VALUES ('webhook.deliver', 'dead', 3, now(), 'HTTP 410 Gone'), ('webhook.deliver', 'dead', 3, now(), 'HTTP 400')`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = cli(t, env, "status", "--json")
	if code != 0 {
		t.Fatalf("status: %d", code)
	}
	var stats []map[string]any
	if err := json.Unmarshal([]byte(out), &stats); err != nil || len(stats) != 2 {
		t.Fatalf("status --json: %v %q", err, out)
	}
	if stats[0]["topic"] != "email.welcome" || stats[0]["pending"] != float64(1) || stats[1]["dead"] != float64(2) {
		t.Fatalf("status --json: %v", stats)
	}
	if code, out, _ := cli(t, env, "status"); code != 0 || !strings.Contains(out, "webhook.deliver") {
		t.Fatalf("status table: %d %q", code, out)
	}

	if code, out, _ := cli(t, env, "dead", "list"); code != 0 || !strings.Contains(out, "HTTP 410 Gone") {
		t.Fatalf("dead list: %d %q", code, out)
	}
	if code, out, _ := cli(t, env, "dead", "retry", "--topic", "webhook.deliver", "--dry-run"); code != 0 || !strings.Contains(out, "would retry 2") {
		t.Fatalf("dead retry --dry-run: %d %q", code, out)
	}
	if n := countState(t, db, "dead"); n != 2 {
		t.Fatalf("dry run changed something: %d dead", n)
	}
	if code, out, _ := cli(t, env, "dead", "retry", "--all"); code != 0 || !strings.Contains(out, "retrying 2") {
		t.Fatalf("dead retry --all: %d %q", code, out)
	}
	if n := countState(t, db, "dead"); n != 0 {
		t.Fatalf("%d dead after retry", n)
	}
}

func countState(t *testing.T, db *outboxtest.DB, state string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_entries WHERE state = $1`, state).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"migrate"},
		{"migrate", "sideways"},
		{"enqueue", "only-topic"},
		{"enqueue", "t", "{not json"},
		{"dead"},
		{"dead", "retry"},
		{"dead", "show", "abc"},
		{"status", "--no-such-flag"},
	} {
		if code, _, _ := cli(t, env, args...); code != sidecar.ExitUsage {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := cli(t, map[string]string{}, "status"); code != sidecar.ExitUsage || !strings.Contains(errOut, "DATABASE_URL") {
		t.Errorf("no database: exit %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, env, "status"); code != sidecar.ExitFailure || !strings.Contains(errOut, "cannot reach the database") {
		t.Errorf("unreachable database: exit %d %q", code, errOut)
	}
	if code, out, _ := cli(t, env, "version"); code != 0 || !strings.Contains(out, "txoutbox") {
		t.Errorf("version: %d %q", code, out)
	}
}

// Every failing command prints one message, "txoutbox <command>: ...", as
// the first line of standard error (a usage error may follow it with the
// command's usage), and nothing on standard output.
func TestErrorsAreReportedOnce(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	env := map[string]string{"DATABASE_URL": db.URL}
	unreachable := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}
	// search_path names a schema without the tables: the database is
	// there, not migrated.
	notMigrated := map[string]string{"DATABASE_URL": db.URL + "&search_path=nowhere"}
	if !strings.Contains(db.URL, "?") {
		notMigrated["DATABASE_URL"] = db.URL + "?search_path=nowhere"
	}
	for _, tc := range []struct {
		env   map[string]string
		args  []string
		code  int
		first string // the first line of standard error, or its start
		usage bool   // the command's usage follows
	}{
		{unreachable, []string{"migrate"}, sidecar.ExitUsage, "txoutbox migrate: want exactly one of up, down, status", true},
		{unreachable, []string{"status", "--no-such-flag"}, sidecar.ExitUsage, "txoutbox status: flag provided but not defined: -no-such-flag", true},
		{unreachable, []string{"enqueue", "t", "{not json"}, sidecar.ExitUsage, "txoutbox enqueue: the payload is not valid JSON", false},
		{unreachable, []string{"dead"}, sidecar.ExitUsage, "txoutbox dead: want one of list, show, retry", true},
		{unreachable, []string{"dead", "show", "abc"}, sidecar.ExitUsage, `txoutbox dead show: "abc" is not an entry id`, false},
		{unreachable, []string{"dead", "retry"}, sidecar.ExitUsage, "txoutbox dead retry: name ids, --topic or --all", true},
		{unreachable, []string{"dead", "list", "--limit", "x"}, sidecar.ExitUsage, `txoutbox dead list: invalid value "x" for flag -limit`, true},
		{unreachable, []string{"relay", "extra"}, sidecar.ExitUsage, `txoutbox relay: unexpected argument "extra"`, false},
		{unreachable, []string{"relay", "--config", "/nonexistent/relay.json"}, sidecar.ExitUsage, "txoutbox relay: sidecar: invalid config: open /nonexistent/relay.json", false},
		{unreachable, []string{"bench", "--runs", "0"}, sidecar.ExitUsage, "txoutbox bench: --runs must be 1–1000, got 0", false},
		{map[string]string{}, []string{"status"}, sidecar.ExitUsage, "txoutbox status: no database: pass --database-url or set DATABASE_URL", false},
		{unreachable, []string{"status"}, sidecar.ExitFailure, "txoutbox status: cannot reach the database: ", false},
		{unreachable, []string{"dead", "list"}, sidecar.ExitFailure, "txoutbox dead list: cannot reach the database: ", false},
		{notMigrated, []string{"status"}, sidecar.ExitFailure, "txoutbox status: the outbox tables are missing in this database: run 'txoutbox migrate up'", false},
		{notMigrated, []string{"status", "--schedules"}, sidecar.ExitFailure, "txoutbox status: the schedules table is missing in this database: run 'txoutbox migrate up'", false},
		{env, []string{"dead", "show", "123456"}, sidecar.ExitFailure, "txoutbox dead show: outbox: entry not found", false},
		{env, []string{"dead", "list", "--limit", "-1"}, sidecar.ExitUsage, "txoutbox dead list: outbox: invalid limit", false},
		{env, []string{"enqueue", "", "{}"}, sidecar.ExitUsage, "txoutbox enqueue: outbox: invalid topic", false},
		// outbox validates the selection: --all with --topic is refused,
		// for a dry run as for the real one.
		{env, []string{"dead", "retry", "--all", "--topic", "t", "--dry-run"}, sidecar.ExitUsage, "txoutbox dead retry: outbox: invalid selection: All cannot be combined", false},
		{env, []string{"dead", "retry", "--all", "--topic", "t"}, sidecar.ExitUsage, "txoutbox dead retry: outbox: invalid selection: All cannot be combined", false},
	} {
		code, out, errOut := cli(t, tc.env, tc.args...)
		first, rest, _ := strings.Cut(errOut, "\n")
		switch {
		case code != tc.code:
			t.Errorf("%q: exit %d, want %d; stderr %q", tc.args, code, tc.code, errOut)
		case !strings.HasPrefix(first, tc.first):
			t.Errorf("%q: stderr starts %q, want %q", tc.args, first, tc.first)
		case strings.Contains(rest, "txoutbox "+tc.args[0]+":") || strings.Contains(rest, tc.first):
			t.Errorf("%q: the error is reported more than once: %q", tc.args, errOut)
		case tc.usage != strings.HasPrefix(rest, "Usage: txoutbox "+tc.args[0]):
			t.Errorf("%q: usage after the message: %v, want %v; stderr %q", tc.args, !tc.usage, tc.usage, errOut)
		case !tc.usage && strings.Contains(rest, "Usage"):
			t.Errorf("%q: usage after the message: %q", tc.args, errOut)
		case out != "":
			t.Errorf("%q: standard output %q, want nothing", tc.args, out)
		}
	}
	// Help is not an error: usage, exit 0.
	for _, args := range [][]string{{"status", "--help"}, {"dead", "--help"}, {"dead", "retry", "-h"}, {"help"}} {
		if code, out, errOut := cli(t, env, args...); code != sidecar.ExitOK || !strings.Contains(out+errOut, "Usage") {
			t.Errorf("%q: exit %d, output %q %q", args, code, out, errOut)
		}
	}
}
