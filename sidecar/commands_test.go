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
