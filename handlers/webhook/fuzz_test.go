package webhook_test

import (
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/txoutbox/txoutbox/handlers/webhook"
)

// FuzzEndpointURL feeds arbitrary endpoint URLs to New. It must never
// panic; a refusal must be ErrInvalidConfig, and an accepted URL must be an
// absolute http(s) URL with a host that is not a private IP literal.
func FuzzEndpointURL(f *testing.F) {
	for _, seed := range []string{
		"https://crm.example.com/hooks",
		"http://example.com:8080/a?b=c",
		"https://user:pass@example.com/",
		"ftp://example.com/",
		"/relative/path",
		"https://127.0.0.1/",
		"https://[::1]/",
		"https://169.254.169.254/latest/meta-data",
		"https://10.0.0.1/",
		"https://[::ffff:127.0.0.1]/",
		"https://example.com:99999/",
		"https://exa mple.com/",
		"http://%41:80/",
		"",
	} {
		f.Add(seed)
	}
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	f.Fuzz(func(t *testing.T, raw string) {
		_, err := webhook.New(webhook.Config{Endpoints: map[string]webhook.Endpoint{
			"ep": {URL: raw, Secrets: []string{secret}},
		}})
		if err != nil {
			if !errors.Is(err, webhook.ErrInvalidConfig) {
				t.Fatalf("untyped error for %q: %v", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("accepted %q", raw)
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()) {
			t.Fatalf("accepted a private IP literal %q", raw)
		}
	})
}
