package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin whatever the machine has

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
	"github.com/txoutbox/txoutbox/sidecar"
)

// syncBuffer is a bytes.Buffer safe for the relay's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recordOptions are a team's own sidecar's: the test.record handler, and
// schedules from register.
func recordOptions(env map[string]string, out, errOut *syncBuffer, register func(*schedule.Schedules) error) sidecar.Options {
	return sidecar.Options{
		Stdout: out, Stderr: errOut,
		Getenv: func(k string) string { return env[k] },
		Handlers: func(h *relay.Handlers) error {
			relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[Record]) error {
				_, err := tx.Exec(ctx, `INSERT INTO effects (entry_id, note) VALUES ($1, $2)`, e.ID, e.Payload.Note)
				return err
			})
			return nil
		},
		Schedules: register,
	}
}

// A bad schedule in the file is a usage error naming the field, before
// anything touches the database.
func TestScheduleConfigErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}
	ok := `{"name": "digest", "cron": "0 9 * * MON", "zone": "Europe/Berlin", "topic": "test.record", "payload": {"note": "{{.Key}}"}}`
	for _, tc := range []struct {
		name, schedules string
		says            []string
	}{
		{"bad cron", `[{"name": "d", "cron": "0 9 * * MONDAY", "topic": "test.record"}]`, []string{"schedules[0].cron", "MONDAY"}},
		{"unknown zone", `[{"name": "d", "cron": "@daily", "zone": "Mars/Olympus", "topic": "test.record"}]`, []string{"schedules[0].zone", "Mars/Olympus"}},
		{"bad every", `[{"name": "d", "every": "fast", "topic": "test.record"}]`, []string{"schedules[0].every"}},
		{"every below a second", `[{"name": "d", "every": "10ms", "topic": "test.record"}]`, []string{"schedules[0].every", "minimum"}},
		{"neither", `[{"name": "d", "topic": "test.record"}]`, []string{"schedules[0].cron"}},
		{"bad policy", `[{"name": "d", "every": "1h", "missed": "never", "topic": "test.record"}]`, []string{"schedules[0].missed", "never"}},
		{"bad grace", `[{"name": "d", "every": "1h", "grace": "soon", "topic": "test.record"}]`, []string{"schedules[0].grace"}},
		{"bad anchor", `[{"name": "d", "every": "1h", "anchor": "yesterday", "topic": "test.record"}]`, []string{"schedules[0].anchor"}},
		{"no topic", `[{"name": "d", "every": "1h"}]`, []string{"schedules[0].topic", "required"}},
		{"topic no handler takes", `[{"name": "d", "every": "1h", "topic": "email.send"}]`, []string{"schedules[0].topic", "no handler configured here", "test.record"}},
		{"template syntax", `[{"name": "d", "every": "1h", "topic": "test.record", "payload": {"note": "{{.Time"}}]`, []string{"schedules[0].payload"}},
		{"template field", `[{"name": "d", "every": "1h", "topic": "test.record", "payload": {"note": "{{.Nope}}"}}]`, []string{"schedules[0].payload", "Nope"}},
		{"payload not JSON-ish", `[{"name": "d", "every": "1h", "topic": "test.record", "payload": "{{.Key}}"}]`, nil},
		{"duplicate name", `[` + ok + `, ` + ok + `]`, []string{"schedules[1].name", "already registered"}},
		{"unknown field", `[{"name": "d", "crn": "@daily", "topic": "test.record"}]`, []string{"crn"}},
		{"bad max attempts", `[{"name": "d", "every": "1h", "topic": "test.record", "max_attempts": -1}]`, []string{"schedules[0].max_attempts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, `{"schedules": `+tc.schedules+`}`)
			var out, errOut syncBuffer
			// Cancelled: a valid configuration stops before connecting.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			code := sidecar.Main(ctx, []string{"relay", "--config", path, "--listen", "off"},
				recordOptions(env, &out, &errOut, nil))
			if tc.says == nil {
				// A payload that is a string template is valid: it
				// renders to a JSON string.
				if code != sidecar.ExitOK {
					t.Errorf("exit %d: %s", code, errOut.String())
				}
				return
			}
			if code != sidecar.ExitUsage {
				t.Fatalf("exit %d, want 2; stderr %q", code, errOut.String())
			}
			for _, s := range tc.says {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr %q does not say %q", errOut.String(), s)
				}
			}
		})
	}

	path := writeConfig(t, `{}`)
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code := sidecar.Main(ctx, []string{"relay", "--config", path, "--listen", "off"},
		recordOptions(env, &out, &errOut, func(*schedule.Schedules) error { return errors.New("no digest template") }))
	if code != sidecar.ExitUsage || !strings.Contains(errOut.String(), "schedules (program)") {
		t.Errorf("a failing Options.Schedules: exit %d, %q", code, errOut.String())
	}
}

