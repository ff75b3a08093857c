package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/relay"
)

// statusServer answers every request with the status code in its path
// ("/503"), and the Retry-After query parameter as Retry-After.
func statusServer(t *testing.T) *receiver {
	return newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			code = http.StatusTeapot
		}
		if ra := r.URL.Query().Get("retry_after"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/elsewhere/secret-path")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("answer\x00 of\n\n the receiver"))
	})
}

// adHoc is a config that allows ad-hoc URLs on loopback.
func adHoc(t *testing.T) webhook.Config {
	return webhook.Config{AdHoc: &webhook.Endpoint{Secrets: []string{newSecret(t)}}, AllowPrivateNetworks: true}
}

func TestStatusClassification(t *testing.T) {
	t.Parallel()
	rc := statusServer(t)
	h := newHandler(t, adHoc(t))
	const (
		done = iota
		retry
		permanent
	)
	for _, tc := range []struct {
		code int
		want int
	}{
		{200, done}, {201, done}, {202, done}, {204, done},
		{301, permanent}, {302, permanent}, {303, permanent}, {307, permanent}, {308, permanent},
		{400, permanent}, {401, permanent}, {403, permanent}, {404, permanent}, {410, permanent}, {413, permanent}, {422, permanent},
		{408, retry}, {409, retry}, {425, retry}, {429, retry},
		{500, retry}, {502, retry}, {503, retry}, {504, retry},
	} {
		e := entry("k-"+strconv.Itoa(tc.code), webhook.Event{URL: rc.srv.URL + "/" + strconv.Itoa(tc.code), Type: "t"})
		err := h.Handle(context.Background(), e)
		var serr *webhook.StatusError
		switch {
		case tc.want == done && err != nil:
			t.Errorf("%d: %v; want done", tc.code, err)
		case tc.want == done:
			continue
		case !errors.As(err, &serr) || serr.StatusCode != tc.code:
			t.Errorf("%d: %v; want a *StatusError with the code", tc.code, err)
		case (tc.want == permanent) != isPermanent(err):
			t.Errorf("%d: permanent = %v; want %v (%v)", tc.code, isPermanent(err), tc.want == permanent, err)
		case serr.Body != "answer of the receiver":
			t.Errorf("%d: body snippet %q; want the body on one printable line", tc.code, serr.Body)
		}
	}
}

// The 2xx status is recorded as the entry's result (checked through the
// relay in TestResultIsRecorded); Handle returns nil for it.

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	t.Parallel()
	rc := statusServer(t)
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	cfg := adHoc(t)
	cfg.Clock = func() time.Time { return now }
	cfg.MaxRetryAfter = 6 * time.Hour
	h := newHandler(t, cfg)
	for _, tc := range []struct {
		path, header string
		want         time.Duration // 0: no hint, the retry policy decides
	}{
		{"/429", "120", 2 * time.Minute},
		{"/503", "120", 2 * time.Minute},
		{"/429", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"/503", "9999999999", 6 * time.Hour},
		{"/503", now.Add(48 * time.Hour).Format(http.TimeFormat), 6 * time.Hour},
		{"/429", "0", 0},
		{"/429", "-5", 0},
		{"/429", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"/503", "soon", 0},
		{"/503", "", 0},
	} {
		u := rc.srv.URL + tc.path + "?retry_after=" + url.QueryEscape(tc.header)
		err := h.Handle(context.Background(), entry("k", webhook.Event{URL: u, Type: "t"}))
		var ra *relay.RetryAfterError
		hinted := errors.As(err, &ra)
		switch {
		case err == nil || isPermanent(err):
			t.Errorf("%s Retry-After %q: %v; want a retryable error", tc.path, tc.header, err)
		case tc.want == 0 && hinted:
			t.Errorf("%s Retry-After %q: hint %s; want none", tc.path, tc.header, ra.After)
		case tc.want != 0 && (!hinted || ra.After != tc.want):
			t.Errorf("%s Retry-After %q: %v; want a hint of %s", tc.path, tc.header, err, tc.want)
		}
	}
}

