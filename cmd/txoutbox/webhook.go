package main

import (
	"encoding/json"
	"fmt"
	"net/textproto"
	"sort"
	"time"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// webhookConfig is the "config" of a {"kind": "webhook"} handler. Secrets
// (signing secrets, credential headers) are named by environment variable,
// never written in the file. Zero values take webhook.Config's defaults.
type webhookConfig struct {
	Endpoints            map[string]webhookEndpoint `json:"endpoints"`
	AdHoc                *webhookEndpoint           `json:"ad_hoc"`
	Timeout              sidecar.Duration           `json:"timeout"`
	MaxResponseBytes     int64                      `json:"max_response_bytes"`
	MaxRetryAfter        sidecar.Duration           `json:"max_retry_after"`
	FollowRedirects      bool                       `json:"follow_redirects"`
	AllowPrivateNetworks bool                       `json:"allow_private_networks"`
	UserAgent            string                     `json:"user_agent"`
}

type webhookEndpoint struct {
	URL        string   `json:"url"`
	SecretsEnv []string `json:"secrets_env"`
	// Headers are extra request headers written in the file; HeadersEnv
	// maps header names to the environment variables holding their values,
	// for headers that carry credentials (an API key, a bearer token). A
	// header is set one way or the other, not both.
	Headers    map[string]string `json:"headers"`
	HeadersEnv map[string]string `json:"headers_env"`
	RawBody    bool              `json:"raw_body"`
}

// resolve reads the endpoint's secrets and header values from the
// environment. Errors name the field under field ("endpoints.crm").
func (e webhookEndpoint) resolve(field string, getenv func(string) string) (webhook.Endpoint, error) {
	bad := func(f, format string, args ...any) error {
		return &sidecar.ConfigError{Field: field + "." + f, Reason: fmt.Sprintf(format, args...)}
	}
	out := webhook.Endpoint{URL: e.URL, RawBody: e.RawBody}
	if len(e.SecretsEnv) == 0 {
		return out, bad("secrets_env", "name at least one environment variable holding a whsec_ secret")
	}
	for i, name := range e.SecretsEnv {
		v := getenv(name)
		if v == "" {
			return out, bad(fmt.Sprintf("secrets_env[%d]", i), "environment variable %s is not set", name)
		}
		out.Secrets = append(out.Secrets, v)
	}
	if len(e.Headers)+len(e.HeadersEnv) == 0 {
		return out, nil
	}
	out.Headers = make(map[string]string, len(e.Headers)+len(e.HeadersEnv))
	set := make(map[string]string, len(e.Headers)+len(e.HeadersEnv)) // canonical name -> where it is set
	for k, v := range e.Headers {
		out.Headers[k] = v
		set[textproto.CanonicalMIMEHeaderKey(k)] = "headers." + k
	}
	names := make([]string, 0, len(e.HeadersEnv))
	for k := range e.HeadersEnv {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		canonical := textproto.CanonicalMIMEHeaderKey(k)
		if other, ok := set[canonical]; ok {
			return out, bad("headers_env."+k, "header %s is also set as %s; set it once", k, other)
		}
		set[canonical] = "headers_env." + k
		env := e.HeadersEnv[k]
		if env == "" {
			return out, bad("headers_env."+k, "name the environment variable that holds the header's value")
		}
		v := getenv(env)
		if v == "" {
			return out, bad("headers_env."+k, "environment variable %s is not set", env)
		}
		out.Headers[k] = v
	}
	return out, nil
}

func registerWebhook(h *relay.Handlers, raw json.RawMessage, getenv func(string) string, opts ...relay.HandlerOption) error {
	var c webhookConfig
	if err := sidecar.DecodeStrict(raw, &c); err != nil {
		return err
	}
	// Negative numbers are refused here, with the file's names;
	// webhook.Register would refuse them too, with its own.
	switch {
	case c.Timeout < 0:
		return &sidecar.ConfigError{Field: "timeout", Reason: fmt.Sprintf("negative (%s)", c.Timeout.D())}
	case c.MaxResponseBytes < 0:
		return &sidecar.ConfigError{Field: "max_response_bytes", Reason: fmt.Sprintf("negative (%d)", c.MaxResponseBytes)}
	case c.MaxRetryAfter < 0:
		return &sidecar.ConfigError{Field: "max_retry_after", Reason: fmt.Sprintf("negative (%s)", c.MaxRetryAfter.D())}
	}
	cfg := webhook.Config{
		Endpoints:            map[string]webhook.Endpoint{},
		Timeout:              time.Duration(c.Timeout),
		MaxResponseBytes:     c.MaxResponseBytes,
		MaxRetryAfter:        time.Duration(c.MaxRetryAfter),
		FollowRedirects:      c.FollowRedirects,
		AllowPrivateNetworks: c.AllowPrivateNetworks,
		UserAgent:            c.UserAgent,
	}
	names := make([]string, 0, len(c.Endpoints))
	for n := range c.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ep, err := c.Endpoints[n].resolve("endpoints."+n, getenv)
		if err != nil {
			return err
		}
		cfg.Endpoints[n] = ep
	}
	if c.AdHoc != nil {
		ep, err := c.AdHoc.resolve("ad_hoc", getenv)
		if err != nil {
			return err
		}
		cfg.AdHoc = &ep
	}
	return webhook.Register(h, cfg, opts...)
}