// The relay command runs the file's and the program's schedules next to
// the relay; status lists them with their last and next firing.
func TestRelayRunsSchedulesAndStatusListsThem(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	createEffects(t, db.Pool)
	env := map[string]string{"DATABASE_URL": db.URL}
	path := writeConfig(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"}, "schedules": [
		{"name": "tick", "every": "1s", "topic": "test.record", "missed": "skip",
		 "payload": {"note": "file {{.Key}} {{rfc3339 .Time}}"}}]}`)
	program := func(set *schedule.Schedules) error {
		return schedule.Register(set, schedule.Spec{Name: "program-tick", Every: time.Second},
			func(_ context.Context, p schedule.Period) (Record, error) {
				return Record{Note: "program " + p.Key}, nil
			})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- sidecar.Main(ctx, []string{"relay", "--config", path, "--listen", "off"}, recordOptions(env, &out, &errOut, program))
	}()
	poll(t, "two periods of each schedule handled", func() bool {
		return count(t, db.Pool, `SELECT count(*) FROM effects WHERE note LIKE 'file tick:%'`) >= 2 &&
			count(t, db.Pool, `SELECT count(*) FROM effects WHERE note LIKE 'program program-tick:%'`) >= 2
	})
	cancel()
	if code := <-done; code != sidecar.ExitOK {
		t.Fatalf("relay exit %d; log:\n%s", code, errOut.String())
	}
	if n, d := count(t, db.Pool, `SELECT count(*) FROM effects`), count(t, db.Pool, `SELECT count(DISTINCT note) FROM effects`); n != d {
		t.Errorf("%d effects, %d distinct: a period was handled twice", n, d)
	}
	var note string
	if err := db.Pool.QueryRow(context.Background(), `SELECT note FROM effects WHERE note LIKE 'file %' LIMIT 1`).Scan(&note); err != nil {
		t.Fatal(err)
	}
	var name, key, at string
	if _, err := fmt.Sscanf(note, "%s %s %s", &name, &key, &at); err != nil || !strings.HasPrefix(key, "tick:") ||
		key != schedule.Key("tick", mustParse(t, at)) {
		t.Errorf("templated note %q (%v)", note, err)
	}

	code, table, _ := cli(t, env, "status")
	if code != 0 {
		t.Fatalf("status: exit %d", code)
	}
	for _, want := range []string{"SCHEDULE", "tick", "program-tick", "@every 1s", "test.record", "skip", "latest"} {
		if !strings.Contains(table, want) {
			t.Errorf("status does not show %q:\n%s", want, table)
		}
	}
	code, js, _ := cli(t, env, "status", "--schedules", "--json")
	if code != 0 {
		t.Fatalf("status --schedules --json: exit %d", code)
	}
	var list []schedule.Status
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list) != 2 {
		t.Fatalf("status --schedules --json: %v %s", err, js)
	}
	for _, st := range list {
		if st.LastPeriod == nil || st.NextPeriod == nil || !st.NextPeriod.After(*st.LastPeriod) || st.LastKey == nil {
			t.Errorf("schedule status %+v", st)
		}
	}
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// status shows a schedule's last and next firing in its zone, and copes
// with a database without the schedules table.
func TestStatusListsSchedules(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	env := map[string]string{"DATABASE_URL": db.URL}
	if code, out, _ := cli(t, env, "status", "--schedules"); code != 0 || !strings.Contains(out, "no schedules") {
		t.Errorf("no schedules: %d %q", code, out)
	}

	// A Monday digest in Berlin that fired on 23 November 2026, by a
	// scheduler whose clock is set.
	set := schedule.NewSchedules()
	if err := schedule.RegisterRaw(set, schedule.Spec{Name: "digest.weekly", Cron: "0 9 * * MON", Zone: "Europe/Berlin"}, "email.send",
		func(context.Context, schedule.Period) (json.RawMessage, error) { return json.RawMessage(`{}`), nil }); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := mustParse(t, "2026-11-20T12:00:00Z")
	s, err := schedule.New(db.Pool, schedule.Config{Schedules: set, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{"2026-11-20T12:00:00Z", "2026-11-23T08:00:30Z"} {
		mu.Lock()
		now = mustParse(t, at)
		mu.Unlock()
		if _, err := s.Evaluate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := cli(t, env, "status")
	if code != 0 {
		t.Fatalf("status: exit %d", code)
	}
	t.Logf("status:\n%s", out)
	for _, want := range []string{"digest.weekly", "email.send", "0 9 * * MON", "Europe/Berlin", "latest",
		"2026-11-23T09:00:00+01:00", "2026-11-30T09:00:00+01:00"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
	// The queue table's JSON is unchanged by schedules.
	code, js, _ := cli(t, env, "status", "--json")
	var stats []map[string]any
	if err := json.Unmarshal([]byte(js), &stats); code != 0 || err != nil || len(stats) != 1 || stats[0]["topic"] != "email.send" {
		t.Errorf("status --json: %d %v %s", code, err, js)
	}

	if _, err := db.Pool.Exec(context.Background(), `DROP TABLE outbox_schedules`); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := cli(t, env, "status"); code != 0 || !strings.Contains(out, "migrate up") {
		t.Errorf("status without the schedules table: %d %q", code, out)
	}
	if code, _, errOut := cli(t, env, "status", "--schedules"); code != sidecar.ExitFailure || !strings.Contains(errOut, "migrate up") {
		t.Errorf("status --schedules without the table: %d %q", code, errOut)
	}
}
