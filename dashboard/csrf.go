package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
)

// Actions (POST) are protected against cross-site request forgery twice:
//
//  1. net/http's CrossOriginProtection refuses browser requests that come
//     from another origin, by the Sec-Fetch-Site header every current
//     browser sends, or else by comparing Origin with Host.
//  2. A double-submit token: pages set a random token in a SameSite=Strict,
//     HttpOnly cookie and repeat it in every form; an action must carry
//     both, equal. A page on another site can neither read the cookie nor
//     make the browser send it (SameSite=Strict).
//
// Either alone stops the attack in current browsers; together they also
// cover old browsers without Sec-Fetch-Site and proxies that rewrite Host.

const (
	csrfCookie = "txoutbox_csrf"
	csrfField  = "csrf"
	tokenBytes = 32
)

// Errors of refused actions.
var (
	// ErrCrossOrigin is the reason for refusing an action sent from
	// another origin.
	ErrCrossOrigin = errors.New("dashboard: cross-origin request refused")
	// ErrBadToken is the reason for refusing an action whose CSRF token is
	// missing or does not match its cookie.
	ErrBadToken = errors.New("dashboard: missing or mismatched CSRF token")
)

// csrfToken returns the request's token, setting a new cookie when it has
// none (or a malformed one).
func csrfToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(csrfCookie); err == nil && validToken(c.Value) {
		return c.Value, nil
	}
	var b [tokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dashboard: making a CSRF token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    tok,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	return tok, nil
}

func validToken(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == tokenBytes
}

// checkAction refuses cross-origin actions and actions without a matching
// token, and returns the token. The form must be parsed.
func (h *Handler) checkAction(r *http.Request) (string, error) {
	if err := h.cop.Check(r); err != nil {
		return "", fmt.Errorf("%w: %v", ErrCrossOrigin, err)
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || !validToken(c.Value) {
		return "", ErrBadToken
	}
	form := r.PostForm.Get(csrfField)
	if subtle.ConstantTimeCompare([]byte(form), []byte(c.Value)) != 1 {
		return "", ErrBadToken
	}
	return c.Value, nil
}
