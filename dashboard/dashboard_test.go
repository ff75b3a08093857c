package dashboard_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/dashboard"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

func TestOverviewShowsTopicsRunningAndDead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dashboard.Config{})
	dead := f.deadInvoice(t, "INV-7")
	res, err := outbox.Enqueue(t.Context(), f.db.Pool, receipt{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.rec.Wait(t, res.ID, relay.EventDone)
	// A running entry, leased by a relay that does not exist.
	if _, err := f.db.Pool.Exec(t.Context(), `INSERT INTO outbox_entries (topic, queue, state, attempt, lease_until, lease_owner)
		VALUES ('report.build', 'bulk', 'running', 1, now() + interval '42 seconds', 'relay-on-host-b')`); err != nil {
		t.Fatal(err)
	}

	c := f.client(t)
	resp, body := c.get("")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{
		fmt.Sprintf(`id="dead-%d"`, dead),
		`template &#34;invoice.html&#34; not found`, // the dead entry's error, escaped
		`<strong>invoice.render</strong>`,
		`<strong>receipt.send</strong>`,
		`Retry all dead of invoice.render`,
		`relay-on-host-b`, // the running entry's lease owner
		`<meta name="viewport"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if got := resp.Header.Get("Content-Security-Policy"); !strings.Contains(got, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", got)
	}

	resp, body = c.get(fmt.Sprintf("entries/%d", dead))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-state="dead"`) || !strings.Contains(body, "INV-7") {
		t.Fatalf("entry page: %s\n%s", resp.Status, body)
	}
	if resp, _ := c.get("entries/999999"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing entry: %s, want 404", resp.Status)
	}
	if resp, _ := c.get("nowhere"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown page: %s, want 404", resp.Status)
	}
}

func TestRetryOneRunsTheEntryAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dashboard.Config{})
	id := f.deadInvoice(t, "INV-8")
	f.broken.Store(false)

	c := f.client(t)
	tok := c.token()
	resp, body := c.post("retry", url.Values{"csrf": {tok}, "id": {fmt.Sprint(id)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST retry: %s\n%s", resp.Status, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, fmt.Sprintf("entries/%d?flash=retried.1.", id)) {
		t.Errorf("Location = %q", loc)
	}
	f.rec.Wait(t, id, relay.EventDone)
	_, body = c.get(loc)
	for _, want := range []string{`data-state="done"`, `invoices/INV-8.pdf`, `Returned 1 dead entry to pending`} {
		if !strings.Contains(body, want) {
			t.Errorf("entry page after retry lacks %q", want)
		}
	}
}

func TestRetryTopicAndDiscard(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dashboard.Config{})
	a := f.deadInvoice(t, "INV-1")
	b := f.deadInvoice(t, "INV-2")
	c := f.client(t)
	tok := c.token()

	resp, _ := c.post("discard", url.Values{"csrf": {tok}, "id": {fmt.Sprint(a)}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "./?flash=discarded.1.") {
		t.Fatalf("POST discard: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	if _, err := outbox.Get(t.Context(), f.db.Pool, a); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("discarded entry: %v, want ErrNotFound", err)
	}

	f.broken.Store(false)
	resp, _ = c.post("retry", url.Values{"csrf": {tok}, "topic": {"invoice.render"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "./?flash=retried.1.") {
		t.Fatalf("POST retry topic: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	f.rec.Wait(t, b, relay.EventDone)

	for _, bad := range []url.Values{
		{"csrf": {tok}}, // neither id nor topic
		{"csrf": {tok}, "id": {"7"}, "topic": {"invoice.render"}}, // both
		{"csrf": {tok}, "id": {"x"}},
	} {
		if resp, _ := c.post("retry", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST retry %v: %s, want 400", bad, resp.Status)
		}
	}
}

// TestActionsRefuseUnauthenticatedRequests: no credentials, wrong ones, or
// a bearer token where Basic is configured: 401 with a challenge, and the
// entry stays dead.
func TestActionsRefuseUnauthenticatedRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dashboard.Config{})
	id := f.deadInvoice(t, "INV-9")
	f.broken.Store(false)
	tok := f.client(t).token()

	for name, setup := range map[string]func(c *client){
		"no credentials":   func(c *client) { c.user = "" },
		"wrong password":   func(c *client) { c.pass = "guess" },
		"wrong user":       func(c *client) { c.user = "admin" },
		"bearer not basic": func(c *client) { c.user = ""; c.header.Set("Authorization", "Bearer "+testPassword) },
	} {
		c := f.client(t)
		setup(c)
		for _, path := range []string{"retry", "discard"} {
			resp, _ := c.post(path, url.Values{"csrf": {tok}, "id": {fmt.Sprint(id)}})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: POST %s: %s, want 401", name, path, resp.Status)
			}
			if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") {
				t.Errorf("%s: WWW-Authenticate = %q", name, ch)
			}
		}
		if resp, _ := c.get(""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: GET overview: %s, want 401", name, resp.Status)
		}
	}
	if got := state(t, f, id); got != outbox.StateDead {
		t.Fatalf("entry state after refused actions = %s, want dead", got)
	}
}

// TestActionsRefuseCrossSiteRequests: an authenticated browser (credentials
// attached automatically, as browsers do for Basic auth) tricked into
// posting from another site is refused with 403, and so are posts without
// the page's token; the entry stays dead.
func TestActionsRefuseCrossSiteRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dashboard.Config{})
	id := f.deadInvoice(t, "INV-10")
	f.broken.Store(false)
	form := func(tok string) url.Values { return url.Values{"csrf": {tok}, "id": {fmt.Sprint(id)}} }

	cases := []struct {
		name   string
		header map[string]string
		token  func(c *client) string
	}{
		{"cross-site fetch metadata", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, (*client).token},
		{"same-site fetch metadata", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.test"}, (*client).token},
		{"foreign Origin without fetch metadata", map[string]string{"Origin": "https://evil.example"}, (*client).token},
		{"no token", map[string]string{"Sec-Fetch-Site": "same-origin"}, func(*client) string { return "" }},
		{"forged token", map[string]string{"Sec-Fetch-Site": "same-origin"}, func(*client) string { return strings.Repeat("A", 43) }},
	}
	for _, tc := range cases {
		c := f.client(t)
		tok := tc.token(c)
		for k, v := range tc.header {
			c.header.Set(k, v)
		}
		for _, path := range []string{"retry", "discard"} {
			resp, body := c.post(path, form(tok))
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: POST %s: %s, want 403\n%s", tc.name, path, resp.Status, body)
			}
		}
	}
	// Another client's token with this client's cookie: refused too.
	other := f.client(t).token()
	c := f.client(t)
	c.token()
	if resp, _ := c.post("retry", form(other)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("token of another session: %s, want 403", resp.Status)
	}
	if got := state(t, f, id); got != outbox.StateDead {
		t.Fatalf("entry state after refused actions = %s, want dead", got)
	}

	// The same action from the dashboard's own page goes through.
	c = f.client(t)
	c.header.Set("Sec-Fetch-Site", "same-origin")
	c.header.Set("Origin", f.srv.URL)
	if resp, body := c.post("retry", form(c.token())); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin retry: %s\n%s", resp.Status, body)
	}
	f.rec.Wait(t, id, relay.EventDone)
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	auth := dashboard.BearerToken("t")
	for _, tc := range []struct {
		name, field string
		cfg         dashboard.Config
	}{
		{"no auth", "Auth", dashboard.Config{}},
		{"short window", "Window", dashboard.Config{Auth: auth, Window: time.Second}},
		{"fast refresh", "Refresh", dashboard.Config{Auth: auth, Refresh: time.Millisecond}},
		{"huge dead limit", "DeadLimit", dashboard.Config{Auth: auth, DeadLimit: dashboard.MaxListLimit + 1}},
		{"negative running limit", "RunningLimit", dashboard.Config{Auth: auth, RunningLimit: -1}},
		{"bad origin", "TrustedOrigins", dashboard.Config{Auth: auth, TrustedOrigins: []string{"not a url"}}},
	} {
		_, err := dashboard.New(db.Pool, tc.cfg)
		checkConfigError(t, tc.name, err, tc.field)
	}
	_, err := dashboard.New(nil, dashboard.Config{Auth: auth})
	checkConfigError(t, "nil database", err, "db")
}

