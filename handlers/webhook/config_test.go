package webhook_test

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/relay"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	good := newSecret(t)
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("only-8b!"))
	unprefixed := strings.TrimPrefix(newSecret(t), "whsec_")
	ep := func(url string, secrets ...string) map[string]webhook.Endpoint {
		return map[string]webhook.Endpoint{"orders": {URL: url, Secrets: secrets}}
	}
	withHeaders := func(h map[string]string) map[string]webhook.Endpoint {
		return map[string]webhook.Endpoint{"orders": {URL: "https://example.com/h", Secrets: []string{good}, Headers: h}}
	}
	for _, tc := range []struct {
		name     string
		cfg      webhook.Config
		sentinel error
		endpoint string // the ConfigError's Endpoint
		field    string // the ConfigError's Field
	}{
		{"relative URL", webhook.Config{Endpoints: ep("/hooks", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"empty URL", webhook.Config{Endpoints: ep("", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"ftp URL", webhook.Config{Endpoints: ep("ftp://example.com/x", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"URL without host", webhook.Config{Endpoints: ep("https:///path", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"unparsable URL", webhook.Config{Endpoints: ep("https://exa mple.com/%zz", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"URL with credentials", webhook.Config{Endpoints: ep("https://user:pw@example.com/", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"port out of range", webhook.Config{Endpoints: ep("https://example.com:70000/", good)}, webhook.ErrInvalidURL, "orders", "URL"},
		{"missing secret", webhook.Config{Endpoints: ep("https://example.com/h")}, webhook.ErrNoSecret, "orders", "Secrets"},
		{"bad base64", webhook.Config{Endpoints: ep("https://example.com/h", good, "whsec_not*base64!")}, webhook.ErrInvalidSecret, "orders", "Secrets[1]"},
		{"no whsec_ prefix", webhook.Config{Endpoints: ep("https://example.com/h", unprefixed)}, webhook.ErrInvalidSecret, "orders", "Secrets[0]"},
		{"short secret", webhook.Config{Endpoints: ep("https://example.com/h", short)}, webhook.ErrInvalidSecret, "orders", "Secrets[0]"},
		{"reserved header", webhook.Config{Endpoints: withHeaders(map[string]string{"webhook-id": "x"})}, webhook.ErrInvalidHeader, "orders", "Headers[webhook-id]"},
		{"bad header name", webhook.Config{Endpoints: withHeaders(map[string]string{"X Token": "x"})}, webhook.ErrInvalidHeader, "orders", "Headers[X Token]"},
		{"bad header value", webhook.Config{Endpoints: withHeaders(map[string]string{"X-Token": "a\r\nInjected: 1"})}, webhook.ErrInvalidHeader, "orders", "Headers[X-Token]"},
		{"private IP literal", webhook.Config{Endpoints: ep("http://10.0.0.1/h", good)}, webhook.ErrForbiddenAddress, "orders", "URL"},
		{"metadata IP literal", webhook.Config{Endpoints: ep("http://169.254.169.254/latest", good)}, webhook.ErrForbiddenAddress, "orders", "URL"},
		{"loopback IPv6 literal", webhook.Config{Endpoints: ep("http://[::1]:8080/h", good)}, webhook.ErrForbiddenAddress, "orders", "URL"},
		{"IPv4-mapped literal", webhook.Config{Endpoints: ep("http://[::ffff:8.8.8.8]/h", good)}, webhook.ErrForbiddenAddress, "orders", "URL"},
		{"NAT64 literal", webhook.Config{Endpoints: ep("http://[64:ff9b::808:808]/h", good)}, webhook.ErrForbiddenAddress, "orders", "URL"},
		{"documentation literal", webhook.Config{Endpoints: ep("https://192.0.2.10/h", good)}, webhook.ErrForbiddenAddress, "orders", "URL"},
		{"AdHoc with a URL", webhook.Config{AdHoc: &webhook.Endpoint{URL: "https://example.com", Secrets: []string{good}}}, webhook.ErrInvalidURL, "AdHoc", "URL"},
		{"AdHoc without secret", webhook.Config{AdHoc: &webhook.Endpoint{}}, webhook.ErrNoSecret, "AdHoc", "Secrets"},
		{"no endpoints", webhook.Config{}, nil, "", "Endpoints"},
		{"empty endpoint name", webhook.Config{Endpoints: map[string]webhook.Endpoint{"": {URL: "https://example.com", Secrets: []string{good}}}}, nil, "", "Endpoints"},
		{"negative timeout", webhook.Config{Endpoints: ep("https://example.com/h", good), Timeout: -time.Second}, nil, "", "Timeout"},
		{"negative body cap", webhook.Config{Endpoints: ep("https://example.com/h", good), MaxResponseBytes: -1}, nil, "", "MaxResponseBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := webhook.New(tc.cfg)
			if err == nil {
				t.Fatalf("New accepted the config (handler %v)", h)
			}
			if !errors.Is(err, webhook.ErrInvalidConfig) {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = false for %v", err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(err, %v) = false for %v", tc.sentinel, err)
			}
			var ce *webhook.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("no *ConfigError in %v", err)
			}
			if ce.Endpoint != tc.endpoint || ce.Field != tc.field {
				t.Errorf("ConfigError names endpoint %q field %q; want %q %q (%v)", ce.Endpoint, ce.Field, tc.endpoint, tc.field, err)
			}
			where := tc.field
			switch tc.endpoint {
			case "":
			case "AdHoc":
				where = "AdHoc." + tc.field
			default:
				where = `Endpoints["` + tc.endpoint + `"].` + tc.field
			}
			if msg := ce.Error(); !strings.HasPrefix(msg, "webhook: invalid config "+where+": ") || strings.Count(msg, "webhook:") != 1 {
				t.Errorf("message %q; want it to start with %q, once", msg, "webhook: invalid config "+where+": ")
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(good, "whsec_")) || strings.Contains(err.Error(), unprefixed) {
				t.Errorf("message contains a secret: %v", err)
			}
			// Register fails the same way and registers nothing.
			hs := relay.NewHandlers()
			if err := webhook.Register(hs, tc.cfg); !errors.Is(err, webhook.ErrInvalidConfig) {
				t.Errorf("Register: %v; want ErrInvalidConfig", err)
			}
			if topics := hs.Topics(); len(topics) != 0 {
				t.Errorf("Register registered %v despite the error", topics)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := webhook.New(webhook.Config{Endpoints: map[string]webhook.Endpoint{
		"a": {URL: "mailto:x@example.com", Secrets: []string{newSecret(t)}},
		"b": {URL: "https://example.com", Secrets: []string{"whsec_???"}},
	}})
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *webhook.ConfigError
		if errors.As(e, &ce) {
			got = append(got, ce.Endpoint+"."+ce.Field)
		}
	}
	if want := []string{"a.URL", "b.Secrets[0]"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("problems %v; want %v (in endpoint-name order)", got, want)
	}
}

func TestValidConfigs(t *testing.T) {
	t.Parallel()
	s := newSecret(t)
	for name, cfg := range map[string]webhook.Config{
		"https endpoint": {Endpoints: map[string]webhook.Endpoint{"a": {URL: "https://example.com/hooks?x=1", Secrets: []string{s}}}},
		"two secrets and headers": {Endpoints: map[string]webhook.Endpoint{"a": {
			URL: "http://example.com:8080", Secrets: []string{s, newSecret(t)},
			Headers: map[string]string{"Authorization": "Bearer t", "X-Tenant": "42"},
		}}},
		"ad hoc only":                     {AdHoc: &webhook.Endpoint{Secrets: []string{s}}},
		"private literal allowed":         {Endpoints: map[string]webhook.Endpoint{"a": {URL: "http://10.1.2.3/h", Secrets: []string{s}}}, AllowPrivateNetworks: true},
		"public IP literal":               {Endpoints: map[string]webhook.Endpoint{"a": {URL: "http://203.0.114.1/h", Secrets: []string{s}}}},
		"spec's 24-byte reference secret": {Endpoints: map[string]webhook.Endpoint{"a": {URL: "https://example.com", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}},
	} {
		if _, err := webhook.New(cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRegisterRegistersTheTopic(t *testing.T) {
	t.Parallel()
	hs := relay.NewHandlers()
	err := webhook.Register(hs, webhook.Config{AdHoc: &webhook.Endpoint{Secrets: []string{newSecret(t)}}}, relay.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := hs.Topics(); !reflect.DeepEqual(got, []string{webhook.Topic}) || webhook.Topic != "webhook.deliver" {
		t.Fatalf("topics %v; want [webhook.deliver]", got)
	}
	if err := webhook.Register(nil, webhook.Config{}); err == nil {
		t.Fatal("Register(nil, ...) succeeded")
	}
}

// Every sentinel's message says where it comes from.
func TestSentinelsStartWithWebhook(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		webhook.ErrInvalidConfig, webhook.ErrInvalidURL, webhook.ErrNoSecret, webhook.ErrInvalidSecret,
		webhook.ErrInvalidHeader, webhook.ErrForbiddenAddress, webhook.ErrCrossOriginRedirect,
		webhook.ErrUnknownEndpoint, webhook.ErrAdHocNotAllowed, webhook.ErrInvalidEvent, webhook.ErrTimeout,
	} {
		if !strings.HasPrefix(err.Error(), "webhook: ") {
			t.Errorf("%q does not start with \"webhook: \"", err)
		}
	}
}
