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

	"github.com/txoutbox/txoutbox/internal/rabbittest"
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
	outboxtest.Main(rabbittest.WithCleanup(m))
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

// testSecret is a valid webhook signing secret.
const testSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// Configuration errors exit 2 with a message naming the field, before the
// database is touched.
func TestConfigErrorsExitTwo(t *testing.T) {
	t.Parallel()
	env := []string{"DATABASE_URL=postgres://127.0.0.1:1/none", "CRM_SECRET=" + testSecret, "CRM_TOKEN=t0ken", "EMPTY_VAR="}
	pdf := `{"kind": "pdf", "config": {"dir": "/tmp"}}`
	webhookWith := func(settings, endpoint string) string {
		return `{"kind": "webhook", "config": {` + settings + `"endpoints": {"crm": {"url": "https://crm.example.com/hooks", "secrets_env": ["CRM_SECRET"]` + endpoint + `}}}}`
	}
	emailWith := func(settings string) string {
		return `{"kind": "email", "config": {"host": "smtp.example.com", "from": "shop@example.com", ` + settings + `"templates_dir": "/tmp"}}`
	}
	for _, tc := range []struct {
		name, config, want string
	}{
		{"unknown kind", `{"handlers": [{"kind": "fax"}]}`, `handlers[0].kind: unknown handler kind "fax"`},
		{"unknown field", `{"relay": {"pol_interval": "1s"}}`, `pol_interval`},
		{"bad duration", `{"relay": {"poll_interval": "soon"}}`, `relay.poll_interval`},
		{"missing kind setting", `{"handlers": [{"kind": "pdf", "config": {}}]}`, `handlers[0].config.dir: required`},
		{"unknown kind setting", `{"handlers": [{"kind": "pdf", "config": {"dir": "/tmp", "colour": "red"}}]}`, `handlers[0].config.colour`},
		{"bad kind duration", `{"handlers": [` + webhookWith(`"timeout": "soon", `, "") + `]}`, `handlers[0].config.timeout`},
		{"invalid relay value", `{"handlers": [` + pdf + `], "relay": {"lease_duration": "1ms"}}`, `relay.lease_duration`},
		{"negative relay duration", `{"handlers": [` + pdf + `], "relay": {"poll_interval": "-1s"}}`, `relay.poll_interval`},
		{"negative relay number", `{"handlers": [` + pdf + `], "relay": {"claim_batch_size": -1}}`, `relay.claim_batch_size`},
		{"negative workers", `{"handlers": [` + pdf + `], "relay": {"queues": {"default": {"max_workers": -1}}}}`, `relay.queues.default.max_workers`},
		{"bad log format", `{"log": {"format": "xml"}}`, `log.format`},

		// Negative values are errors naming the field, never defaults.
		{"negative handler timeout", `{"handlers": [{"kind": "pdf", "timeout": "-1s", "config": {"dir": "/tmp"}}]}`, `handlers[0].timeout`},
		{"negative pdf max_bytes", `{"handlers": [` + webhookWith("", "") + `, {"kind": "pdf", "config": {"dir": "/tmp", "max_bytes": -1}}]}`, `handlers[1].config.max_bytes`},
		{"negative webhook timeout", `{"handlers": [` + webhookWith(`"timeout": "-1s", `, "") + `]}`, `handlers[0].config.timeout`},
		{"negative webhook max_response_bytes", `{"handlers": [` + webhookWith(`"max_response_bytes": -1, `, "") + `]}`, `handlers[0].config.max_response_bytes`},
		{"negative webhook max_retry_after", `{"handlers": [` + webhookWith(`"max_retry_after": "-1h", `, "") + `]}`, `handlers[0].config.max_retry_after`},
		{"negative email port", `{"handlers": [` + emailWith(`"port": -1, `) + `]}`, `handlers[0].config.port`},
		{"email port out of range", `{"handlers": [` + emailWith(`"port": 70000, `) + `]}`, `handlers[0].config.port`},
		{"negative email timeout", `{"handlers": [` + emailWith(`"timeout": "-5s", `) + `]}`, `handlers[0].config.timeout`},

		// Header values from the environment.
		{"header variable not set", `{"handlers": [` + webhookWith("", `, "headers_env": {"X-Api-Key": "NO_SUCH_VAR"}`) + `]}`,
			`handlers[0].config.endpoints.crm.headers_env.X-Api-Key: environment variable NO_SUCH_VAR is not set`},
		{"header variable empty", `{"handlers": [` + webhookWith("", `, "headers_env": {"X-Api-Key": "EMPTY_VAR"}`) + `]}`,
			`handlers[0].config.endpoints.crm.headers_env.X-Api-Key`},
		{"header variable unnamed", `{"handlers": [` + webhookWith("", `, "headers_env": {"X-Api-Key": ""}`) + `]}`,
			`handlers[0].config.endpoints.crm.headers_env.X-Api-Key`},
		{"header set both ways", `{"handlers": [` + webhookWith("", `, "headers": {"x-api-key": "k"}, "headers_env": {"X-Api-Key": "CRM_TOKEN"}`) + `]}`,
			`handlers[0].config.endpoints.crm.headers_env.X-Api-Key`},
		{"header set twice from the environment", `{"handlers": [` + webhookWith("", `, "headers_env": {"X-Api-Key": "CRM_TOKEN", "x-api-key": "CRM_TOKEN"}`) + `]}`,
			`handlers[0].config.endpoints.crm.headers_env.x-api-key: header x-api-key is also set as headers_env.X-Api-Key`},
		{"ad hoc header variable not set", `{"handlers": [{"kind": "webhook", "config": {"ad_hoc": {"secrets_env": ["CRM_SECRET"], "headers_env": {"X-Api-Key": "NO_SUCH_VAR"}}}}]}`,
			`handlers[0].config.ad_hoc.headers_env.X-Api-Key`},
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
