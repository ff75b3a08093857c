package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Auth decides who may use the dashboard: every request, pages and actions
// alike, passes through it first. Config.Auth is required.
type Auth interface {
	// Authorize reports whether r may see the dashboard and use its
	// actions.
	Authorize(r *http.Request) bool
	// Challenge is the WWW-Authenticate header sent with a 401 answer
	// (empty for none). For Basic it makes the browser ask for a password.
	Challenge() string
}

// AuthFunc adapts a function to Auth, with no challenge. Use it for an
// application's own session check, or — when the dashboard is mounted
// behind middleware that already authenticates — a function that returns
// true.
type AuthFunc func(r *http.Request) bool

// Authorize calls f.
func (f AuthFunc) Authorize(r *http.Request) bool { return f(r) }

// Challenge returns "".
func (AuthFunc) Challenge() string { return "" }

// BasicAuth accepts requests with HTTP Basic credentials user and password,
// compared in constant time. An empty user or password accepts nothing.
func BasicAuth(user, password string) Auth {
	return basicAuth{user: digest(user), password: digest(password), ok: user != "" && password != ""}
}

type basicAuth struct {
	user, password [32]byte
	ok             bool
}

func (b basicAuth) Authorize(r *http.Request) bool {
	u, p, found := r.BasicAuth()
	if !found || !b.ok {
		return false
	}
	uu, pp := digest(u), digest(p)
	// Both comparisons run, whatever the first says.
	userOK := subtle.ConstantTimeCompare(uu[:], b.user[:])
	passOK := subtle.ConstantTimeCompare(pp[:], b.password[:])
	return userOK&passOK == 1
}

func (basicAuth) Challenge() string { return `Basic realm="txoutbox", charset="UTF-8"` }

// BearerToken accepts requests with the header "Authorization: Bearer
// <token>", compared in constant time. An empty token accepts nothing.
// Browsers do not send bearer tokens by themselves: use it for a proxy
// that adds the header, or for scripts.
func BearerToken(token string) Auth {
	return bearerAuth{token: digest(token), ok: token != ""}
}

type bearerAuth struct {
	token [32]byte
	ok    bool
}

func (b bearerAuth) Authorize(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !b.ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	d := digest(strings.TrimSpace(tok))
	return subtle.ConstantTimeCompare(d[:], b.token[:]) == 1
}

func (bearerAuth) Challenge() string { return `Bearer realm="txoutbox"` }

// AnyOf accepts a request that any of auths accepts; its challenge is the
// first non-empty one.
func AnyOf(auths ...Auth) Auth { return anyOf(auths) }

type anyOf []Auth

func (a anyOf) Authorize(r *http.Request) bool {
	for _, x := range a {
		if x != nil && x.Authorize(r) {
			return true
		}
	}
	return false
}

func (a anyOf) Challenge() string {
	for _, x := range a {
		if x != nil {
			if c := x.Challenge(); c != "" {
				return c
			}
		}
	}
	return ""
}

// digest hashes a secret so that comparisons take the same time whatever
// its length.
func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }
