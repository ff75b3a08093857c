// Package progress streams the progress of outbox entries to browsers as
// Server-Sent Events, so that a page learns "your export is ready" the
// moment a relay finishes the entry, without polling.
//
// Mount a [Handler] in the application's own router, behind its own
// authentication, and point an EventSource at it with the entry's id or a
// correlation id ([outbox.WithCorrelationID]):
//
//	w, _ := outbox.NewWatcher(pool, outbox.WatcherConfig{})
//	go w.Run(ctx)
//	h, _ := progress.NewHandler(progress.Config{
//		Watcher:   w,
//		Principal: currentUser, // func(*http.Request) string: who asks
//		Authorize: func(r *http.Request, e *outbox.Entry) bool {
//			return e.Headers["user_id"] == currentUser(r)
//		},
//	})
//	mux.Handle("GET /progress", h)
//
// In the page:
//
//	const es = new EventSource("/progress?entry=" + id);
//	es.addEventListener("done", (ev) => { es.close(); show(JSON.parse(ev.data).result); });
//	es.addEventListener("dead", (ev) => { es.close(); showFailure(); });
//	es.addEventListener("end", (ev) => { es.close(); }); // correlation streams: nothing to follow
//
// # Events
//
// Each event is named after the entry's state — "pending", "running",
// "done" or "dead" — and its data is a [Status] in JSON. An event is sent
// when the stream opens and whenever the entry's state, attempt or finish
// time changes. An entry stream (?entry=ID) ends after "done" or "dead";
// the client should then close its EventSource, which would otherwise
// reconnect and receive the final event again. A correlation stream
// (?correlation=ID) sends events for every entry with that correlation id,
// including entries enqueued after it opened (they appear with their first
// outcome, or at the next poll while the LISTEN connection is down), and
// stays open until the client leaves or Config.MaxDuration passes — unless
// no entry of that correlation id that Authorize allows has shown up within
// Config.CorrelationGrace (30s): the stream then ends with a final event
// named "end" (data: an [End]), on which the client must close its
// EventSource. An id that matches no entry, and one whose entries are all
// someone else's, end alike, so the stream does not tell them apart.
//
// Changes come from the [outbox.Watcher]'s LISTEN connection: relays
// announce every outcome they write on [outbox.ProgressChannel]. Claims
// (pending to running) are not announced; "running" shows when a poll
// (Watcher PollInterval) happens to see it.
//
// # Who may see what, and how much
//
// Two hooks authorize a stream. Config.Principal runs once per request,
// before anything is read, and names who asks (the signed-in user's id);
// Config.Authorize runs for each entry and decides whether that request
// may see it. The principal is a hook of its own because a stream must be
// counted before there is any entry to authorize against.
//
// Streams are counted per principal and in total. A principal with
// Config.MaxStreamsPerPrincipal (10) streams open is refused with 429 and
// a body that says so; when Config.MaxStreams (1,000) are open, anyone is
// refused with 503. So one user opening streams in a loop gets 429s while
// everyone else still gets streams, and its streams on correlation ids
// that match nothing of its own end after Config.CorrelationGrace.
package progress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// Defaults of Config.
const (
	DefaultMaxStreams             = 1000
	DefaultMaxStreamsPerPrincipal = 10
	DefaultMaxDuration            = 10 * time.Minute
	DefaultKeepAlive              = 15 * time.Second
	DefaultMaxEntries             = 100
	DefaultCorrelationGrace       = 30 * time.Second
)

// ErrInvalidConfig is matched by every error NewHandler returns for an
// invalid Config; errors.As yields the *ConfigError naming the field.
var ErrInvalidConfig = errors.New("progress: invalid configuration")

