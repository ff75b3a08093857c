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
	clock   *progress.FakeClock // the handler's: grace periods end when a test advances it

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
	if cfg.Principal == nil {
		cfg.Principal = func(r *http.Request) string { return r.Header.Get("X-User") }
	}
	if cfg.Authorize == nil {
		cfg.Authorize = func(r *http.Request, e *outbox.Entry) bool { return e.Headers["user"] == r.Header.Get("X-User") }
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	ph, err := progress.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.clock = progress.UseFakeClock(ph)
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
	Raw      string // the data as sent
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
				ev.Raw = data
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
		// The reader queues every event before its end: events first.
		select {
		case ev := <-s.events:
			s.err <- err
			return ev
		default:
		}
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
	f := newFixture(t, progress.Config{MaxStreams: 2, MaxStreamsPerPrincipal: 1})
	id := f.enqueue(t, "x")
	for _, tc := range []struct {
		method, query, user string
		want                int
	}{
		{http.MethodGet, "", "ada", http.StatusBadRequest},
		{http.MethodGet, fmt.Sprintf("entry=%d&correlation=c", id), "ada", http.StatusBadRequest},
		{http.MethodGet, "entry=-3", "ada", http.StatusBadRequest},
		{http.MethodGet, "entry=999999", "ada", http.StatusNotFound},
		{http.MethodGet, fmt.Sprintf("entry=%d", id), "mallory", http.StatusNotFound}, // not hers
		{http.MethodGet, fmt.Sprintf("entry=%d", id), "", http.StatusForbidden},       // Principal names nobody
		{http.MethodPost, fmt.Sprintf("entry=%d", id), "ada", http.StatusMethodNotAllowed},
	} {
		if resp, _ := f.get(t, tc.method, tc.query, tc.user); resp.StatusCode != tc.want {
			t.Errorf("%s ?%s as %q: %s, want %d", tc.method, tc.query, tc.user, resp.Status, tc.want)
		}
	}
	s := f.open(t, fmt.Sprintf("entry=%d", id), "ada")
	s.next(t)
	if resp, body := f.get(t, http.MethodGet, fmt.Sprintf("entry=%d", id), "ada"); resp.StatusCode != http.StatusTooManyRequests ||
		!strings.Contains(body, "too many progress streams for one user: at most 1 at once") {
		t.Errorf("ada's second stream over MaxStreamsPerPrincipal 1: %s %q, want 429 saying why", resp.Status, body)
	}
	f.open(t, "correlation=bobs", "bob")
	if resp, _ := f.get(t, http.MethodGet, "correlation=carols", "carol"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a third stream over MaxStreams 2: %s, want 503", resp.Status)
	}
	close(f.release)
}

// get makes a request that is not a stream, or is refused, and returns the
// response with its body read.
func (f *fixture) get(t *testing.T, method, query, user string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+"/?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-User", user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestOnePrincipalCannotTakeEveryStream is the outside review's attack: one
// signed-in user opens streams on correlation ids that match nothing, as
// fast as it can. It gets its MaxStreamsPerPrincipal (the default, 10)
// and then 429s, while another user still gets streams; its junk streams
// end once the grace period passes, which frees its share again.
func TestOnePrincipalCannotTakeEveryStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, progress.Config{MaxStreams: 50})
	id := f.enqueue(t, "ada's export", outbox.WithCorrelationID("ada-job"))

	const attempts = 60 // more than MaxStreams
	type outcome struct {
		status int
		body   string
		resp   *http.Response // open streams only
	}
	results := make([]outcome, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s/?correlation=junk-%d", f.srv.URL, i), nil)
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("X-User", "mallory")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			if resp.StatusCode == http.StatusOK {
				results[i] = outcome{status: resp.StatusCode, resp: resp}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results[i] = outcome{status: resp.StatusCode, body: string(b)}
		})
	}
	wg.Wait()
	var streams []*sse
	refused := 0
	for _, o := range results {
		switch {
		case o.status == http.StatusOK:
			s := &sse{resp: o.resp, events: make(chan event, 100), err: make(chan error, 1)}
			t.Cleanup(func() { o.resp.Body.Close() })
			go s.read()
			streams = append(streams, s)
		case o.status == http.StatusTooManyRequests && strings.Contains(o.body, "too many progress streams for one user: at most 10 at once"):
			refused++
		default:
			t.Errorf("mallory's request: %d %q, want 200, or 429 saying why", o.status, o.body)
		}
	}
	if len(streams) != progress.DefaultMaxStreamsPerPrincipal || refused != attempts-progress.DefaultMaxStreamsPerPrincipal {
		t.Fatalf("mallory got %d streams and %d refusals, want %d and %d", len(streams), refused,
			progress.DefaultMaxStreamsPerPrincipal, attempts-progress.DefaultMaxStreamsPerPrincipal)
	}

	// Ada still gets her streams, and her entry's progress.
	entry := f.open(t, fmt.Sprintf("entry=%d", id), "ada")
	corr := f.open(t, "correlation=ada-job", "ada")
	if ev := entry.next(t); ev.Data.ID != id {
		t.Fatalf("ada's entry stream: %+v", ev)
	}
	if ev := corr.next(t); ev.Data.ID != id {
		t.Fatalf("ada's correlation stream: %+v", ev)
	}

	// The grace period passes: mallory's streams, which found nothing,
	// end with the reason; ada's, which found her entry, stay open.
	f.clock.Advance(progress.DefaultCorrelationGrace)
	for _, s := range streams {
		if ev := s.next(t); ev.Name != "end" || !strings.Contains(ev.Raw, `"reason":"no_entries"`) {
			t.Fatalf("mallory's junk stream after the grace period: event %s %s, want end", ev.Name, ev.Raw)
		}
		s.closed(t)
	}
	close(f.release)
	corr.until(t, id, "done")
	entry.until(t, id, "done")
	// Mallory's share is free again.
	f.open(t, "correlation=junk-again", "mallory")
}