func TestSlowEndpointHitsTheTimeout(t *testing.T) {
	t.Parallel()
	var rc *receiver
	rc = newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) { rc.hang(r) })
	cfg := oneEndpoint(rc.srv.URL, newSecret(t))
	cfg.Timeout = 100 * time.Millisecond // the receiver waits until the test ends
	h := newHandler(t, cfg)
	err := h.Handle(context.Background(), entry("k-slow", webhook.Event{Endpoint: "recv", Type: "t"}))
	if !errors.Is(err, webhook.ErrTimeout) || isPermanent(err) {
		t.Fatalf("%v; want a retryable ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), `endpoint "recv"`) {
		t.Errorf("the error does not name the endpoint: %v", err)
	}
	if rc.count() != 1 {
		t.Fatalf("%d requests reached the receiver; want 1", rc.count())
	}
}

// The attempt's own context (the relay's per-attempt timeout, a lost
// lease, shutdown) cancels the request too, with its cause.
func TestAttemptContextCancelsTheRequest(t *testing.T) {
	t.Parallel()
	var rc *receiver
	rc = newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) { rc.hang(r) })
	h := newHandler(t, oneEndpoint(rc.srv.URL, newSecret(t)))
	ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, relay.ErrHandlerTimeout)
	defer cancel()
	err := h.Handle(ctx, entry("k-cancel", webhook.Event{Endpoint: "recv", Type: "t"}))
	if !errors.Is(err, relay.ErrHandlerTimeout) || errors.Is(err, webhook.ErrTimeout) || isPermanent(err) {
		t.Fatalf("%v; want a retryable error with the attempt's cause", err)
	}
}

func TestResponseBodyReadIsCapped(t *testing.T) {
	t.Parallel()
	var rc *receiver
	rc = newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		chunk := []byte(strings.Repeat("x", 32<<10))
		for { // endless: only a capped reader gets to the end of Handle
			select {
			case <-rc.stop:
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	cfg := oneEndpoint(rc.srv.URL, newSecret(t))
	cfg.MaxResponseBytes = 4 << 10
	cfg.Timeout = hangGuard // a guard only: reaching it would mean the cap failed
	h := newHandler(t, cfg)

	err := h.Handle(context.Background(), entry("k-big", webhook.Event{Endpoint: "recv", Type: "t"}))
	var serr *webhook.StatusError
	if !errors.As(err, &serr) || serr.StatusCode != 500 {
		t.Fatalf("%v; want the 500 status error", err)
	}
	if len(serr.Body) != 512 || strings.Trim(serr.Body, "x") != "" {
		t.Fatalf("snippet of %d bytes; want the first 512", len(serr.Body))
	}
	if err := h.Handle(context.Background(), entry("k-big-ok", webhook.Event{Endpoint: "recv", Type: "t"})); err != nil {
		t.Fatalf("a 2xx with an endless body: %v; want done", err)
	}
}

func TestRedirectsAreNotFollowedByDefault(t *testing.T) {
	t.Parallel()
	target := newReceiver(t, nil)
	for _, code := range []int{301, 302, 303, 307, 308} {
		redirector := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			http.Redirect(w, r, target.srv.URL+"/moved/token-123", code)
		})
		h := newHandler(t, oneEndpoint(redirector.srv.URL, newSecret(t)))
		err := h.Handle(context.Background(), entry("k-redirect", webhook.Event{Endpoint: "recv", Type: "t"}))
		var serr *webhook.StatusError
		if !errors.As(err, &serr) || serr.StatusCode != code || !isPermanent(err) {
			t.Errorf("%d: %v; want a permanent *StatusError", code, err)
			continue
		}
		if want := target.srv.URL + "/…"; serr.Location != want {
			t.Errorf("%d: Location %q; want %q (scheme and host only)", code, serr.Location, want)
		}
		if strings.Contains(err.Error(), "token-123") {
			t.Errorf("%d: the error shows the redirect's path: %v", code, err)
		}
	}
	if n := target.count(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// Within the endpoint's origin, FollowRedirects follows 307 and 308 only,
// with the method, body, headers and signature.
func TestFollowRedirectsFollowsOnly307And308(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	for _, tc := range []struct {
		code   int
		follow bool
	}{{301, false}, {302, false}, {303, false}, {307, true}, {308, true}} {
		rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			if r.URL.Path == "/moved" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			http.Redirect(w, r, "/moved", tc.code)
		})
		cfg := oneEndpoint(rc.srv.URL+"/hook", secret)
		cfg.Endpoints["recv"] = webhook.Endpoint{URL: rc.srv.URL + "/hook", Secrets: []string{secret}, Headers: map[string]string{"X-Api-Key": "k-123"}}
		cfg.FollowRedirects = true
		h := newHandler(t, cfg)
		err := h.Handle(context.Background(), entry("k-follow", webhook.Event{Endpoint: "recv", Type: "t", Data: json.RawMessage(`{"a":1}`)}))
		reqs := rc.requests()
		followed := len(reqs) == 2
		if followed != tc.follow || (tc.follow && err != nil) || (!tc.follow && !isPermanent(err)) {
			t.Errorf("%d: followed %v, err %v; want followed %v", tc.code, followed, err, tc.follow)
			continue
		}
		if !followed {
			continue
		}
		got := reqs[1]
		if got.Method != "POST" || got.Path != "/moved" || got.Header.Get("X-Api-Key") != "k-123" {
			t.Errorf("%d: after the redirect: %s %s with X-Api-Key %q; want POST /moved with the endpoint's header", tc.code, got.Method, got.Path, got.Header.Get("X-Api-Key"))
		}
		if err := verify(secret, got.Header, got.Body, time.Now(), time.Minute); err != nil {
			t.Errorf("%d: after the redirect: %v", tc.code, err)
		}
	}
}