// ConfigError describes one invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("progress: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Config configures a Handler.
type Config struct {
	// Watcher follows the entries; required. Run it (Watcher.Run) for
	// changes to arrive as they happen rather than at its PollInterval.
	Watcher *outbox.Watcher

	// Principal names who makes the request — the signed-in user's id,
	// say — so that streams are counted per principal
	// (MaxStreamsPerPrincipal); required. It runs once per request, before
	// anything is read. An empty name refuses the request with 403. For
	// pages without sign-in, name the session, or the client's address.
	Principal func(r *http.Request) string

	// Authorize decides whether the request may see entry e; required.
	// An entry stream for an entry it refuses answers 404, as for an entry
	// that does not exist; a correlation stream leaves such entries out.
	// Entry ids are sequential, so do check: compare a header the producer
	// stored (a user id) with the request's user, say, or use unguessable
	// correlation ids and allow only correlation streams.
	Authorize func(r *http.Request, e *outbox.Entry) bool

	// IncludeErrors adds the entry's last error to Status. Default false:
	// errors may tell end users more about the system than they should.
	IncludeErrors bool

	// MaxStreams bounds the streams open at once, whoever opened them;
	// more are refused with 503. Default DefaultMaxStreams (1,000).
	MaxStreams int

	// MaxStreamsPerPrincipal bounds the streams one principal has open at
	// once; more are refused with 429, while other principals still get
	// theirs. Default DefaultMaxStreamsPerPrincipal (10), or MaxStreams if
	// that is smaller; at most MaxStreams.
	MaxStreamsPerPrincipal int

	// CorrelationGrace is how long a correlation stream waits for its
	// first entry that Authorize allows. A stream that has none by then
	// looks once more and, still finding none, ends with an "end" event
	// (reason EndNoEntries), so that ids that match nothing do not hold
	// streams for MaxDuration. Default DefaultCorrelationGrace (30s); at
	// most MaxDuration.
	CorrelationGrace time.Duration

	// MaxDuration bounds one stream; the client's EventSource reconnects
	// after it. Default DefaultMaxDuration (10m).
	MaxDuration time.Duration

	// KeepAlive is the interval of comment lines that keep idle streams
	// open through proxies. Default DefaultKeepAlive (15s).
	KeepAlive time.Duration

	// MaxEntries bounds the entries a correlation stream follows. Default
	// DefaultMaxEntries (100); at most outbox.MaxListLimit.
	MaxEntries int

	// Logger receives database errors met while streaming. Default
	// slog.Default().
	Logger *slog.Logger
}

