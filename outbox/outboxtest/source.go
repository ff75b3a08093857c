package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/throwaway"
)

// The environment variables that choose the server.
const (
	// envDatabaseURL holds the admin connection string of an existing
	// server.
	envDatabaseURL = "TXOUTBOX_TEST_DATABASE_URL"
	// envSource forces one source: url, container or local.
	envSource = "TXOUTBOX_TEST_SOURCE"
	// envImage names the container image.
	envImage = "TXOUTBOX_TEST_POSTGRES_IMAGE"
)

// The values of TXOUTBOX_TEST_SOURCE.
const (
	sourceURL       = "url"
	sourceContainer = "container"
	sourceLocal     = "local"
)

// serverStartTimeout bounds starting a container (including pulling its
// image) or a local cluster.
const serverStartTimeout = 5 * time.Minute

// errNoServer is returned (wrapped, followed by what was tried) when no
// source yields a server. Its message is what a developer reads when tests
// fail on a fresh checkout, so it says exactly what to set or install.
var errNoServer = errors.New("outboxtest: no PostgreSQL server to test against; do one of these:\n" +
	"  - set " + envDatabaseURL + " to a connection string for a role that may CREATE DATABASE, for example " +
	envDatabaseURL + "='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'\n" +
	"  - start a Docker engine: a " + throwaway.DefaultImage + " container is then started per test binary (" +
	envImage + " names another image)\n" +
	"  - install the PostgreSQL server binaries, found through pg_config --bindir or /usr/lib/postgresql/*/bin " +
	"(Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; macOS: brew install postgresql@17): " +
	"a cluster in a temporary directory is then started per test binary")

// server is a PostgreSQL server on which the helper creates databases.
type server struct {
	// adminURL connects to an existing database on the server as a role
	// that may CREATE DATABASE and DROP DATABASE.
	adminURL string
	// source says where the server came from, for test logs.
	source string
	// addr is host:port of the server, for test logs (no credentials).
	addr string
}

// resolver finds the server for a test: the one named by
// TXOUTBOX_TEST_DATABASE_URL, else a throwaway server that it starts once
// per process and keeps until [Main] ends.
type resolver struct {
	// sources returns the throwaway sources for a container image, in
	// order of preference; tests replace it.
	sources func(image string) []throwaway.Source

	// mainActive is set while [Main] (or [WithCleanup]) runs the tests,
	// which means the started servers will be stopped.
	mainActive atomic.Bool

	mu      sync.Mutex
	started map[string]*startState // by kind and image
}

// startState is the outcome, shared by the whole process, of probing and
// starting one throwaway source.
type startState struct {
	once sync.Once
	srv  *throwaway.Server
	att  throwaway.Attempt // why there is no srv
}

// processResolver is the resolver of New and friends. Its started servers
// are the package's process-wide state; see the package comment.
var processResolver = &resolver{sources: throwaway.Sources}

// resolve returns the server to use. logf, if not nil, gets the throwaway
// sources' progress while one starts.
func (r *resolver) resolve(getenv func(string) string, logf throwaway.Logf) (server, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	forced := strings.TrimSpace(getenv(envSource))
	rawURL := strings.TrimSpace(getenv(envDatabaseURL))
	switch forced {
	case "", sourceURL, sourceContainer, sourceLocal:
	default:
		return server{}, fmt.Errorf("outboxtest: %s=%q: want %s, %s or %s (or unset, to use the first that works)",
			envSource, forced, sourceURL, sourceContainer, sourceLocal)
	}

	if forced == sourceURL || (forced == "" && rawURL != "") {
		if rawURL == "" {
			return server{}, fmt.Errorf("outboxtest: %s=%s, but %s is not set; set it to a connection string for a role that may CREATE DATABASE, "+
				"for example %s='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'", envSource, forced, envDatabaseURL, envDatabaseURL)
		}
		return urlServer(rawURL)
	}

	image := strings.TrimSpace(getenv(envImage))
	var attempts []throwaway.Attempt
	for _, src := range r.sources(image) {
		if forced != "" && string(src.Kind()) != forced {
			continue
		}
		st := r.state(src.Kind(), image)
		st.once.Do(func() {
			st.srv, st.att = startSource(src, logf)
			if st.srv == nil {
				logf("outboxtest: passing over the %s source: %s", src.Kind(), (&throwaway.Error{Attempts: []throwaway.Attempt{st.att}}).Summary())
			} else if !r.mainActive.Load() {
				logf("outboxtest: WARNING: TestMain does not run the tests through outboxtest.Main, so nothing stops %s "+
					"when the tests end: %s; add func TestMain(m *testing.M) { outboxtest.Main(m) }", st.srv.Description, leftBehind(st.srv.Kind))
			}
		})
		if st.srv != nil {
			srv := server{adminURL: st.srv.URL, source: st.srv.Description, addr: addrOf(st.srv.URL)}
			for _, a := range attempts {
				if a.Available {
					srv.source += fmt.Sprintf("; %s failed to start", a.Kind)
				} else {
					srv.source += fmt.Sprintf("; %s unavailable", a.Kind)
				}
			}
			return srv, nil
		}
		attempts = append(attempts, st.att)
	}
	return server{}, &noServerError{forced: forced, tried: &throwaway.Error{Attempts: attempts}}
}

