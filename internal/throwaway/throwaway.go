// Package throwaway starts a PostgreSQL server for code that has none
// configured: the tests (through outbox/outboxtest) and the examples'
// "no DATABASE_URL" mode. It tries, in the order given, a container through
// testcontainers-go when a Docker engine answers, and a cluster from this
// machine's server binaries (internal/pglocal), and reports what it tried
// when nothing works.
//
// The package has no state of its own: each [Start] starts a new server,
// which the caller closes. Callers that share one server per process (as
// outboxtest does) keep it themselves.
package throwaway

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/txoutbox/txoutbox/internal/pglocal"
)

// Kind names a way of starting a server.
type Kind string

// The kinds of server this package starts.
const (
	// Container is a PostgreSQL container started through testcontainers-go.
	Container Kind = "container"
	// Local is a cluster from this machine's PostgreSQL server binaries.
	Local Kind = "local"
)

// Hints say what makes each kind of throwaway server possible. Callers put
// them in their own messages next to their own settings.
const (
	HintContainer = "start a Docker engine (a Postgres container is then used)"
	HintLocal     = "install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql; " +
		"Fedora: dnf install postgresql-server; macOS: brew install postgresql@17)"
)

// Hint returns what makes a server of kind possible.
func Hint(kind Kind) string {
	if kind == Container {
		return HintContainer
	}
	return HintLocal
}

// Logf receives progress messages, like testing.T.Logf or log.Printf.
type Logf func(format string, args ...any)

// Server is a running throwaway server.
type Server struct {
	// URL connects to database postgres as a superuser, with
	// sslmode=disable: a role that may CREATE DATABASE.
	URL string

	// Kind says how the server was started.
	Kind Kind

	// Description says what the server is, for logs, as a noun phrase:
	// for example "a postgres:17 container (3f2a9c1d0b4e)" or "a local
	// cluster from /usr/lib/postgresql/15/bin in /tmp/txoutbox-pglocal-1234".
	Description string

	stop      func(context.Context) error
	closeOnce sync.Once
	closeErr  error
}

// NewServer returns a Server that stop stops. It is for [Source]
// implementations outside this package, such as fakes in tests.
func NewServer(url string, kind Kind, description string, stop func(context.Context) error) *Server {
	return &Server{URL: url, Kind: kind, Description: description, stop: stop}
}

// Close stops the server and removes what it left: the container, or the
// cluster's directory. Later calls return the first call's result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			s.closeErr = s.stop(ctx)
		}
	})
	return s.closeErr
}

// Source is one way of starting a server.
type Source interface {
	// Kind says which way.
	Kind() Kind
	// Probe reports why the source cannot be used on this machine, or nil
	// if it can be tried. It is quick and starts nothing.
	Probe(ctx context.Context) error
	// Start starts a server. logf receives progress messages.
	Start(ctx context.Context, logf Logf) (*Server, error)
}

// Attempt records why one source did not give a server.
type Attempt struct {
	Kind Kind
	// Available is true when the source passed its probe, so Err is a
	// failure to start rather than an absence.
	Available bool
	Err       error
}

// Error is returned by [Start] when no source gave a server. Its message
// lists every attempt; it does not say what to do (see [Hint]).
type Error struct {
	Attempts []Attempt
}

// Error lists the attempts.
func (e *Error) Error() string {
	return "throwaway: no PostgreSQL server: " + e.Summary()
}

// Summary lists the attempts, as "container unavailable: ...; local failed
// to start: ...".
func (e *Error) Summary() string {
	if len(e.Attempts) == 0 {
		return "no source was tried"
	}
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		how := "unavailable"
		if a.Available {
			how = "failed to start"
		}
		parts[i] = fmt.Sprintf("%s %s: %v", a.Kind, how, a.Err)
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the attempts' errors.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		errs[i] = a.Err
	}
	return errs
}

// Start starts a server from the first source that passes its probe and
// starts, trying the next when one fails to start (an image that cannot be
// pulled, say), and says through logf which one it used and why it passed
// over the others. When none gives a server it returns an [*Error].
func Start(ctx context.Context, sources []Source, logf Logf) (*Server, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var failed Error
	for _, src := range sources {
		if err := src.Probe(ctx); err != nil {
			failed.Attempts = append(failed.Attempts, Attempt{Kind: src.Kind(), Err: err})
			logf("throwaway: %s: unavailable: %v", src.Kind(), err)
			continue
		}
		srv, err := src.Start(ctx, logf)
		if err == nil {
			return srv, nil
		}
		failed.Attempts = append(failed.Attempts, Attempt{Kind: src.Kind(), Available: true, Err: err})
		logf("throwaway: %s: failed to start: %v", src.Kind(), err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &failed
}

// Sources returns the usual sources in the usual order: a container of
// image ("" means [DefaultImage]), then local binaries.
func Sources(image string) []Source {
	return []Source{ContainerSource(image), LocalSource(pglocal.Finder{})}
}
