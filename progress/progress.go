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
//		Watcher: w,
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
// stays open until the client leaves or Config.MaxDuration passes.
//
// Changes come from the [outbox.Watcher]'s LISTEN connection: relays
// announce every outcome they write on [outbox.ProgressChannel]. Claims
// (pending to running) are not announced; "running" shows when a poll
// (Watcher PollInterval) happens to see it.
package progress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// Defaults of Config.
const (
	DefaultMaxStreams  = 1000
	DefaultMaxDuration = 10 * time.Minute
	DefaultKeepAlive   = 15 * time.Second
	DefaultMaxEntries  = 100
)

// ErrConfig is matched by every error NewHandler returns for an invalid
// Config.
var ErrConfig = errors.New("progress: invalid config")

// Config configures a Handler.
type Config struct {
	// Watcher follows the entries; required. Run it (Watcher.Run) for
	// changes to arrive as they happen rather than at its PollInterval.
	Watcher *outbox.Watcher

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

	// MaxStreams bounds the streams open at once; more are refused with
	// 503. Default DefaultMaxStreams (1,000).
	MaxStreams int

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

// Handler serves the streams; see the package documentation.
type Handler struct {
	cfg     Config
	streams atomic.Int64
}

// NewHandler validates cfg and returns a Handler. Errors match ErrConfig.
func NewHandler(cfg Config) (*Handler, error) {
	switch {
	case cfg.Watcher == nil:
		return nil, fmt.Errorf("%w: Watcher is required", ErrConfig)
	case cfg.Authorize == nil:
		return nil, fmt.Errorf("%w: Authorize is required", ErrConfig)
	case cfg.MaxStreams < 0, cfg.MaxDuration < 0, cfg.KeepAlive < 0, cfg.MaxEntries < 0:
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	case cfg.MaxEntries > outbox.MaxListLimit:
		return nil, fmt.Errorf("%w: MaxEntries %d is over %d", ErrConfig, cfg.MaxEntries, outbox.MaxListLimit)
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg}, nil
}

// ServeHTTP streams ?entry=ID or ?correlation=ID. It answers 400 for
// neither or both, 404 for an entry that does not exist or that Authorize
// refuses, 405 for methods other than GET and HEAD, and 503 when
// MaxStreams streams are open.
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
	if h.streams.Add(1) > int64(h.cfg.MaxStreams) {
		h.streams.Add(-1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many progress streams", http.StatusServiceUnavailable)
		return
	}
	defer h.streams.Add(-1)
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