// Status is the data of one event: the entry's progress, without its
// payload.
type Status struct {
	ID            int64           `json:"id"`
	Topic         string          `json:"topic"`
	State         outbox.State    `json:"state"`
	Attempt       int             `json:"attempt"`
	MaxAttempts   int             `json:"max_attempts"`
	RunAt         time.Time       `json:"run_at"`
	FinishedAt    *time.Time      `json:"finished_at,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
	Error         *string         `json:"error,omitempty"`
	CorrelationID string          `json:"correlation_id,omitempty"`
}

// EndNoEntries is the reason of the "end" event of a correlation stream
// that found no entry Authorize allows within Config.CorrelationGrace.
const EndNoEntries = "no_entries"

// End is the data of the final "end" event, with which the server ends a
// stream for good. The client should close its EventSource on it; one
// that reconnects is treated as a new stream.
type End struct {
	Reason  string `json:"reason"`  // EndNoEntries
	Message string `json:"message"` // for people reading logs
}

// Handler serves the streams; see the package documentation.
type Handler struct {
	cfg   Config
	clock clock // makes the CorrelationGrace timers; replaced in tests

	mu          sync.Mutex     // guards open and byPrincipal
	open        int            // streams open
	byPrincipal map[string]int // streams open per principal; no zero counts
}

// clock makes timers; tests replace the real one (export_test.go) to end
// grace periods without waiting.
type clock interface {
	timer(d time.Duration) (c <-chan time.Time, stop func() bool)
}

type realClock struct{}

func (realClock) timer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// NewHandler validates cfg and returns a Handler. Errors match
// ErrInvalidConfig and are *ConfigError.
func NewHandler(cfg Config) (*Handler, error) {
	switch {
	case cfg.Watcher == nil:
		return nil, configErr("Watcher", "required")
	case cfg.Principal == nil:
		return nil, configErr("Principal", "required: name the request's user, so that streams are counted per user")
	case cfg.Authorize == nil:
		return nil, configErr("Authorize", "required")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxStreams", int64(cfg.MaxStreams)},
		{"MaxStreamsPerPrincipal", int64(cfg.MaxStreamsPerPrincipal)},
		{"MaxEntries", int64(cfg.MaxEntries)},
		{"MaxDuration", int64(cfg.MaxDuration)},
		{"KeepAlive", int64(cfg.KeepAlive)},
		{"CorrelationGrace", int64(cfg.CorrelationGrace)},
	} {
		if f.v < 0 {
			return nil, configErr(f.name, "negative")
		}
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxStreamsPerPrincipal == 0 {
		cfg.MaxStreamsPerPrincipal = min(DefaultMaxStreamsPerPrincipal, cfg.MaxStreams)
	}
	if cfg.MaxStreamsPerPrincipal > cfg.MaxStreams {
		return nil, configErr("MaxStreamsPerPrincipal", "%d is over MaxStreams %d", cfg.MaxStreamsPerPrincipal, cfg.MaxStreams)
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.CorrelationGrace == 0 {
		cfg.CorrelationGrace = min(DefaultCorrelationGrace, cfg.MaxDuration)
	}
	if cfg.CorrelationGrace > cfg.MaxDuration {
		return nil, configErr("CorrelationGrace", "%s is over MaxDuration %s", cfg.CorrelationGrace, cfg.MaxDuration)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxEntries > outbox.MaxListLimit {
		return nil, configErr("MaxEntries", "%d is over outbox.MaxListLimit %d", cfg.MaxEntries, outbox.MaxListLimit)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg, clock: realClock{}, byPrincipal: map[string]int{}}, nil
}

// acquire counts a stream for principal p, or returns the status and
// message of the refusal.
func (h *Handler) acquire(p string) (status int, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byPrincipal[p] >= h.cfg.MaxStreamsPerPrincipal {
		return http.StatusTooManyRequests, fmt.Sprintf("too many progress streams for one user: at most %d at once; close some (an EventSource per page) and try again", h.cfg.MaxStreamsPerPrincipal)
	}
	if h.open >= h.cfg.MaxStreams {
		return http.StatusServiceUnavailable, "too many progress streams"
	}
	h.open++
	h.byPrincipal[p]++
	return 0, ""
}

// release uncounts a stream acquire counted.
func (h *Handler) release(p string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open--
	if h.byPrincipal[p]--; h.byPrincipal[p] <= 0 {
		delete(h.byPrincipal, p)
	}
}

// ServeHTTP streams ?entry=ID or ?correlation=ID. It answers 400 for
// neither or both, 403 when Principal names nobody, 404 for an entry that
// does not exist or that Authorize refuses, 405 for methods other than GET
// and HEAD, 429 when the principal has MaxStreamsPerPrincipal streams open,
// and 503 when MaxStreams streams are open.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	entry, corr := r.URL.Query().Get("entry"), r.URL.Query().Get("correlation")
	if (entry == "") == (corr == "") {
		http.Error(w, "give either ?entry=ID or ?correlation=ID", http.StatusBadRequest)
		return
	}
	var id int64
	if entry != "" {
		var err error
		if id, err = strconv.ParseInt(entry, 10, 64); err != nil || id <= 0 {
			http.Error(w, "entry must be a positive integer", http.StatusBadRequest)
			return
		}
	}
	p := h.cfg.Principal(r)
	if p == "" {
		http.Error(w, "progress streams are for signed-in users", http.StatusForbidden)
		return
	}
	if status, msg := h.acquire(p); status != 0 {
		w.Header().Set("Retry-After", "5")
		http.Error(w, msg, status)
		return
	}
	defer h.release(p)
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.MaxDuration)
	defer cancel()
	if entry != "" {
		h.serveEntry(ctx, w, r, id)
		return
	}
	h.serveCorrelation(ctx, w, r, corr)
}

// stream writes events to one response.
type stream struct {
	h    *Handler
	w    http.ResponseWriter
	rc   *http.ResponseController
	seen map[int64]string // entry id -> fingerprint of the last event sent
}

func (h *Handler) newStream(w http.ResponseWriter) *stream {
	return &stream{h: h, w: w, rc: http.NewResponseController(w), seen: map[int64]string{}}
}

// start sends the response header; it reports false when the response
// cannot be streamed.
func (s *stream) start(r *http.Request) bool {
	hd := s.w.Header()
	hd.Set("Content-Type", "text/event-stream; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer
	hd.Set("X-Content-Type-Options", "nosniff")
	// A server WriteTimeout would cut every stream; this one is bounded by
	// MaxDuration instead. Not every ResponseWriter supports it.
	_ = s.rc.SetWriteDeadline(time.Time{})
	s.w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return false
	}
	if _, err := fmt.Fprint(s.w, "retry: 3000\n\n"); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// send writes an event for e unless one with the same fingerprint was
// sent; it reports false when the client is gone.
func (s *stream) send(e *outbox.Entry) bool {
	fp := fingerprint(e)
	if s.seen[e.ID] == fp {
		return true
	}
	s.seen[e.ID] = fp
	st := Status{
		ID: e.ID, Topic: e.Topic, State: e.State, Attempt: e.Attempt, MaxAttempts: e.MaxAttempts,
		RunAt: e.RunAt, FinishedAt: e.FinishedAt, Result: e.Result,
		CorrelationID: e.Headers[outbox.HeaderCorrelationID],
	}
	if s.h.cfg.IncludeErrors {
		st.Error = e.LastError
	}
	data, err := json.Marshal(st)
	if err != nil {
		s.h.cfg.Logger.Error("txoutbox: progress: encoding status", "entry", e.ID, "error", err)
		return false
	}
	if _, err := fmt.Fprintf(s.w, "id: %d.%d.%s\nevent: %s\ndata: %s\n\n", e.ID, e.Attempt, e.State, e.State, data); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// end sends the final "end" event.
func (s *stream) end(reason, msg string) {
	data, err := json.Marshal(End{Reason: reason, Message: msg})
	if err != nil {
		return
	}
	if _, err := fmt.Fprintf(s.w, "event: end\ndata: %s\n\n", data); err == nil {
		_ = s.rc.Flush()
	}
}

func (s *stream) keepAlive() bool {
	if _, err := fmt.Fprint(s.w, ": keep-alive\n\n"); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

func fingerprint(e *outbox.Entry) string {
	fin := ""
	if e.FinishedAt != nil {
		fin = e.FinishedAt.String()
	}
	return fmt.Sprintf("%s/%d/%s", e.State, e.Attempt, fin)
}

func (h *Handler) serveEntry(ctx context.Context, w http.ResponseWriter, r *http.Request, id int64) {
	q := h.cfg.Watcher.Querier()
	sub := h.cfg.Watcher.Follow(id) // before the first read: no change is missed
	defer sub.Close()
	e, err := outbox.Get(ctx, q, id)
	if errors.Is(err, outbox.ErrNotFound) || (err == nil && !h.cfg.Authorize(r, e)) {
		http.Error(w, "no such entry", http.StatusNotFound)
		return
	}
	if err != nil {
		h.cfg.Logger.Error("txoutbox: progress: reading entry", "entry", id, "error", err)
		http.Error(w, "cannot read the entry now", http.StatusServiceUnavailable)
		return
	}
	s := h.newStream(w)
	if !s.start(r) || !s.send(e) || e.State.Finished() {
		return
	}
	keep := time.NewTicker(h.cfg.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keep.C:
			if !s.keepAlive() {
				return
			}
			continue
		case <-sub.Changed():
			sub.Take()
		case <-sub.Poll():
		}
		e, err := outbox.Get(ctx, q, id)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			return // discarded or removed by retention
		case err != nil:
			if ctx.Err() == nil {
				h.cfg.Logger.Warn("txoutbox: progress: reading entry", "entry", id, "error", err)
			}
			continue
		}
		if !s.send(e) || e.State.Finished() {
			return
		}
	}
}

func (h *Handler) serveCorrelation(ctx context.Context, w http.ResponseWriter, r *http.Request, corr string) {
	q := h.cfg.Watcher.Querier()
	sub := h.cfg.Watcher.FollowCorrelation(corr)
	defer sub.Close()
	s := h.newStream(w)
	known := map[int64]bool{} // followed entries -> finished
	// offer sends what is new among entries and reports false when the
	// client is gone.
	offer := func(entries []outbox.Entry) bool {
		for i := range entries {
			e := &entries[i]
			if e.Headers[outbox.HeaderCorrelationID] != corr {
				continue
			}
			if _, ok := known[e.ID]; !ok {
				if len(known) >= h.cfg.MaxEntries || !h.cfg.Authorize(r, e) {
					continue
				}
				sub.Add(e.ID)
			}
			known[e.ID] = e.State.Finished()
			if !s.send(e) {
				return false
			}
		}
		return true
	}
	rescan := func() bool {
		entries, err := outbox.ListByCorrelation(ctx, q, corr, h.cfg.MaxEntries)
		if err != nil {
			if ctx.Err() == nil {
				h.cfg.Logger.Warn("txoutbox: progress: listing entries", "correlation", corr, "error", err)
			}
			return true
		}
		return offer(entries)
	}
	reread := func(ids []int64) bool {
		if len(ids) == 0 {
			return true
		}
		entries, err := outbox.GetMany(ctx, q, ids)
		if err != nil {
			if ctx.Err() == nil {
				h.cfg.Logger.Warn("txoutbox: progress: reading entries", "correlation", corr, "error", err)
			}
			return true
		}
		return offer(entries)
	}
	// The grace timer starts before the response does: once the client
	// sees the stream open, the timer runs.
	grace, stopGrace := h.clock.timer(h.cfg.CorrelationGrace)
	defer stopGrace()
	if !s.start(r) || !rescan() {
		return
	}
	keep := time.NewTicker(h.cfg.KeepAlive)
	defer keep.Stop()
	for {
		ok := true
		select {
		case <-ctx.Done():
			return
		case <-grace:
			grace = nil // fires once
			if len(known) > 0 {
				break
			}
			// Look once more: an entry enqueued just now may not have
			// been announced yet.
			if ok = rescan(); ok && len(known) == 0 {
				s.end(EndNoEntries, fmt.Sprintf("no entry of this correlation id that you may see appeared within %s", h.cfg.CorrelationGrace))
				return
			}
		case <-keep.C:
			ok = s.keepAlive()
		case <-sub.Changed():
			ids, all := sub.Take()
			if all || len(ids) > outbox.MaxListLimit {
				ok = rescan()
			} else {
				ok = reread(ids)
			}
		case <-sub.Poll():
			var open []int64
			for id, finished := range known {
				if !finished {
					open = append(open, id)
				}
			}
			ok = reread(open)
			if ok && !h.cfg.Watcher.Listening() {
				ok = rescan() // announcements may be missing: look for new entries
			}
		}
		if !ok {
			return
		}
	}
}
