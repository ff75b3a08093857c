// Package natstest finds a NATS server with JetStream for tests, the way
// outbox/outboxtest finds PostgreSQL, and makes per-test streams on it.
//
// [URL] picks, in order:
//
//  1. TXOUTBOX_TEST_NATS_URL, when set (no probe: a server that does not
//     answer fails the tests that use it);
//  2. the server at 127.0.0.1:4222, when it answers and has JetStream
//     enabled (this machine kind and CI run one);
//  3. a server inside the test binary (nats-server's own Go package), with
//     JetStream on and its store in the test's temporary directory,
//     stopped when the test ends.
//
// TXOUTBOX_TEST_NATS_SOURCE forces one: "url", "local" or "inprocess".
// Every choice is logged, "natstest: server nats://... (source)", so a
// test log shows which server a test used.
//
// Tests share a server, so each one publishes to a stream of its own:
// [NewStream] makes one with a unique name and subject prefix, and deletes
// it when the test ends.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The environment variables that choose the server.
const (
	EnvURL    = "TXOUTBOX_TEST_NATS_URL"
	EnvSource = "TXOUTBOX_TEST_NATS_SOURCE"
)

// LocalURL is the server this machine kind and CI run.
const LocalURL = "nats://127.0.0.1:4222"

// probeTimeout bounds the probe of LocalURL.
const probeTimeout = 2 * time.Second

// localAnswers reports once per process whether LocalURL answers with
// JetStream, and why not.
var localAnswers = sync.OnceValues(func() (bool, string) {
	nc, err := natsio.Connect(LocalURL, natsio.Timeout(probeTimeout), natsio.MaxReconnects(0), natsio.Name("natstest-probe"))
	if err != nil {
		return false, err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return false, "JetStream: " + err.Error()
	}
	return true, ""
})

// Choice is a server chosen by Find, for code that has no testing.TB
// (Examples).
type Choice struct {
	// URL is the server's client URL.
	URL string
	// Source says where it came from, for logs.
	Source string
	// Stop stops the server if Find started it; a no-op otherwise.
	Stop func()
}

// Find picks the server as URL does, starting an in-process server in a
// temporary directory if need be; call Choice.Stop when done.
func Find() (Choice, error) {
	forced := strings.TrimSpace(os.Getenv(EnvSource))
	env := strings.TrimSpace(os.Getenv(EnvURL))
	switch forced {
	case "", "url", "local", "inprocess":
	default:
		return Choice{}, fmt.Errorf("natstest: %s=%q: want url, local or inprocess (or unset)", EnvSource, forced)
	}
	if forced == "url" || (forced == "" && env != "") {
		if env == "" {
			return Choice{}, fmt.Errorf("natstest: %s=url, but %s is not set", EnvSource, EnvURL)
		}
		return Choice{URL: env, Source: EnvURL, Stop: func() {}}, nil
	}
	if forced == "" || forced == "local" {
		ok, why := localAnswers()
		if ok {
			return Choice{URL: LocalURL, Source: "the local server with JetStream", Stop: func() {}}, nil
		}
		if forced == "local" {
			return Choice{}, fmt.Errorf("natstest: %s=local, but %s does not answer with JetStream: %s", EnvSource, LocalURL, why)
		}
	}
	dir, err := os.MkdirTemp("", "txoutbox-natstest-")
	if err != nil {
		return Choice{}, err
	}
	s, err := startServer(dir, -1)
	if err != nil {
		_ = os.RemoveAll(dir)
		return Choice{}, err
	}
	return Choice{URL: s.ClientURL(), Source: "in-process server", Stop: func() {
		s.Shutdown()
		s.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}}, nil
}

// URL returns the URL of the NATS server t uses (see the package
// documentation), and logs which one it is. An in-process server is
// stopped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	forced := strings.TrimSpace(os.Getenv(EnvSource))
	if forced == "inprocess" || (forced == "" && os.Getenv(EnvURL) == "") {
		if ok, why := localAnswers(); forced == "inprocess" || !ok {
			s := Start(t)
			reason := EnvSource + "=inprocess"
			if forced == "" {
				reason = LocalURL + " unavailable: " + why
			}
			t.Logf("natstest: server %s (in-process server; %s)", s.URL(), reason)
			return s.URL()
		}
	}
	c, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("natstest: server %s (%s)", redact(c.URL), c.Source)
	return c.URL
}