// A 307 or 308 to another origin is not followed, even with
// FollowRedirects: the endpoint's headers (an API key) and the signature
// never reach another host. Another origin is another scheme, host name
// or port: a second server on the same loopback address is one, and so is
// the same server under another name.
func TestRedirectToAnotherOriginIsRefused(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	other := newReceiver(t, nil)
	otherURL, err := url.Parse(other.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{307, 308} {
		for _, tc := range []struct {
			name   string
			target func(self *url.URL) string // the Location, given the redirecting server's URL
			to     func(self *url.URL) string // the RedirectError's To
		}{
			{"another port", func(*url.URL) string { return other.srv.URL + "/steal" },
				func(*url.URL) string { return "http://" + otherURL.Host }},
			{"another host name", func(self *url.URL) string { return "http://localhost:" + self.Port() + "/steal" },
				func(self *url.URL) string { return "http://localhost:" + self.Port() }},
		} {
			var self *url.URL
			rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
				if r.URL.Path == "/steal" {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				http.Redirect(w, r, tc.target(self), code)
			})
			self, err = url.Parse(rc.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			cfg := oneEndpoint(rc.srv.URL, secret)
			cfg.Endpoints["recv"] = webhook.Endpoint{URL: rc.srv.URL + "/hook", Secrets: []string{secret}, Headers: map[string]string{"X-Api-Key": "k-123"}}
			cfg.FollowRedirects = true
			h := newHandler(t, cfg)
			before := other.count()
			err := h.Handle(context.Background(), entry("k-cross", webhook.Event{Endpoint: "recv", Type: "t"}))
			var rerr *webhook.RedirectError
			switch {
			case !errors.Is(err, webhook.ErrCrossOriginRedirect) || !errors.As(err, &rerr) || !isPermanent(err):
				t.Errorf("%d, %s: %v; want a permanent *RedirectError", code, tc.name, err)
			case rerr.StatusCode != code || rerr.From != "http://"+self.Host || rerr.To != tc.to(self):
				t.Errorf("%d, %s: %+v; want %d from http://%s to %s", code, tc.name, rerr, code, self.Host, tc.to(self))
			case strings.Contains(err.Error(), "steal"):
				t.Errorf("%d, %s: the error shows the redirect's path: %v", code, tc.name, err)
			}
			if n := other.count() - before; n != 0 {
				t.Errorf("%d, %s: the other server got %d requests", code, tc.name, n)
			}
			if reqs := rc.requests(); len(reqs) != 1 || reqs[0].Path != "/hook" {
				t.Errorf("%d, %s: the endpoint's server got %d requests; want just the first", code, tc.name, len(reqs))
			}
		}
	}
}

func TestInvalidEventsAreDeadLetteredWithoutARequest(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	named := oneEndpoint(rc.srv.URL, newSecret(t))
	withAdHoc := oneEndpoint(rc.srv.URL, newSecret(t))
	withAdHoc.AdHoc = &webhook.Endpoint{Secrets: []string{newSecret(t)}}
	for _, tc := range []struct {
		name string
		cfg  webhook.Config
		ev   webhook.Event
		want error
	}{
		{"unknown endpoint", named, webhook.Event{Endpoint: "nope", Type: "t"}, webhook.ErrUnknownEndpoint},
		{"URL without AdHoc", named, webhook.Event{URL: rc.srv.URL, Type: "t"}, webhook.ErrAdHocNotAllowed},
		{"both endpoint and URL", withAdHoc, webhook.Event{Endpoint: "recv", URL: rc.srv.URL, Type: "t"}, webhook.ErrInvalidEvent},
		{"neither", named, webhook.Event{Type: "t"}, webhook.ErrInvalidEvent},
		{"no type", named, webhook.Event{Endpoint: "recv"}, webhook.ErrInvalidEvent},
		{"data not JSON", named, webhook.Event{Endpoint: "recv", Type: "t", Data: json.RawMessage(`{nope`)}, webhook.ErrInvalidEvent},
		{"ad-hoc URL not http", withAdHoc, webhook.Event{URL: "file:///etc/passwd", Type: "t"}, webhook.ErrInvalidURL},
		{"ad-hoc URL relative", withAdHoc, webhook.Event{URL: "/hooks", Type: "t"}, webhook.ErrInvalidEvent},
	} {
		h := newHandler(t, tc.cfg)
		err := h.Handle(context.Background(), entry("k", tc.ev))
		if !errors.Is(err, tc.want) || !isPermanent(err) {
			t.Errorf("%s: %v; want a permanent %v", tc.name, err, tc.want)
		}
	}
	if n := rc.count(); n != 0 {
		t.Fatalf("%d requests sent for invalid events", n)
	}
}

func TestHeadersAndAdHocSecrets(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	named, adhocSecret := newSecret(t), newSecret(t)
	cfg := webhook.Config{
		Endpoints: map[string]webhook.Endpoint{"recv": {
			URL: rc.srv.URL, Secrets: []string{named},
			Headers: map[string]string{"Authorization": "Bearer abc", "X-Tenant": "42"},
		}},
		AdHoc:                &webhook.Endpoint{Secrets: []string{adhocSecret}, Headers: map[string]string{"X-Ad-Hoc": "yes"}},
		AllowPrivateNetworks: true,
		UserAgent:            "acme-hooks/2",
	}
	h := newHandler(t, cfg)
	for _, ev := range []webhook.Event{{Endpoint: "recv", Type: "t"}, {URL: rc.srv.URL + "/customer-7", Type: "t"}} {
		if err := h.Handle(context.Background(), entry("k", ev)); err != nil {
			t.Fatal(err)
		}
	}
	reqs := rc.requests()
	if g := reqs[0].Header; g.Get("Authorization") != "Bearer abc" || g.Get("X-Tenant") != "42" || g.Get("User-Agent") != "acme-hooks/2" || g.Get("X-Ad-Hoc") != "" {
		t.Errorf("named endpoint headers %v", g)
	}
	if g := reqs[1].Header; g.Get("X-Ad-Hoc") != "yes" || g.Get("Authorization") != "" || reqs[1].Path != "/customer-7" {
		t.Errorf("ad-hoc request %s headers %v", reqs[1].Path, g)
	}
	if err := verify(named, reqs[0].Header, reqs[0].Body, time.Now(), time.Minute); err != nil {
		t.Errorf("named endpoint: %v", err)
	}
	if err := verify(adhocSecret, reqs[1].Header, reqs[1].Body, time.Now(), time.Minute); err != nil {
		t.Errorf("ad-hoc: %v", err)
	}
}

// Endpoint URLs may carry tokens in their path or query: errors name the
// endpoint and host only.
func TestErrorsDoNotShowTheURL(t *testing.T) {
	t.Parallel()
	rc := statusServer(t)
	closed := newReceiver(t, nil)
	closedURL := closed.srv.URL
	closed.srv.Close() // connection refused from now on
	h := newHandler(t, webhook.Config{
		Endpoints: map[string]webhook.Endpoint{
			"status": {URL: rc.srv.URL + "/500?token=tok-secret-1", Secrets: []string{newSecret(t)}},
			"down":   {URL: closedURL + "/tok-secret-2", Secrets: []string{newSecret(t)}},
		},
		AllowPrivateNetworks: true,
	})
	for _, name := range []string{"status", "down"} {
		err := h.Handle(context.Background(), entry("k", webhook.Event{Endpoint: name, Type: "t"}))
		if err == nil || isPermanent(err) {
			t.Fatalf("%s: %v; want a retryable error", name, err)
		}
		if msg := err.Error(); strings.Contains(msg, "tok-secret") || !strings.Contains(msg, `endpoint "`+name+`"`) {
			t.Errorf("%s: %q; want the endpoint's name and no URL", name, msg)
		}
	}
}