// noServerError says that no throwaway source gave a server, what was
// tried, and what to do.
type noServerError struct {
	forced string // the value of TXOUTBOX_TEST_SOURCE, if set
	tried  *throwaway.Error
}

func (e *noServerError) Error() string {
	if e.forced != "" {
		return fmt.Sprintf("outboxtest: %s=%s, but %s; %s", envSource, e.forced, e.tried.Summary(), throwaway.Hint(throwaway.Kind(e.forced)))
	}
	return errNoServer.Error() + "\ntried: " + e.tried.Summary()
}

// Unwrap returns errNoServer (unless a source was forced) and the
// attempts' errors.
func (e *noServerError) Unwrap() []error {
	if e.forced != "" {
		return []error{e.tried}
	}
	return []error{errNoServer, e.tried}
}

// leftBehind says what becomes of a server of kind that is not stopped.
func leftBehind(kind throwaway.Kind) string {
	if kind == throwaway.Container {
		return "Ryuk removes the container when the process exits, unless TESTCONTAINERS_RYUK_DISABLED is set; " +
			"else the next test binary that starts a container removes it"
	}
	return "the server stops when the process exits (on Linux), and the next test binary that starts one removes its directory"
}

// startSource probes src and, if it is available, starts it.
func startSource(src throwaway.Source, logf throwaway.Logf) (*throwaway.Server, throwaway.Attempt) {
	ctx, cancel := context.WithTimeout(context.Background(), serverStartTimeout)
	defer cancel()
	att := throwaway.Attempt{Kind: src.Kind()}
	if att.Err = src.Probe(ctx); att.Err != nil {
		return nil, att
	}
	att.Available = true
	srv, err := src.Start(ctx, logf)
	if err != nil {
		att.Err = err
		return nil, att
	}
	return srv, att
}

// state returns the shared state of one source.
func (r *resolver) state(kind throwaway.Kind, image string) *startState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started == nil {
		r.started = make(map[string]*startState)
	}
	k := string(kind) + "\x00" + image
	st := r.started[k]
	if st == nil {
		st = &startState{}
		r.started[k] = st
	}
	return st
}

// close stops every server r started and forgets them, so that a later
// resolve starts anew.
func (r *resolver) close(ctx context.Context) error {
	r.mu.Lock()
	started := r.started
	r.started = nil
	r.mu.Unlock()
	var errs []error
	for _, st := range started {
		st.once.Do(func() {}) // wait for a start in progress
		if st.srv != nil {
			if err := st.srv.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("outboxtest: stop %s: %w", st.srv.Description, err))
			}
		}
	}
	return errors.Join(errs...)
}

// urlServer is the server named by TXOUTBOX_TEST_DATABASE_URL.
func urlServer(raw string) (server, error) {
	if _, err := pgx.ParseConfig(raw); err != nil {
		return server{}, fmt.Errorf("outboxtest: %s: parse connection string: %w", envDatabaseURL, err)
	}
	return server{adminURL: raw, source: envDatabaseURL, addr: addrOf(raw)}, nil
}

// addrOf returns host:port of a connection string that parses.
func addrOf(connString string) string {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return "?"
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
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
