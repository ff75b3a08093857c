package email_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/relay"
)

func validConfig() email.Config {
	return email.Config{Host: "smtp.example.com", From: "Acme <noreply@acme.test>", Templates: testTemplates}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		edit   func(*email.Config)
		field  string
		reason string
	}{
		{"no host", func(c *email.Config) { c.Host = "" }, "Host", "empty"},
		{"host with port", func(c *email.Config) { c.Host = "smtp.example.com:587" }, "Host", "give the port in Port"},
		{"host with space", func(c *email.Config) { c.Host = "smtp example" }, "Host", "not a host name"},
		{"bad port", func(c *email.Config) { c.Port = 70000 }, "Port", "not a TCP port"},
		{"negative timeout", func(c *email.Config) { c.Timeout = -time.Second }, "Timeout", "negative"},
		{"unknown TLS policy", func(c *email.Config) { c.TLS = 9 }, "TLS", "unknown policy"},
		{"no From", func(c *email.Config) { c.From = "" }, "From", "empty"},
		{"bad From", func(c *email.Config) { c.From = "noreply at acme" }, "From", "not an email address"},
		{"IP literal From needs a domain", func(c *email.Config) { c.From = "noreply@[192.0.2.1]" }, "MessageIDDomain", "not a plain DNS name"},
		{"bad MessageIDDomain", func(c *email.Config) { c.MessageIDDomain = "acme test" }, "MessageIDDomain", "not a DNS name"},
		{"bad HeloName", func(c *email.Config) { c.HeloName = "relay acme" }, "HeloName", "white space"},
		{"unknown auth", func(c *email.Config) { c.Username, c.Auth = "u", "GSSAPI" }, "Auth", "unknown mechanism"},
		{"auth without user", func(c *email.Config) { c.Auth = email.AuthPlain }, "Auth", "no Username"},
		{"password without user", func(c *email.Config) { c.Password = "p" }, "Username", "empty while Password is set"},
		{"PLAIN in clear", func(c *email.Config) { c.Username, c.Auth, c.TLS = "u", email.AuthPlain, email.TLSNone }, "Auth", "in clear"},
		{"no templates", func(c *email.Config) { c.Templates = nil }, "Templates", "no templates"},
		{"template with no body", func(c *email.Config) {
			c.Templates = map[string]email.Template{"empty": {Subject: "Hi", Text: " \n", HTML: ""}}
		}, `Templates["empty"].Text`, "neither a text nor an HTML body"},
		{"template with no subject", func(c *email.Config) {
			c.Templates = map[string]email.Template{"nosubj": {Text: "x"}}
		}, `Templates["nosubj"].Subject`, "needs a subject"},
		{"template with empty name", func(c *email.Config) {
			c.Templates = map[string]email.Template{"": {Subject: "s", Text: "x"}}
		}, "Templates", "empty name"},
		{"template that does not parse", func(c *email.Config) {
			c.Templates = map[string]email.Template{"broken": {Subject: "s", HTML: "{{.x"}}
		}, `Templates["broken"].HTML`, "does not parse"},
		{"unknown function", func(c *email.Config) {
			c.Templates = map[string]email.Template{"f": {Subject: "{{shout .x}}", Text: "x"}}
		}, `Templates["f"].Subject`, "does not parse"},
		{"bad Funcs", func(c *email.Config) { c.Funcs = map[string]any{"nope": 42} }, "Subject", "Funcs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			tc.edit(&cfg)
			h, err := email.New(cfg)
			if h != nil || !errors.Is(err, email.ErrInvalidConfig) {
				t.Fatalf("New: %v, %v; want ErrInvalidConfig", h, err)
			}
			var ce *email.ConfigError
			if !errors.As(err, &ce) || !strings.Contains(ce.Field, tc.field) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("New: %v; want a *ConfigError for %s saying %q", err, tc.field, tc.reason)
			}
			hs := relay.NewHandlers()
			if rerr := email.Register(hs, cfg); !errors.Is(rerr, email.ErrInvalidConfig) || len(hs.Topics()) != 0 {
				t.Fatalf("Register: %v, topics %v; want ErrInvalidConfig and nothing registered", rerr, hs.Topics())
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := email.New(email.Config{Templates: map[string]email.Template{"x": {Subject: "s"}}})
	for _, field := range []string{"Host", "From", `Templates["x"].Text`} {
		if !strings.Contains(err.Error(), "invalid config "+field) {
			t.Errorf("%v\ndoes not mention %s", err, field)
		}
	}
}

func TestNewAcceptsValidConfigs(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(*email.Config){
		"minimal":             func(*email.Config) {},
		"IPv6 host":           func(c *email.Config) { c.Host = "::1" },
		"bracketed IPv6 host": func(c *email.Config) { c.Host = "[2001:db8::1]" },
		"PLAIN over TLS":      func(c *email.Config) { c.Username, c.Password, c.Auth = "u", "p", email.AuthPlain },
		"PLAIN in clear loopback": func(c *email.Config) {
			c.Host, c.Username, c.Auth, c.TLS = "127.0.0.1", "u", email.AuthPlain, email.TLSNone
		},
		"auth in lower case": func(c *email.Config) { c.Username, c.Auth = "u", "scram-sha-256" },
		"auto spelt out":     func(c *email.Config) { c.Username, c.Auth = "u", "auto" },
		"implicit TLS":       func(c *email.Config) { c.TLS = email.TLSImplicit },
		"IP literal From with domain": func(c *email.Config) {
			c.From, c.MessageIDDomain = "noreply@[192.0.2.1]", "acme.test"
		},
		"funcs": func(c *email.Config) {
			c.Funcs = map[string]any{"shout": strings.ToUpper}
			c.Templates = map[string]email.Template{"f": {Subject: "{{shout .x}}", Text: "x"}}
		},
	} {
		cfg := validConfig()
		edit(&cfg)
		if _, err := email.New(cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	hs := relay.NewHandlers()
	if err := email.Register(hs, validConfig()); err != nil {
		t.Fatal(err)
	}
	if got := hs.Topics(); len(got) != 1 || got[0] != email.Topic {
		t.Fatalf("topics %v; want [%s]", got, email.Topic)
	}
	var ce *email.ConfigError
	if err := email.Register(nil, validConfig()); !errors.As(err, &ce) {
		t.Fatalf("Register(nil): %v; want a *ConfigError", err)
	}
}

func TestTemplateFS(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"welcome.subject.tmpl":        {Data: []byte("Welcome, {{.name}}\n")},
		"welcome.txt.tmpl":            {Data: []byte("Hello {{.name}}\n")},
		"welcome.html.tmpl":           {Data: []byte("<p>Hello {{.name}}</p>\n")},
		"orders/shipped.subject.tmpl": {Data: []byte("Order {{.order}} shipped")},
		"orders/shipped.html.tmpl":    {Data: []byte("<p>Order {{.order}} is on its way.</p>")},
		"README.md":                   {Data: []byte("not a template")},
	}
	cfg := validConfig()
	cfg.Templates = map[string]email.Template{"inline": {Subject: "Inline", Text: "inline"}}
	cfg.TemplateFS = fsys
	h := newHandler(t, cfg)
	for _, tc := range []struct {
		msg  email.Message
		want email.Rendered
	}{
		{email.Message{Template: "welcome", Data: map[string]any{"name": "Ada"}}, email.Rendered{Subject: "Welcome, Ada", Text: "Hello Ada\n", HTML: "<p>Hello Ada</p>\n"}},
		{email.Message{Template: "orders/shipped", Data: map[string]any{"order": "A-17"}}, email.Rendered{Subject: "Order A-17 shipped", HTML: "<p>Order A-17 is on its way.</p>"}},
		{email.Message{Template: "inline"}, email.Rendered{Subject: "Inline", Text: "inline"}},
	} {
		got, err := h.Render(tc.msg)
		if err != nil || *got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.msg.Template, got, err, tc.want)
		}
	}

	for name, bad := range map[string]struct {
		fsys   fstest.MapFS
		inline bool
		reason string
	}{
		"unknown suffix":       {fstest.MapFS{"welcome.tmpl": {Data: []byte("x")}}, false, "a template file is NAME.subject.tmpl"},
		"no body":              {fstest.MapFS{"welcome.subject.tmpl": {Data: []byte("x")}}, false, "neither a text nor an HTML body"},
		"no subject":           {fstest.MapFS{"welcome.txt.tmpl": {Data: []byte("x")}}, false, "needs a subject"},
		"also in Templates":    {fstest.MapFS{"inline.subject.tmpl": {Data: []byte("x")}, "inline.txt.tmpl": {Data: []byte("x")}}, true, `"inline" is also in Templates`},
		"suffix without name":  {fstest.MapFS{"dir/.txt.tmpl": {Data: []byte("x")}}, false, "a template file is"},
		"empty FS, no inlines": {fstest.MapFS{}, false, "no templates"},
	} {
		cfg := validConfig()
		cfg.Templates = nil
		if bad.inline {
			cfg.Templates = map[string]email.Template{"inline": {Subject: "Inline", Text: "inline"}}
		}
		cfg.TemplateFS = bad.fsys
		_, err := email.New(cfg)
		if !errors.Is(err, email.ErrInvalidConfig) || !strings.Contains(err.Error(), bad.reason) {
			t.Errorf("%s: %v; want ErrInvalidConfig saying %q", name, err, bad.reason)
		}
	}
}

func TestTLSPolicyText(t *testing.T) {
	t.Parallel()
	for _, p := range []email.TLSPolicy{email.TLSMandatory, email.TLSOpportunistic, email.TLSImplicit, email.TLSNone} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back email.TLSPolicy
		if err := back.UnmarshalText(b); err != nil || back != p || p.String() != string(b) {
			t.Errorf("%d: %q round-trips to %d (%v)", p, b, back, err)
		}
	}
	var p email.TLSPolicy
	if err := p.UnmarshalText([]byte("IMPLICIT")); err != nil || p != email.TLSImplicit {
		t.Errorf("IMPLICIT: %v, %v", p, err)
	}
	if err := p.UnmarshalText([]byte("starttls-please")); err == nil {
		t.Error("an unknown policy parsed")
	}
	if _, err := email.TLSPolicy(7).MarshalText(); err == nil {
		t.Error("an unknown policy marshalled")
	}
}