// TestCorrelationStreamEndsWithoutAuthorizedEntries: a correlation id that
// matches nothing, and one whose entries are someone else's, both end at
// the end of the grace period, with an "end" event and no entry; a stream
// whose entry arrives during the grace period stays open after it.
func TestCorrelationStreamEndsWithoutAuthorizedEntries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, progress.Config{CorrelationGrace: 5 * time.Second})
	f.enqueue(t, "ada's", outbox.WithCorrelationID("ada-7"))

	none := f.open(t, "correlation=nobody-has-this", "mallory")
	others := f.open(t, "correlation=ada-7", "mallory")
	late := f.open(t, "correlation=ada-8", "ada")
	close(f.release)
	a := f.enqueue(t, "late", outbox.WithCorrelationID("ada-8"))
	late.until(t, a, "done")

	f.clock.Advance(5*time.Second - time.Nanosecond)
	f.clock.Advance(time.Nanosecond)
	for name, s := range map[string]*sse{"unknown id": none, "someone else's id": others} {
		ev := s.next(t)
		var end progress.End
		if err := json.Unmarshal([]byte(ev.Raw), &end); err != nil || ev.Name != "end" || end.Reason != progress.EndNoEntries ||
			!strings.Contains(end.Message, "within 5s") {
			t.Fatalf("%s: event %s %s (%v), want end with reason %s", name, ev.Name, ev.Raw, err, progress.EndNoEntries)
		}
		s.closed(t)
	}
	// Ada's stream is still open: it sees the next entry of her job.
	b := f.enqueue(t, "later", outbox.WithCorrelationID("ada-8"))
	late.until(t, b, "done")
}

// until reads events until one for entry id named name, failing t on an
// event for another entry; a correlation stream may also show the entry
// pending or running first, depending on when it rereads.
func (s *sse) until(t *testing.T, id int64, name string) {
	t.Helper()
	for {
		ev := s.next(t)
		if ev.Data.ID != id {
			t.Fatalf("event %s for entry %d, want events of entry %d", ev.Name, ev.Data.ID, id)
		}
		if ev.Name == name {
			return
		}
	}
}

func TestNewHandlerValidates(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	w, err := outbox.NewWatcher(db.Pool, outbox.WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	allow := func(*http.Request, *outbox.Entry) bool { return true }
	who := func(r *http.Request) string { return "ada" }
	for _, tc := range []struct {
		name, field string
		cfg         progress.Config
	}{
		{"no watcher", "Watcher", progress.Config{Principal: who, Authorize: allow}},
		{"no principal", "Principal", progress.Config{Watcher: w, Authorize: allow}},
		{"no authorize", "Authorize", progress.Config{Watcher: w, Principal: who}},
		{"negative limit", "MaxStreams", progress.Config{Watcher: w, Principal: who, Authorize: allow, MaxStreams: -1}},
		{"negative keep-alive", "KeepAlive", progress.Config{Watcher: w, Principal: who, Authorize: allow, KeepAlive: -1}},
		{"too many", "MaxEntries", progress.Config{Watcher: w, Principal: who, Authorize: allow, MaxEntries: outbox.MaxListLimit + 1}},
		{"per principal over total", "MaxStreamsPerPrincipal", progress.Config{Watcher: w, Principal: who, Authorize: allow, MaxStreams: 5, MaxStreamsPerPrincipal: 6}},
		{"grace over duration", "CorrelationGrace", progress.Config{Watcher: w, Principal: who, Authorize: allow, MaxDuration: time.Minute, CorrelationGrace: time.Hour}},
	} {
		_, err := progress.NewHandler(tc.cfg)
		var ce *progress.ConfigError
		if !errors.Is(err, progress.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s", tc.name, err, tc.field)
			continue
		}
		if !strings.HasPrefix(err.Error(), "progress: invalid config "+tc.field+": ") {
			t.Errorf("%s: message %q", tc.name, err)
		}
	}
	if _, err := progress.NewHandler(progress.Config{Watcher: w, Principal: who, Authorize: allow, MaxStreams: 3}); err != nil {
		t.Errorf("MaxStreams 3 with the per-principal default (10): %v, want it lowered to 3", err)
	}
}
