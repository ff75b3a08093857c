package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// envDatabaseURL names the environment variable holding the admin
// connection string of an existing server.
const envDatabaseURL = "TXOUTBOX_TEST_DATABASE_URL"

// errNoServer is returned when no source yields a server. Its message is
// what a developer reads when tests fail on a fresh checkout, so it says
// exactly what to set.
var errNoServer = errors.New("outboxtest: no PostgreSQL server to test against: set " + envDatabaseURL +
	" to a connection string for a role that may CREATE DATABASE, for example " +
	envDatabaseURL + "='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'")

// server is a PostgreSQL server on which the helper creates databases.
type server struct {
	// adminURL connects to an existing database on the server as a role
	// that may CREATE DATABASE and DROP DATABASE.
	adminURL string
	// source says where adminURL came from, for test logs.
	source string
	// addr is host:port of the server, for test logs (no credentials).
	addr string
}

// source is one way of finding a server. Sources are tried in order; the
// first that applies wins. A source that starts something (a container, a
// local server) must do so at most once per process and hand out the same
// server afterwards.
type source interface {
	// name describes the source in logs and errors.
	name() string
	// server returns the source's server, or ok=false when the source does
	// not apply (for example, its environment variable is unset).
	server(ctx context.Context, getenv func(string) string) (srv server, ok bool, err error)
}

// defaultSources lists the ways of finding a server, most preferred first.
func defaultSources() []source {
	return []source{envSource{}}
}

// resolveServer returns the server of the first source in srcs that
// applies, or errNoServer when none does.
func resolveServer(ctx context.Context, getenv func(string) string, srcs []source) (server, error) {
	for _, s := range srcs {
		srv, ok, err := s.server(ctx, getenv)
		if err != nil {
			return server{}, fmt.Errorf("outboxtest: %s: %w", s.name(), err)
		}
		if ok {
			return srv, nil
		}
	}
	return server{}, errNoServer
}

// envSource uses the server named by TXOUTBOX_TEST_DATABASE_URL.
type envSource struct{}

func (envSource) name() string { return envDatabaseURL }

func (envSource) server(_ context.Context, getenv func(string) string) (server, bool, error) {
	raw := strings.TrimSpace(getenv(envDatabaseURL))
	if raw == "" {
		return server{}, false, nil
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return server{}, false, fmt.Errorf("parse connection string: %w", err)
	}
	return server{
		adminURL: raw,
		source:   envDatabaseURL,
		addr:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
	}, true, nil
}

// databaseURL returns connString with its database replaced by dbname. It
// accepts both URL (postgres://...) and keyword/value (host=... dbname=...)
// connection strings, and keeps everything else: host, credentials, TLS
// settings and other parameters.
func databaseURL(connString, dbname string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("outboxtest: parse connection URL: %w", err)
		}
		u.Path = "/" + dbname
		u.RawPath = ""
		q := u.Query()
		if q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// In keyword/value form a later keyword overrides an earlier one.
	quoted := strings.ReplaceAll(strings.ReplaceAll(dbname, `\`, `\\`), `'`, `\'`)
	return strings.TrimSpace(connString) + " dbname='" + quoted + "'", nil
}
