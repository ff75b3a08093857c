package dashboard

import (
	"testing"
	"time"
)

// A signed flash value is read back by the same token within flashTTL,
// and by nothing else.
func TestFlashSignature(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	tok, other := "token-of-this-browser", "token-of-another-browser"
	v := signFlash(tok, flashRetried, 3, t0)
	for _, tc := range []struct {
		name, tok, v string
		at           time.Time
		want         string
	}{
		{"at once", tok, v, t0, "Returned 3 dead entries to pending, with a fresh set of attempts."},
		{"within the TTL", tok, v, t0.Add(flashTTL), "Returned 3 dead entries to pending, with a fresh set of attempts."},
		{"after the TTL", tok, v, t0.Add(flashTTL + time.Second), ""},
		{"long before", tok, v, t0.Add(-flashTTL - time.Second), ""},
		{"another token", other, v, t0, ""},
		{"no token", "", v, t0, ""},
		{"unknown kind", tok, signFlash(tok, "hacked", 3, t0), t0, ""},
		{"negative count", tok, signFlash(tok, flashRetried, -3, t0), t0, ""},
		{"empty", tok, "", t0, ""},
		{"no signature", tok, "retried.3.1700000000", t0, ""},
	} {
		if got := readFlash(tc.tok, tc.v, tc.at); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
