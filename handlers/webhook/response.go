package webhook

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// snippetBytes bounds the part of a response body kept for messages.
const snippetBytes = 512

// readCapped reads at most limit bytes of r (so that a small body leaves
// the connection reusable) and returns the first snippetBytes of them,
// printable. Read errors end the read: the status has already arrived.
func readCapped(r io.Reader, limit int64) string {
	var head [snippetBytes]byte
	n, _ := io.ReadFull(io.LimitReader(r, min(limit, snippetBytes)), head[:])
	if rest := limit - int64(n); rest > 0 && n == len(head) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r, rest))
	}
	return printable(head[:n])
}

// printable turns a body prefix into one line of valid UTF-8: control
// characters and invalid bytes become spaces or U+FFFD, runs of space fold.
func printable(b []byte) string {
	var sb strings.Builder
	space := false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError && size == 1 && len(b) == 0 {
			break // a rune cut by the snippet's end
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		space = false
		sb.WriteRune(r)
	}
	return sb.String()
}

// retryAfter parses a Retry-After value (delay-seconds or an HTTP-date)
// relative to now and caps it at limit. It returns 0 when the header is
// absent, unparsable, or asks for no delay: the retry policy decides then.
func retryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(limit/time.Second) {
			return limit
		}
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	} else {
		return 0
	}
	return min(max(d, 0), limit)
}

// redactURL resolves a Location against base and keeps only its scheme and
// host: the path or query may carry a token.
func redactURL(location string, base *url.URL) string {
	if location == "" {
		return ""
	}
	u, err := base.Parse(location)
	if err != nil || u.Host == "" {
		return "(unparsable Location)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		out += "/…"
	}
	return out
}
