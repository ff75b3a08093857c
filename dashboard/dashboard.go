package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

//go:embed assets
var assets embed.FS

// Defaults and limits of Config.
const (
	DefaultWindow       = 15 * time.Minute
	DefaultRefresh      = 10 * time.Second
	DefaultDeadLimit    = 50
	DefaultRunningLimit = 50
	MaxListLimit        = 500
	maxErrorChars       = 300      // of last_error in the dead list
	maxPayloadShown     = 64 << 10 // bytes of payload on an entry page
	maxFormBytes        = 16 << 10
	queryTimeout        = 10 * time.Second
)

// ErrInvalidConfig is matched by every error New returns for an invalid
// Config; errors.As yields the *ConfigError naming the field.
var ErrInvalidConfig = errors.New("dashboard: invalid configuration")

// ConfigError describes one invalid Config field (or New's db argument).
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("dashboard: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Config configures the dashboard. Only Auth is required.
type Config struct {
	// Auth decides who may see the dashboard and use its actions;
	// required. See BasicAuth, BearerToken and AuthFunc.
	Auth Auth

	// Window is the period over which throughput and failure rate are
	// shown. Default DefaultWindow (15m); from 1m to 24h.
	Window time.Duration

	// Refresh reloads the overview, and the page of an entry that is not
	// finished yet, this often (an HTML meta refresh: no JavaScript).
	// Default DefaultRefresh (10s); negative turns it off; at least 1s.
	Refresh time.Duration

	// DeadLimit and RunningLimit bound the dead and running entries listed
	// on the overview. Defaults 50; at most MaxListLimit.
	DeadLimit    int
	RunningLimit int

	// TrustedOrigins are other origins (scheme://host[:port]) whose pages
	// may post actions, for a dashboard behind a proxy that changes the
	// Host header. Default none: same origin only.
	TrustedOrigins []string

	// Title names the dashboard in the page header. Default "txoutbox".
	Title string

	// Logger receives database errors and refused actions. Default
	// slog.Default().
	Logger *slog.Logger
}

// Handler serves the dashboard; see the package documentation.
type Handler struct {
	db   outbox.Querier
	cfg  Config
	tmpl *template.Template
	css  []byte
	cop  *http.CrossOriginProtection
	mux  *http.ServeMux
}

// New validates cfg and returns the dashboard over db (normally a
// *pgxpool.Pool; outbox.SQL adapts database/sql). Errors for an invalid
// Config match ErrInvalidConfig and are *ConfigError.
func New(db outbox.Querier, cfg Config) (*Handler, error) {
	if db == nil {
		return nil, configErr("db", "nil database")
	}
	if cfg.Auth == nil {
		return nil, configErr("Auth", "required (BasicAuth, BearerToken, or AuthFunc behind your own middleware)")
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Window < time.Minute || cfg.Window > 24*time.Hour {
		return nil, configErr("Window", "%s is outside 1m–24h", cfg.Window)
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Refresh > 0 && cfg.Refresh < time.Second {
		return nil, configErr("Refresh", "%s is below 1s", cfg.Refresh)
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{{"DeadLimit", &cfg.DeadLimit, DefaultDeadLimit}, {"RunningLimit", &cfg.RunningLimit, DefaultRunningLimit}} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 1 || *f.v > MaxListLimit {
			return nil, configErr(f.name, "%d is outside 1–%d", *f.v, MaxListLimit)
		}
	}
	if cfg.Title == "" {
		cfg.Title = "txoutbox"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cop := http.NewCrossOriginProtection()
	for _, o := range cfg.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, configErr("TrustedOrigins", "%v", err)
		}
	}
	tmpl, err := template.New("").Funcs(funcs()).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: parsing templates: %w", err)
	}
	css, err := assets.ReadFile("assets/style.css")
	if err != nil {
		return nil, fmt.Errorf("dashboard: reading style sheet: %w", err)
	}
	h := &Handler{db: db, cfg: cfg, tmpl: tmpl, css: css, cop: cop, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /entries/{id}", h.entry)
	h.mux.HandleFunc("GET /style.css", h.style)
	h.mux.HandleFunc("POST /retry", h.retry)
	h.mux.HandleFunc("POST /discard", h.discard)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "There is no such page.", nil)
	})
	return h, nil
}

