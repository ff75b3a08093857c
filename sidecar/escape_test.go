package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// evilRow is a dead entry whose topic, key and last error carry terminal
// control sequences: clear screen, a window title (OSC, ended by BEL), red,
// cursor up and erase line with a carriage return to overwrite the line
// above, DEL, and U+009B, the one-character CSI of the C1 set.
const evilRow = `INSERT INTO outbox_entries (topic, key, payload, state, last_error, finished_at, attempt) VALUES
	(E'evil\x1b[2J\x1b]0;TITLE\x07topic', E'k\x1b[31mRED\x7f', '{}', 'dead',
	 E'boom\x1b[1A\x1b[2K\rfake: all good\u009b31m', now(), 1)`

// evilSchedule is a schedules row with the same kind of text in every
// column the status table prints.
const evilSchedule = `INSERT INTO outbox_schedules (name, topic, timing, zone, missed_policy, evaluated_until, next_period, last_period)
	VALUES (E'sched\x1b[2J', E'evil\x1b]8;;http://x.example\x07link', E'@every\u009b1h', E'UTC\x1b[0m', 'latest', now(), now() + interval '1 hour', now())`

// requireNoControls fails when out holds anything a terminal could act on:
// a byte below 0x20 other than the newline ending a line, DEL, a C1
// control (U+0080–U+009F) or a byte that is not UTF-8 (a lone 0x9b is CSI
// on an 8-bit terminal).
func requireNoControls(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		switch {
		case r == utf8.RuneError:
			t.Errorf("%s: byte %d is not UTF-8 (%q)", what, i, out)
			return
		case r == '\n':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			t.Errorf("%s: control character %U at byte %d in %q", what, r, i, out)
			return
		}
	}
}

// Every command that prints what producers wrote escapes control
// characters: tables, JSON and dead show alike; the values still read.
func TestOutputEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, evilRow); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, evilSchedule); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := db.Pool.QueryRow(ctx, `SELECT id FROM outbox_entries`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": db.URL}
	for _, tc := range []struct {
		args []string
		says []string // visible, escaped forms
		json bool
	}{
		{[]string{"dead", "list"}, []string{`evil\u001b[2J\u001b]0;TITLE\u0007topic`, `k\u001b[31mRED\u007f`, `boom\u001b[1A\u001b[2K fake: all good\u009b31m`}, false},
		{[]string{"status"}, []string{`evil\u001b[2J\u001b]0;TITLE\u0007topic`, `sched\u001b[2J`, `evil\u001b]8;;http://x.example\u0007link`, `@every\u009b1h`, `UTC\u001b[0m`}, false},
		{[]string{"status", "--schedules"}, []string{`sched\u001b[2J`, `@every\u009b1h`}, false},
		{[]string{"dead", "list", "--json"}, nil, true},
		{[]string{"status", "--json"}, nil, true},
		{[]string{"status", "--schedules", "--json"}, nil, true},
		{[]string{"dead", "show", fmt.Sprint(id)}, nil, true},
	} {
		code, out, errOut := cli(t, env, tc.args...)
		if code != 0 {
			t.Errorf("%q: exit %d: %s", tc.args, code, errOut)
			continue
		}
		requireNoControls(t, strings.Join(tc.args, " "), out)
		for _, s := range tc.says {
			if !strings.Contains(out, s) {
				t.Errorf("%q: output lacks %s: %q", tc.args, s, out)
			}
		}
		if tc.json {
			if !json.Valid([]byte(out)) || !strings.Contains(out, `\u001b`) {
				t.Errorf("%q: output is not JSON with escapes: %q", tc.args, out)
			}
		}
	}

	// The JSON still decodes to the stored text.
	_, out, _ := cli(t, env, "dead", "show", fmt.Sprint(id))
	var e struct {
		Topic, Key string
		LastError  string `json:"last_error"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	if e.Topic != "evil\x1b[2J\x1b]0;TITLE\x07topic" || e.Key != "k\x1b[31mRED\x7f" || e.LastError != "boom\x1b[1A\x1b[2K\rfake: all good\u009b31m" {
		t.Errorf("dead show decodes to %+q", e)
	}
}