func checkConfigError(t *testing.T, name string, err error, field string) {
	t.Helper()
	var ce *dashboard.ConfigError
	if !errors.Is(err, dashboard.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != field {
		t.Errorf("%s: New = %v, want ErrInvalidConfig naming %s", name, err, field)
		return
	}
	if !strings.HasPrefix(err.Error(), "dashboard: invalid config "+field+": ") {
		t.Errorf("%s: message %q", name, err)
	}
}

func TestAuthHelpers(t *testing.T) {
	t.Parallel()
	req := func(set func(r *http.Request)) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		set(r)
		return r
	}
	basic := dashboard.BasicAuth("u", "p")
	bearer := dashboard.BearerToken("tok")
	either := dashboard.AnyOf(bearer, basic)
	cases := []struct {
		name string
		auth dashboard.Auth
		r    *http.Request
		want bool
	}{
		{"basic ok", basic, req(func(r *http.Request) { r.SetBasicAuth("u", "p") }), true},
		{"basic wrong", basic, req(func(r *http.Request) { r.SetBasicAuth("u", "q") }), false},
		{"basic none", basic, req(func(*http.Request) {}), false},
		{"empty basic accepts nothing", dashboard.BasicAuth("", ""), req(func(r *http.Request) { r.SetBasicAuth("", "") }), false},
		{"bearer ok", bearer, req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }), true},
		{"bearer case-insensitive scheme", bearer, req(func(r *http.Request) { r.Header.Set("Authorization", "bearer tok") }), true},
		{"bearer wrong", bearer, req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok2") }), false},
		{"empty bearer accepts nothing", dashboard.BearerToken(""), req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }), false},
		{"any of: basic", either, req(func(r *http.Request) { r.SetBasicAuth("u", "p") }), true},
		{"any of: bearer", either, req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }), true},
		{"func", dashboard.AuthFunc(func(r *http.Request) bool { return r.Header.Get("X-User") == "ada" }), req(func(r *http.Request) { r.Header.Set("X-User", "ada") }), true},
	}
	for _, tc := range cases {
		if got := tc.auth.Authorize(tc.r); got != tc.want {
			t.Errorf("%s: Authorize = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := either.Challenge(); !strings.HasPrefix(got, "Bearer ") {
		t.Errorf("AnyOf challenge = %q, want the first non-empty", got)
	}
}