// ServeHTTP checks Auth, then serves the page or action. Mount the handler
// with http.StripPrefix so that it sees paths from its own root:
//
//	mux.Handle("/outbox/", http.StripPrefix("/outbox", dash))
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	if !h.cfg.Auth.Authorize(r) {
		if c := h.cfg.Auth.Challenge(); c != "" {
			hd.Set("WWW-Authenticate", c)
		}
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title      string
	Base       string // relative path to the dashboard's root, "./" or "../"
	CSRF       string
	Flash      string
	Refresh    int    // seconds; 0 for none
	RefreshURL string // the page without its flash message
	Now        time.Time
}

// actionData is what the action forms of one entry need.
type actionData struct {
	Base, CSRF string
	ID         int64
}

// Action returns the data of the action forms for entry id.
func (p page) Action(id int64) actionData { return actionData{Base: p.Base, CSRF: p.CSRF, ID: id} }

func (h *Handler) newPage(w http.ResponseWriter, r *http.Request) (page, error) {
	tok, err := csrfToken(w, r)
	if err != nil {
		return page{}, err
	}
	q := r.URL.Query()
	p := page{Title: h.cfg.Title, Base: base(r.URL.Path), CSRF: tok, Flash: readFlash(tok, q.Get("flash"), time.Now())}
	q.Del("flash")
	last := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	p.RefreshURL = "./" + last
	if len(q) > 0 {
		p.RefreshURL += "?" + q.Encode()
	}
	return p, nil
}

// base returns the relative path from path to the dashboard's root.
func base(path string) string {
	depth := strings.Count(strings.TrimPrefix(path, "/"), "/")
	if depth == 0 {
		return "./"
	}
	return strings.Repeat("../", depth)
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var b strings.Builder
	if err := h.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		h.cfg.Logger.Error("txoutbox: dashboard: rendering", "template", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(b.String()))
	}
}

// errorPage is the data of the error template.
type errorPage struct {
	page
	Status  int
	Message string
	Detail  string
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string, err error) {
	p := page{Title: h.cfg.Title, Base: base(r.URL.Path)}
	ep := errorPage{page: p, Status: status, Message: msg}
	if err != nil {
		ep.Detail = err.Error()
		h.cfg.Logger.Warn("txoutbox: dashboard: "+msg, "path", r.URL.Path, "error", err)
	}
	h.render(w, r, status, "error.html", ep)
}

func (h *Handler) style(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(h.css)
}

// overviewPage is the data of the overview.
type overviewPage struct {
	page
	Window      time.Duration
	Totals      totals
	Topics      []topicRow
	Chart       chart
	Running     []runningRow
	RunningMore bool
	Dead        []deadRow
	DeadTopic   string
	DeadBefore  int64 // the page's cursor, 0 for the newest
	DeadNext    int64 // cursor of the next page, 0 for none
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var before int64
	if s := q.Get("before"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			h.fail(w, r, http.StatusBadRequest, "The page cursor must be a positive integer.", nil)
			return
		}
		before = v
	}
	p, err := h.newPage(w, r)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The page could not be prepared.", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	data, err := h.load(ctx, q.Get("topic"), before)
	if err != nil {
		h.fail(w, r, http.StatusServiceUnavailable, "The database could not be read.", err)
		return
	}
	now := data.Now // the database's clock
	data.page = p
	data.Now = now
	if h.cfg.Refresh > 0 {
		data.Refresh = int(h.cfg.Refresh / time.Second)
	}
	h.render(w, r, http.StatusOK, "overview.html", data)
}

// entryPage is the data of an entry's page.
type entryPage struct {
	page
	Entry   *outbox.Entry
	Payload string
	Cut     bool // the payload was cut to maxPayloadShown
	Result  string
	Headers []header
}

type header struct{ Key, Value string }

