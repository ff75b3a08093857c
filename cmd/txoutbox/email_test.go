package main_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/txoutbox/txoutbox/outbox"
)

// inbox is a real SMTP server (github.com/emersion/go-smtp) on loopback
// that keeps what it receives.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (b *inbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{b: b}, nil }

type session struct{ b *inbox }

func (s *session) Reset()                               {}
func (s *session) Logout() error                        { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, string(b))
	s.b.mu.Unlock()
	return nil
}

// The binary's email kind sends a templated message to a real SMTP server.
func TestBinarySendsEmail(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	box := &inbox{}
	srv := smtp.NewServer(box)
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	tmpl := t.TempDir()
	for name, body := range map[string]string{
		"welcome.subject.tmpl": `Welcome, {{index . "name"}}`,
		"welcome.txt.tmpl":     `Hello {{index . "name"}}, thanks for signing up.`,
		"welcome.html.tmpl":    `<p>Hello {{index . "name"}}</p>`,
	} {
		if err := os.WriteFile(filepath.Join(tmpl, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := writeFile(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"},
		"handlers": [{"kind": "email", "config": {"host": "127.0.0.1", "port": `+strconv.Itoa(port)+`,
			"tls": "none", "from": "shop@example.com", "templates_dir": "`+tmpl+`"}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "relay", "--config", config, "--listen", "off")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db.URL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	if code, o := run(t, []string{"DATABASE_URL=" + db.URL}, "enqueue", "email.send",
		`{"to": ["ada@example.com"], "template": "welcome", "data": {"name": "Ada"}}`, "--key", "welcome:ada"); code != 0 {
		t.Fatalf("enqueue: %d %s", code, o)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		e, err := outbox.GetByKey(context.Background(), db.Pool, "email.send", "welcome:ada")
		if err != nil {
			t.Fatal(err)
		}
		if e.State == outbox.StateDone {
			break
		}
		if e.State == outbox.StateDead || time.Now().After(deadline) {
			t.Fatalf("entry %s %v; relay output:\n%s", e.State, e.LastError, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	if len(box.msgs) != 1 || !strings.Contains(box.msgs[0], "Subject: Welcome, Ada") || !strings.Contains(box.msgs[0], "Message-ID: <txoutbox.") {
		t.Fatalf("received %q", box.msgs)
	}
}
