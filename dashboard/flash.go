package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Flash messages say what an action did ("Returned 3 dead entries to
// pending") on the page the action redirects to. The page shows only a
// message the server made for this browser: the redirect carries
// ?flash=<kind>.<count>.<unix time>.<signature>, where the signature is an
// HMAC-SHA256 of the rest keyed with the browser's CSRF token (the
// HttpOnly, SameSite=Strict cookie of csrf.go). A link someone else
// crafted — another count, another text, or a genuine link of their own
// browser — carries no signature this browser's token verifies, and the
// page shows no message. A signed value is good for flashTTL, which covers
// the redirect and a reload; the self-reloading pages drop it.

// flashTTL bounds how long a signed flash value is shown.
const flashTTL = time.Minute

// Kinds of flash message.
const (
	flashRetried   = "retried"
	flashDiscarded = "discarded"
)

// signFlash returns the ?flash= value for an action of kind that changed n
// entries, for the browser whose CSRF token is tok.
func signFlash(tok, kind string, n int64, now time.Time) string {
	body := fmt.Sprintf("%s.%d.%d", kind, n, now.Unix())
	return body + "." + flashMAC(tok, body)
}

// readFlash returns the message of a ?flash= value signed for tok within
// flashTTL of now, or "" for any other value.
func readFlash(tok, v string, now time.Time) string {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || tok == "" {
		return ""
	}
	body, sig := v[:i], v[i+1:]
	if !hmac.Equal([]byte(sig), []byte(flashMAC(tok, body))) {
		return ""
	}
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		return ""
	}
	n, err1 := strconv.ParseInt(parts[1], 10, 64)
	at, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || n < 0 {
		return ""
	}
	if age := now.Sub(time.Unix(at, 0)); age > flashTTL || age < -flashTTL {
		return ""
	}
	return flashMessage(parts[0], n)
}

func flashMAC(tok, body string) string {
	m := hmac.New(sha256.New, []byte(tok))
	m.Write([]byte("txoutbox dashboard flash\x00" + body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// flashMessage is the text of a verified flash value.
func flashMessage(kind string, n int64) string {
	switch kind {
	case flashRetried:
		if n == 0 {
			return "Nothing was retried: no selected entry is dead any more."
		}
		return fmt.Sprintf("Returned %s to pending, with a fresh set of attempts.", plural(n, "dead entry", "dead entries"))
	case flashDiscarded:
		if n == 0 {
			return "Nothing was discarded: the entry is no longer dead."
		}
		return fmt.Sprintf("Discarded %s for good.", plural(n, "entry", "entries"))
	}
	return ""
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