func (h *Handler) entry(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		h.fail(w, r, http.StatusBadRequest, "An entry id is a positive integer.", nil)
		return
	}
	p, err := h.newPage(w, r)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The page could not be prepared.", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	e, err := outbox.Get(ctx, h.db, id)
	if errors.Is(err, outbox.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("Entry %d does not exist (it was discarded, or retention removed it).", id), nil)
		return
	}
	if err != nil {
		h.fail(w, r, http.StatusServiceUnavailable, "The database could not be read.", err)
		return
	}
	ep := entryPage{page: p, Entry: e}
	ep.Payload, ep.Cut = pretty(e.Payload, maxPayloadShown)
	ep.Result, _ = pretty(e.Result, maxPayloadShown)
	for k, v := range e.Headers {
		ep.Headers = append(ep.Headers, header{k, v})
	}
	sortHeaders(ep.Headers)
	if h.cfg.Refresh > 0 && !e.State.Finished() {
		ep.Refresh = int(h.cfg.Refresh / time.Second)
	}
	ep.Now = time.Now()
	h.render(w, r, http.StatusOK, "entry.html", ep)
}

// action parses an action's form and checks it, returning the browser's
// CSRF token (which signs the flash message); it answers and returns false
// when the action is refused.
func (h *Handler) action(w http.ResponseWriter, r *http.Request) (tok string, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, http.StatusBadRequest, "The form could not be read.", err)
		return "", false
	}
	tok, err := h.checkAction(r)
	if err != nil {
		h.cfg.Logger.Warn("txoutbox: dashboard: action refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"),
			"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "error", err)
		h.fail(w, r, http.StatusForbidden, "The action was refused: it did not come from this dashboard's own page. Reload the page and try again.", nil)
		return "", false
	}
	return tok, true
}

// formID reads the form's id field; ok is false when it is absent.
func formID(r *http.Request) (id int64, ok bool, err error) {
	s := r.PostForm.Get("id")
	if s == "" {
		return 0, false, nil
	}
	id, err = strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, true, fmt.Errorf("id %q is not a positive integer", s)
	}
	return id, true, nil
}

// retry returns one dead entry (form field id) or every dead entry of a
// topic (form field topic) to pending.
func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	tok, ok := h.action(w, r)
	if !ok {
		return
	}
	id, hasID, err := formID(r)
	topic := r.PostForm.Get("topic")
	switch {
	case err != nil:
		h.fail(w, r, http.StatusBadRequest, "The entry to retry is not valid.", err)
		return
	case hasID == (topic != ""):
		h.fail(w, r, http.StatusBadRequest, "Name either an entry or a topic to retry.", nil)
		return
	}
	sel := outbox.Selection{Topic: topic}
	if hasID {
		sel = outbox.Selection{IDs: []int64{id}}
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	n, err := outbox.Replay(ctx, h.db, sel)
	if err != nil {
		h.fail(w, r, http.StatusServiceUnavailable, "The entries could not be retried.", err)
		return
	}
	h.cfg.Logger.Info("txoutbox: dashboard: retried dead entries", "id", id, "topic", topic, "count", n)
	fl := signFlash(tok, flashRetried, n, time.Now())
	if hasID {
		seeOther(w, fmt.Sprintf("entries/%d?flash=%s", id, fl))
		return
	}
	seeOther(w, "./?flash="+fl)
}

// discard deletes one dead entry (form field id).
func (h *Handler) discard(w http.ResponseWriter, r *http.Request) {
	tok, ok := h.action(w, r)
	if !ok {
		return
	}
	id, hasID, err := formID(r)
	if err != nil || !hasID {
		h.fail(w, r, http.StatusBadRequest, "Name the entry to discard.", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	n, err := outbox.Discard(ctx, h.db, outbox.Selection{IDs: []int64{id}})
	if err != nil {
		h.fail(w, r, http.StatusServiceUnavailable, "The entry could not be discarded.", err)
		return
	}
	h.cfg.Logger.Info("txoutbox: dashboard: discarded a dead entry", "id", id, "count", n)
	seeOther(w, "./?flash="+signFlash(tok, flashDiscarded, n, time.Now()))
}

// seeOther redirects to a path relative to the action's URL, which is at
// the dashboard's root; http.Redirect would resolve it against the
// stripped path instead.
func seeOther(w http.ResponseWriter, rel string) {
	w.Header().Set("Location", rel)
	w.WriteHeader(http.StatusSeeOther)
}

// pretty indents JSON for display, cut to max bytes.
func pretty(raw json.RawMessage, max int) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var b bytes.Buffer
	s := string(raw)
	if json.Indent(&b, raw, "", "  ") == nil {
		s = b.String()
	}
	if len(s) > max {
		return s[:max], true
	}
	return s, false
}
