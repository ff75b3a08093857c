package main_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// binary is the txoutbox binary built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "txoutbox-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "txoutbox")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building txoutbox: " + err.Error())
	}
	defer os.RemoveAll(dir)
	outboxtest.Main(m)
}

// run runs the binary to completion.
func run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running txoutbox: %v", err)
		}
		code = ee.ExitCode()
	}
	return code, out.String()
}

func newDB(t *testing.T) *outboxtest.DB { return outboxtest.New(t) }

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Configuration errors exit 2 with a message naming the field, before the
// database is touched.
func TestConfigErrorsExitTwo(t *testing.T) {
	t.Parallel()
	env := []string{"DATABASE_URL=postgres://127.0.0.1:1/none"}
	for _, tc := range []struct {
		name, config, want string
	}{
		{"unknown kind", `{"handlers": [{"kind": "fax"}]}`, `handlers[0].kind: unknown handler kind "fax"`},
		{"unknown field", `{"relay": {"pol_interval": "1s"}}`, `pol_interval`},
		{"bad duration", `{"relay": {"poll_interval": "soon"}}`, `relay.poll_interval`},
		{"missing kind setting", `{"handlers": [{"kind": "pdf", "config": {}}]}`, `handlers[0].config: dir: required`},
		{"unknown kind setting", `{"handlers": [{"kind": "pdf", "config": {"dir": "/tmp", "colour": "red"}}]}`, `colour`},
		{"invalid kind setting", `{"handlers": [{"kind": "pdf", "config": {"dir": "/tmp", "max_bytes": -1}}]}`, `handlers[0].config: pdf: invalid config MaxBytes`},
		{"invalid relay value", `{"handlers": [{"kind": "pdf", "config": {"dir": "/tmp"}}], "relay": {"lease_duration": "1ms"}}`, `LeaseDuration`},
		{"bad log format", `{"log": {"format": "xml"}}`, `log.format`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out := run(t, env, "relay", "--config", writeFile(t, tc.config), "--listen", "off")
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want exit 2 naming %q", code, out, tc.want)
			}
		})
	}
}

// The binary's pdf handler writes an invoice enqueued through the binary.
func TestBinaryRendersInvoice(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	dir := t.TempDir()
	env := []string{"DATABASE_URL=" + db.URL}
	config := writeFile(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"},
		"handlers": [{"kind": "pdf", "config": {"dir": "`+dir+`"}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relayCmd := exec.CommandContext(ctx, binary, "relay", "--config", config, "--listen", "off")
	relayCmd.Env = append(os.Environ(), env...)
	var relayOut bytes.Buffer
	relayCmd.Stdout, relayCmd.Stderr = &relayOut, &relayOut
	if err := relayCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = relayCmd.Wait() }()

	code, out := run(t, env, "enqueue", "pdf.invoice",
		`{"number":"INV-7","seller":"Acme","customer":"Ada","currency":"EUR","issued_at":"2026-11-26T00:00:00Z","lines":[{"description":"Widget","quantity":2,"unit_cents":1250}]}`,
		"--key", "invoice:7")
	if code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		e, err := outbox.GetByKey(context.Background(), db.Pool, "pdf.invoice", "invoice:7")
		if err != nil {
			t.Fatal(err)
		}
		if e.State == outbox.StateDone {
			if !strings.Contains(string(e.Result), `"pdf.invoice/invoice_7-`) || strings.Contains(string(e.Result), dir) {
				t.Fatalf("result %s; want the document's name, not its path in %s", e.Result, dir)
			}
			break
		}
		if e.State == outbox.StateDead || time.Now().After(deadline) {
			t.Fatalf("entry %s (%v); relay output:\n%s", e.State, e.LastError, relayOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.pdf"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
}
