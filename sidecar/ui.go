package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/dashboard"
	"github.com/txoutbox/txoutbox/outbox"
)

// UIPath is where the relay serves the operator dashboard when enabled.
const UIPath = "/ui/"

// uiConfig configures the operator dashboard (package dashboard) that
// `txoutbox relay` serves under /ui/ on its listen address. It is off
// unless enabled, and then requires credentials: an HTTP Basic user with
// a password, a bearer token, or both (either is accepted). Secrets are
// read from the environment variables named here, never from the file.
type uiConfig struct {
	// Enabled serves the dashboard under /ui/.
	Enabled bool `json:"enabled"`
	// Username is the HTTP Basic user; PasswordEnv names the variable that
	// holds its password. Browsers ask for them.
	Username    string `json:"username"`
	PasswordEnv string `json:"password_env"`
	// TokenEnv names the variable holding a bearer token, for a proxy that
	// adds "Authorization: Bearer …" or for scripts.
	TokenEnv string `json:"token_env"`
	// Window is the period of throughput and failure rate (default 15m,
	// 1m–24h); Refresh how often pages reload (default 10s, at least 1s;
	// negative turns it off).
	Window  Duration `json:"window"`
	Refresh Duration `json:"refresh"`
	// TrustedOrigins are origins allowed to post actions besides the
	// dashboard's own, for a proxy that rewrites the Host header.
	TrustedOrigins []string `json:"trusted_origins"`
}

// validate checks the section without reading the environment.
func (c uiConfig) validate(listen string) error {
	if c.Window < 0 {
		return configErr("ui.window", "negative (%s)", c.Window.D())
	}
	if !c.Enabled {
		return nil
	}
	switch {
	case c.Username == "" && c.PasswordEnv == "" && c.TokenEnv == "":
		return configErr("ui", "the dashboard needs credentials: set username and password_env, or token_env")
	case c.Username != "" && c.PasswordEnv == "":
		return configErr("ui.password_env", "missing: name the environment variable that holds the password")
	case c.Username == "" && c.PasswordEnv != "":
		return configErr("ui.username", "missing: password_env needs a username")
	case listen == "off":
		return configErr("ui.enabled", `the dashboard is served on the listen address, which is "off"`)
	}
	return nil
}

// auth reads the secrets and returns the dashboard's Auth.
func (c uiConfig) auth(getenv func(string) string) (dashboard.Auth, error) {
	var auths []dashboard.Auth
	if c.Username != "" {
		pw := getenv(c.PasswordEnv)
		if pw == "" {
			return nil, configErr("ui.password_env", "environment variable %s is not set", c.PasswordEnv)
		}
		auths = append(auths, dashboard.BasicAuth(c.Username, pw))
	}
	if c.TokenEnv != "" {
		tok := getenv(c.TokenEnv)
		if tok == "" {
			return nil, configErr("ui.token_env", "environment variable %s is not set", c.TokenEnv)
		}
		auths = append(auths, dashboard.BearerToken(tok))
	}
	if len(auths) == 1 {
		return auths[0], nil
	}
	return dashboard.AnyOf(auths...), nil
}

// newDashboard builds the dashboard over the server's current pool; it
// returns nil when the dashboard is not enabled.
func (c uiConfig) newDashboard(s *server, getenv func(string) string, log *slog.Logger) (http.Handler, error) {
	if !c.Enabled {
		return nil, nil
	}
	auth, err := c.auth(getenv)
	if err != nil {
		return nil, err
	}
	d, err := dashboard.New(poolQuerier{s: s}, dashboard.Config{
		Auth:           auth,
		Window:         time.Duration(c.Window),
		Refresh:        time.Duration(c.Refresh),
		TrustedOrigins: c.TrustedOrigins,
		Logger:         log,
	})
	if err != nil {
		return nil, configErr("ui", "%v", err)
	}
	return http.StripPrefix(UIPath[:len(UIPath)-1], d), nil
}

// poolQuerier reads through the pool of the relay's current session; the
// pool changes when the relay reconnects, and is absent while the database
// is unreachable (the dashboard then answers 503).
type poolQuerier struct{ s *server }

// errNoDatabase is what the dashboard shows while the relay has no pool.
var errNoDatabase = errors.New("the relay is not connected to the database (see /readyz and the logs)")

func (q poolQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	pool := q.s.currentPool()
	if pool == nil {
		return errRow{errNoDatabase}
	}
	return pool.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

var _ outbox.Querier = poolQuerier{}
