package dashboard_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/dashboard"
	"github.com/txoutbox/txoutbox/relay"
)

// TestFlashShowsOnlyTheServersMessages: the message after an action is
// shown to the browser that took the action, by the redirect the server
// made; a crafted link — a count, a text, a forged or altered signature,
// or another browser's genuine link — shows no message at all.
func TestFlashShowsOnlyTheServersMessages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dashboard.Config{})
	id := f.deadInvoice(t, "INV-11")
	c := f.client(t)
	tok := c.token()
	entry := fmt.Sprintf("entries/%d", id)
	now := fmt.Sprint(time.Now().Unix())

	crafted := []string{
		"flash=retried&n=999999",
		"flash=discarded&n=31337",
		"flash=retried&n=-4",
		"flash=" + url.QueryEscape("<b>Your password expired</b>"),
		"flash=" + url.QueryEscape("Call +1 555 0100 now"),
		"flash=retried.999999." + now + "." + strings.Repeat("A", 43),
		"flash=retried.999999." + now + "." + tok, // the CSRF token is not a signature
	}
	for _, q := range crafted {
		for _, page := range []string{"", entry} {
			resp, body := c.get(page + "?" + q)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s?%s: %s", page, q, resp.Status)
			}
			// (The count may echo in the page's own reload link, which
			// keeps unknown query parameters; it must not show as text.)
			if strings.Contains(body, `class="flash"`) || strings.Contains(body, "to pending, with") || strings.Contains(body, "for good.") ||
				strings.Contains(body, "password expired") || strings.Contains(body, "555 0100") {
				t.Errorf("GET %s?%s shows a message the server did not make:\n%s", page, q, flashOf(body))
			}
		}
	}

	// The genuine message, from the server's redirect.
	f.broken.Store(false)
	resp, _ := c.post("retry", url.Values{"csrf": {tok}, "id": {fmt.Sprint(id)}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 303 || !strings.HasPrefix(loc, entry+"?flash=") {
		t.Fatalf("POST retry: %s, Location %q", resp.Status, loc)
	}
	f.rec.Wait(t, id, relay.EventDone)
	if _, body := c.get(loc); !strings.Contains(flashOf(body), "Returned 1 dead entry to pending") {
		t.Errorf("after retry the entry page shows %q, want the retry's message", flashOf(body))
	}
	// The same link in another browser, or with its count changed: nothing.
	other := f.client(t)
	other.get("") // its own CSRF cookie
	if _, body := other.get(loc); flashOf(body) != "" {
		t.Errorf("another browser's flash link shows %q", flashOf(body))
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	v := u.Query().Get("flash")
	parts := strings.Split(v, ".")
	if len(parts) != 4 {
		t.Fatalf("flash value %q: want kind.count.time.signature", v)
	}
	for _, altered := range []string{
		strings.Join([]string{parts[0], "999999", parts[2], parts[3]}, "."),
		strings.Join([]string{"discarded", parts[1], parts[2], parts[3]}, "."),
		strings.Join([]string{parts[0], parts[1], fmt.Sprint(time.Now().Add(time.Hour).Unix()), parts[3]}, "."),
	} {
		if _, body := c.get(entry + "?flash=" + url.QueryEscape(altered)); flashOf(body) != "" {
			t.Errorf("altered flash %q shows %q", altered, flashOf(body))
		}
	}
}

// flashOf returns the flash message of a page, or "".
func flashOf(body string) string {
	_, after, ok := strings.Cut(body, `class="flash"`)
	if !ok {
		return ""
	}
	_, msg, _ := strings.Cut(after, ">")
	msg, _, _ = strings.Cut(msg, "<")
	return msg
}
