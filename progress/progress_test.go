package progress_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/progress"
	"github.com/txoutbox/txoutbox/relay"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// export is the payload of the tests: a document export whose handler
// waits for the test's go-ahead and reports where the file went.
type export struct {
	Name string `json:"name"`
}

func (export) Topic() string { return "export.csv" }

// noPoll is a watcher poll interval no test lasts: whatever a stream
// learns, it learns from the relay's notifications.
const noPoll = time.Hour

// guard bounds waits: a hang guard, not a timing assertion.
const guard = time.Minute

type fixture struct {
	db      *outboxtest.DB
	rec     *handlertest.Recorder
	release chan struct{} // closed to let handlers finish
	srv     *httptest.Server

	mu     sync.Mutex
	doneAt map[int64]time.Time // when the relay reported each entry done
}

func newFixture(t *testing.T, cfg progress.Config) *fixture {
	t.Helper()
	f := &fixture{db: outboxtest.New(t), release: make(chan struct{}), doneAt: map[int64]time.Time{}}
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[export]) error {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.SetResult(map[string]string{"location": "exports/" + e.Payload.Name + ".csv"})
		return nil
	})
	f.rec = handlertest.StartRelay(t, f.db.Pool, h, func(c *relay.Config) {
		c.Observer = relay.ObserverFunc(func(e relay.Event) {
			if e.Kind == relay.EventDone {
				f.mu.Lock()
				f.doneAt[e.EntryID] = time.Now()
				f.mu.Unlock()
			}
		})
	})
	w, err := outbox.NewWatcher(f.db.Pool, outbox.WatcherConfig{PollInterval: noPoll, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Watcher.Run: %v", err)
		}
	})
	deadline := time.Now().Add(guard)
	for !w.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("the watcher never listened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cfg.Watcher = w
	if cfg.Authorize == nil {
		cfg.Authorize = func(r *http.Request, e *outbox.Entry) bool { return e.Headers["user"] == r.Header.Get("X-User") }
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	ph, err := progress.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(ph)
	t.Cleanup(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

func (f *fixture) enqueue(t *testing.T, name string, opts ...outbox.Option) int64 {
	t.Helper()
	opts = append(opts, outbox.WithHeaders(map[string]string{"user": "ada"}))
	res, err := outbox.Enqueue(t.Context(), f.db.Pool, export{Name: name}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// event is one Server-Sent Event.
type event struct {
	ID, Name string
	Data     progress.Status
	At       time.Time
}

// sse is a client reading one stream.
type sse struct {
	resp   *http.Response
	events chan event
	err    chan error // the reader's end: io.EOF when the server closed the stream
}

func (f *fixture) open(t *testing.T, query, user string) *sse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-User", user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET ?%s: %s: %s", query, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type = %q", ct)
	}
	s := &sse{resp: resp, events: make(chan event, 100), err: make(chan error, 1)}
	t.Cleanup(func() { resp.Body.Close() })
	go s.read()
	return s
}

func (s *sse) read() {
	sc := bufio.NewScanner(s.resp.Body)
	var ev event
	var data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Name != "" {
				ev.At = time.Now()
				if err := json.Unmarshal([]byte(data), &ev.Data); err != nil {
					s.err <- fmt.Errorf("event data %q: %w", data, err)
					return
				}
				s.events <- ev
			}
			ev, data = event{}, ""
		case strings.HasPrefix(line, "event: "):
			ev.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	s.err <- err
}

// next returns the next event, failing t when the stream ends first.
func (s *sse) next(t *testing.T) event {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case err := <-s.err:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(guard):
		t.Fatal("no event within the hang guard")
	}
	return event{}
}

// closed waits for the server to end the stream.
func (s *sse) closed(t *testing.T) {
	t.Helper()
	select {
	case ev := <-s.events:
		t.Fatalf("event %s after the final one", ev.Name)
	case err := <-s.err:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("stream ended with %v, want the server to close it", err)
		}
	case <-time.After(guard):
		t.Fatal("the stream stayed open after the final event")
	}
}

// TestEntryStreamReceivesDone: a browser waiting on an entry gets "done",
// with the handler's result, as soon as the relay finishes it — woken by
// the relay's notification, since the watcher would poll only hourly.
func TestEntryStreamReceivesDone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, progress.Config{})
	id := f.enqueue(t, "orders-2026")
	f.rec.Wait(t, id, relay.EventStarted)

	s := f.open(t, fmt.Sprintf("entry=%d", id), "ada")
	first := s.next(t)
	if first.Name != "running" || first.Data.ID != id || first.Data.State != outbox.StateRunning {
		t.Fatalf("first event %+v, want the entry running", first)
	}
	close(f.release)
	done := s.next(t)
	if done.Name != "done" || done.Data.State != outbox.StateDone || done.ID != fmt.Sprintf("%d.1.done", id) {
		t.Fatalf("event %+v, want done", done)
	}
	if string(done.Data.Result) != `{"location":"exports/orders-2026.csv"}` && string(done.Data.Result) != `{"location": "exports/orders-2026.csv"}` {
		t.Errorf("result %s", done.Data.Result)
	}
	s.closed(t)
	// The relay reported the entry done (its completion committed, which
	// sent the notification that woke the stream).
	f.rec.Wait(t, id, relay.EventDone)
	f.mu.Lock()
	relayDone := f.doneAt[id]
	f.mu.Unlock()
	t.Logf("SSE done arrived %s after the relay's done event (negative: before the relay's observer ran)", done.At.Sub(relayDone))
}

