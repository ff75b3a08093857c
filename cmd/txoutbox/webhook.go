package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// webhookConfig is the "config" of a {"kind": "webhook"} handler. Secrets
// are named by environment variable, never written in the file.
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
	URL        string            `json:"url"`
	SecretsEnv []string          `json:"secrets_env"`
	Headers    map[string]string `json:"headers"`
	RawBody    bool              `json:"raw_body"`
}

func (e webhookEndpoint) resolve(field string, getenv func(string) string) (webhook.Endpoint, error) {
	out := webhook.Endpoint{URL: e.URL, Headers: e.Headers, RawBody: e.RawBody}
	if len(e.SecretsEnv) == 0 {
		return out, fmt.Errorf("%s.secrets_env: name at least one environment variable holding a whsec_ secret", field)
	}
	for i, name := range e.SecretsEnv {
		v := getenv(name)
		if v == "" {
			return out, fmt.Errorf("%s.secrets_env[%d]: environment variable %s is not set", field, i, name)
		}
		out.Secrets = append(out.Secrets, v)
	}
	return out, nil
}

func registerWebhook(h *relay.Handlers, raw json.RawMessage, getenv func(string) string, opts ...relay.HandlerOption) error {
	var c webhookConfig
	if err := sidecar.DecodeStrict(raw, &c); err != nil {
		return err
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
