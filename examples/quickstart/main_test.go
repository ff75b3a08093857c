package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// server returns the server the tests run the quickstart on: the one every
// other test of the module uses, found by outboxtest (the configured one,
// else a container, else local binaries; stopped by outboxtest.Main). The
// quickstart's own throwaway-server mode, what a newcomer's go run takes
// without DATABASE_URL, is run by CI's newcomer stage (.ci/newcomer.sh).
func server(t *testing.T) string {
	t.Helper()
	return outboxtest.AdminURL(t)
}

// The quickstart runs to completion and tells the whole story. run itself
// fails unless every effect happened as described (checked at the
// receivers and in the database); the output is checked here.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	err := runWithServer(context.Background(), &out, server(t), "", options{reminderDelay: time.Second})
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"201 Created in",
		"200 OK in",
		"user 1 existed; 3 of 3 entries were already queued under the same keys, nothing new",
		"answered 503 with Retry-After: 1",
		"(partner webhook) attempt 1 failed: webhook: endpoint \"partner\"",
		"(partner webhook) done on attempt 2",
		"(welcome email) done on attempt 1",
		"(invoice PDF) done on attempt 1",
		"(reminder email, due in 1s) done on attempt 1",
		"accepted \"Welcome, ada\" for ada@example.com, Message-ID <txoutbox.",
		"Duplicates: 2 signup requests, 1 user; 2 emails for 2 Message-IDs; 2 webhook requests for 1 webhook-id, acted on once.",
		"The database: 1 user, 1 order, 4 entries done, 0 pending, 0 dead.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// With -serve the application keeps running after the scripted requests,
// and the curl commands it prints work.
func TestQuickstartServe(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	serverURL := server(t)
	go func() {
		done <- runWithServer(ctx, &out, serverURL, "", options{serve: true, reminderDelay: time.Second})
	}()

	outboxURL := regexp.MustCompile(`curl -s (http://\S+)/outbox`)
	var base string
	deadline := time.Now().Add(2 * time.Minute)
	for base == "" {
		select {
		case err := <-done:
			t.Fatalf("run ended before serving: %v\noutput:\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if m := outboxURL.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no curl commands printed\noutput:\n%s", out.String())
		}
	}

	// The printed POST commands work, as curl sends them (-d: a form
	// content type).
	posts := regexp.MustCompile(`curl -i (http://\S+) -d '([^']*)'`).FindAllStringSubmatch(out.String(), -1)
	if len(posts) != 2 {
		t.Fatalf("want 2 curl POST commands\noutput:\n%s", out.String())
	}
	for _, p := range posts {
		resp, err := http.Post(p[1], "application/x-www-form-urlencoded", strings.NewReader(p[2]))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s %s: %s", p[1], p[2], resp.Status)
		}
	}
	// Its welcome email is sent while the application serves.
	for !strings.Contains(out.String(), `accepted "Welcome, grace"`) {
		if time.Now().After(deadline) {
			t.Fatalf("grace's welcome email was not sent\noutput:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(base + "/outbox")
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		Key   string `json:"key"`
		State string `json:"state"`
	}
	err = json.NewDecoder(resp.Body).Decode(&entries)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 8 {
		t.Errorf("GET /outbox: %d entries, want 8: %+v", len(entries), entries)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
}

// syncBuffer is a bytes.Buffer safe for the test to read while the
// quickstart writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