func TestEntryStreamOfFinishedEntrySendsOneEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, progress.Config{})
	close(f.release)
	id := f.enqueue(t, "small")
	f.rec.Wait(t, id, relay.EventDone)
	s := f.open(t, fmt.Sprintf("entry=%d", id), "ada")
	if ev := s.next(t); ev.Name != "done" {
		t.Fatalf("event %s, want done", ev.Name)
	}
	s.closed(t)
}

// TestCorrelationStream follows the entries of one correlation id,
// including one enqueued after the stream opened, and none of another.
func TestCorrelationStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, progress.Config{})
	a := f.enqueue(t, "a", outbox.WithCorrelationID("job-5"))
	f.enqueue(t, "other", outbox.WithCorrelationID("job-6"))
	f.rec.Wait(t, a, relay.EventStarted)

	s := f.open(t, "correlation=job-5", "ada")
	if ev := s.next(t); ev.Data.ID != a || ev.Data.CorrelationID != "job-5" {
		t.Fatalf("first event %+v, want entry %d of job-5", ev, a)
	}
	b := f.enqueue(t, "b", outbox.WithCorrelationID("job-5"))
	close(f.release)
	finished := map[int64]bool{}
	for len(finished) < 2 {
		ev := s.next(t)
		if ev.Data.ID != a && ev.Data.ID != b {
			t.Fatalf("event for entry %d, which is not in job-5", ev.Data.ID)
		}
		if ev.Name == "done" {
			finished[ev.Data.ID] = true
		}
	}
}

func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, progress.Config{MaxStreams: 1})
	id := f.enqueue(t, "x")
	get := func(method, query, user string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), method, f.srv.URL+"/?"+query, nil)
		req.Header.Set("X-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		method, query, user string
		want                int
	}{
		{http.MethodGet, "", "ada", http.StatusBadRequest},
		{http.MethodGet, fmt.Sprintf("entry=%d&correlation=c", id), "ada", http.StatusBadRequest},
		{http.MethodGet, "entry=-3", "ada", http.StatusBadRequest},
		{http.MethodGet, "entry=999999", "ada", http.StatusNotFound},
		{http.MethodGet, fmt.Sprintf("entry=%d", id), "mallory", http.StatusNotFound}, // not hers
		{http.MethodPost, fmt.Sprintf("entry=%d", id), "ada", http.StatusMethodNotAllowed},
	} {
		if resp := get(tc.method, tc.query, tc.user); resp.StatusCode != tc.want {
			t.Errorf("%s ?%s as %s: %s, want %d", tc.method, tc.query, tc.user, resp.Status, tc.want)
		}
	}
	s := f.open(t, fmt.Sprintf("entry=%d", id), "ada")
	s.next(t)
	if resp := get(http.MethodGet, fmt.Sprintf("entry=%d", id), "ada"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a second stream over MaxStreams 1: %s, want 503", resp.Status)
	}
	close(f.release)
}

func TestNewHandlerValidates(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	w, err := outbox.NewWatcher(db.Pool, outbox.WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	allow := func(*http.Request, *outbox.Entry) bool { return true }
	for name, cfg := range map[string]progress.Config{
		"no watcher":     {Authorize: allow},
		"no authorize":   {Watcher: w},
		"negative limit": {Watcher: w, Authorize: allow, MaxStreams: -1},
		"too many":       {Watcher: w, Authorize: allow, MaxEntries: outbox.MaxListLimit + 1},
	} {
		if _, err := progress.NewHandler(cfg); !errors.Is(err, progress.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}