// redact drops user information from a URL for logs.
func redact(u string) string {
	return regexp.MustCompile(`//[^@/]*@`).ReplaceAllString(u, "//***@")
}

// Server is a NATS server with JetStream running inside the test binary.
type Server struct {
	t    testing.TB
	dir  string
	port int

	mu  sync.Mutex
	srv *server.Server
}

// Start starts an in-process server with JetStream, its store in a
// temporary directory of t, on a free loopback port; it is stopped when t
// ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	srv, err := startServer(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir, srv: srv, port: srv.Addr().(*net.TCPAddr).Port}
	t.Cleanup(s.Stop)
	return s
}

// URL returns the server's client URL; it stays the same across Restart.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Stop shuts the server down and waits until it is gone; its store is
// kept for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts the stopped server again on the same port with the same
// store, so streams and their messages are back.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	srv, err := startServer(s.dir, s.port)
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv = srv
}

// startServer starts a JetStream server storing in dir, on port (-1: a
// free one), and waits until it takes connections.
func startServer(dir string, port int) (*server.Server, error) {
	srv, err := server.NewServer(&server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("natstest: in-process server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("natstest: in-process server not ready after 30s")
	}
	return srv, nil
}

// Connect connects to url, closed when t ends.
func Connect(t testing.TB, url string, opts ...natsio.Option) *natsio.Conn {
	t.Helper()
	nc, err := natsio.Connect(url, append([]natsio.Option{natsio.Name("natstest")}, opts...)...)
	if err != nil {
		t.Fatalf("natstest: connecting to %s: %v", redact(url), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Stream is a stream of one test.
type Stream struct {
	// Name is the stream's name, unique to the test.
	Name string
	// Prefix starts every subject the stream captures: it captures
	// Prefix+".>".
	Prefix string
	// JS is the JetStream context it was made with.
	JS jetstream.JetStream
}

// streamSeq makes stream names unique within the process; the process id
// makes them unique between test binaries sharing a server.
var streamSeq atomic.Int64

// NewStream creates a stream for t capturing Prefix+".>", with the
// duplicate window dupWindow (0: JetStream's default, 2 minutes), and
// deletes it when t ends.
func NewStream(t testing.TB, nc *natsio.Conn, dupWindow time.Duration) *Stream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.ToUpper(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("T_%s_%d_%d", base, os.Getpid(), streamSeq.Add(1))
	s := &Stream{Name: name, Prefix: strings.ToLower(name), JS: js}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{s.Prefix + ".>"},
		Storage:    jetstream.FileStorage,
		Duplicates: dupWindow,
	}); err != nil {
		t.Fatalf("natstest: creating stream %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, natsio.ErrConnectionClosed) {
			t.Logf("natstest: deleting stream %s: %v", name, err)
		}
	})
	return s
}

// Count returns how many messages the stream holds.
func (s *Stream) Count(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, s.Name)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", s.Name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", s.Name, err)
	}
	return info.State.Msgs
}

// WaitCount waits until the stream holds at least n messages, failing t
// after limit (a guard against a hang, not a timing assertion).
func (s *Stream) WaitCount(t testing.TB, n uint64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := s.Count(t)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: stream %s holds %d messages after %s; want %d", s.Name, got, limit, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// All reads every message the stream holds, in stream order, with an
// ephemeral ordered consumer that acknowledges nothing.
func (s *Stream) All(t testing.TB) []jetstream.Msg {
	t.Helper()
	n := int(s.Count(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := s.JS.OrderedConsumer(ctx, s.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("natstest: consumer on %s: %v", s.Name, err)
	}
	out := make([]jetstream.Msg, 0, n)
	for len(out) < n {
		if ctx.Err() != nil {
			t.Fatalf("natstest: read %d of %d messages of %s: %v", len(out), n, s.Name, ctx.Err())
		}
		batch, err := c.Fetch(min(n-len(out), 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("natstest: fetching from %s: %v", s.Name, err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsio.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("natstest: fetching from %s: %v", s.Name, err)
		}
	}
	return out
}
