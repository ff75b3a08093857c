package email

import (
	"crypto/tls"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// DefaultTimeout is the default of Config.Timeout.
const DefaultTimeout = 30 * time.Second

// Config configures a Handler. Host, From and at least one template are
// required; every other field has the default its comment gives. New
// validates it and returns every problem it finds, each a *ConfigError.
type Config struct {
	// Host is the SMTP server's host name or IP address. Required. It is
	// also the name the server's TLS certificate is checked against, unless
	// TLSConfig.ServerName says otherwise.
	Host string

	// Port is the SMTP server's port. Default: 587 (submission) for
	// TLSMandatory and TLSOpportunistic, 465 (submissions) for TLSImplicit,
	// 25 for TLSNone.
	Port int

	// TLS says how the connection is secured. Default TLSMandatory:
	// STARTTLS, and no delivery to a server that does not offer it.
	TLS TLSPolicy

	// TLSConfig customises TLS: root CAs, client certificates. Default: the
	// system's roots, ServerName Host, TLS 1.2 at least. It is cloned; a
	// copy without ServerName gets Host, and one without MinVersion gets
	// TLS 1.2.
	TLSConfig *tls.Config

	// Username and Password authenticate to the server (SMTP AUTH). With
	// no Username, the handler does not authenticate. Password is the
	// OAuth2 access token for AuthXOAUTH2.
	Username string
	Password string

	// Auth is the SASL mechanism. Default AuthAuto: the strongest the
	// server offers of SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN and
	// LOGIN. PLAIN and LOGIN send the password itself, so they are only
	// used over TLS or to a loopback host ("localhost", "127.0.0.1",
	// "::1"); elsewhere the attempt fails rather than send it in clear.
	Auth AuthMechanism

	// From is the sender: an RFC 5322 address, with or without a display
	// name ("Acme <noreply@acme.example>"). It is the From header and the
	// envelope sender (MAIL FROM). Required.
	From string

	// HeloName is the name the handler introduces itself with (EHLO).
	// Default: this machine's host name, or "localhost" if it has none.
	HeloName string

	// Timeout bounds one delivery attempt: connecting, TLS, AUTH and the
	// whole SMTP exchange. Default 30s (DefaultTimeout). The relay's
	// per-entry timeout and lease also bound it: whichever ends first
	// closes the connection.
	Timeout time.Duration

	// MessageIDDomain is the right-hand side of the Message-IDs the handler
	// derives from entry keys (see Handler.MessageID). Default: the domain
	// of From. It must be a DNS name (letters, digits, hyphens, dots); set
	// it when From's domain is not one, for instance an IP literal or an
	// internationalised name. Two installations that may use the same keys
	// should use different domains.
	MessageIDDomain string

	// Templates are named templates given as Go values.
	Templates map[string]Template

	// TemplateFS holds more templates as files: for a template name, the
	// files name.subject.tmpl (the subject, required), name.txt.tmpl (the
	// text body) and name.html.tmpl (the HTML body), at least one of the
	// two bodies. Names may contain slashes: orders/shipped.subject.tmpl
	// defines "orders/shipped". Files not ending in .tmpl are ignored; a
	// .tmpl file of another form, or a name also in Templates, is an error.
	// Read once, by New. Use os.DirFS for a directory, an embed.FS for
	// templates compiled in, fs.Sub for a subdirectory.
	TemplateFS fs.FS

	// Funcs are extra functions for every template (subject, text and
	// HTML), as for template.Funcs: each a func with one result, or two
	// whose second is an error.
	Funcs map[string]any
}

// Template is one kind of email: a subject and at least one body. Each is
// the source of a Go template (text/template for Subject and Text,
// html/template for HTML, which escapes data for HTML), executed with the
// Message's Data as its dot, Config.Funcs as extra functions, and the
// option missingkey=error: a template that reads a key Data lacks fails the
// message (permanently) instead of printing "<no value>". For an optional
// key, use {{with index . "nickname"}}...{{end}}.
//
// With both bodies the message is multipart/alternative (a text and an HTML
// version); with one, it is that part alone.
type Template struct {
	// Subject renders the Subject header. Required. Surrounding white
	// space is trimmed from the result; a line break inside it fails the
	// message.
	Subject string
	// Text renders the text/plain body. Optional if HTML is set.
	Text string
	// HTML renders the text/html body. Optional if Text is set.
	HTML string
}

// TLSPolicy says how the connection to the SMTP server is secured. Its
// text form (for configuration files) is "mandatory", "opportunistic",
// "implicit" or "none".
type TLSPolicy int

const (
	// TLSMandatory (the default) upgrades the connection with STARTTLS and
	// refuses to deliver to a server that does not offer it. A delivery
	// that fails this way is retried, not dead-lettered.
	TLSMandatory TLSPolicy = iota
	// TLSOpportunistic uses STARTTLS when the server offers it and sends in
	// clear when it does not. When STARTTLS is used, the certificate is
	// checked as with TLSMandatory.
	TLSOpportunistic
	// TLSImplicit speaks TLS from the first byte ("SMTPS", port 465).
	TLSImplicit
	// TLSNone never uses TLS: for a relay on loopback or a test server.
	TLSNone
)

var tlsPolicyNames = [...]string{"mandatory", "opportunistic", "implicit", "none"}

// String returns the policy's text form.
func (p TLSPolicy) String() string {
	if p < 0 || int(p) >= len(tlsPolicyNames) {
		return fmt.Sprintf("TLSPolicy(%d)", int(p))
	}
	return tlsPolicyNames[p]
}

// MarshalText returns the policy's text form.
func (p TLSPolicy) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(tlsPolicyNames) {
		return nil, fmt.Errorf("email: unknown TLS policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText parses a text form ("mandatory", "opportunistic",
// "implicit" or "none"; case does not matter).
func (p *TLSPolicy) UnmarshalText(b []byte) error {
	for i, name := range tlsPolicyNames {
		if strings.EqualFold(string(b), name) {
			*p = TLSPolicy(i)
			return nil
		}
	}
	return fmt.Errorf("email: unknown TLS policy %q; want one of %s", b, strings.Join(tlsPolicyNames[:], ", "))
}

// AuthMechanism names a SASL mechanism for SMTP AUTH.
type AuthMechanism string

// The mechanisms Config.Auth accepts (case does not matter).
const (
	// AuthAuto (the default, also spelt "auto") picks the strongest
	// mechanism the server offers; see Config.Auth.
	AuthAuto AuthMechanism = ""
	// AuthPlain is PLAIN (RFC 4616).
	AuthPlain AuthMechanism = "PLAIN"
	// AuthLogin is LOGIN.
	AuthLogin AuthMechanism = "LOGIN"
	// AuthCRAMMD5 is CRAM-MD5 (RFC 2195).
	AuthCRAMMD5 AuthMechanism = "CRAM-MD5"
	// AuthSCRAMSHA256 is SCRAM-SHA-256 (RFC 7677).
	AuthSCRAMSHA256 AuthMechanism = "SCRAM-SHA-256"
	// AuthXOAUTH2 is XOAUTH2, with Config.Password as the access token.
	AuthXOAUTH2 AuthMechanism = "XOAUTH2"
)

// normalize returns the canonical spelling of a, and whether it is known.
func (a AuthMechanism) normalize() (AuthMechanism, bool) {
	up := AuthMechanism(strings.ToUpper(string(a)))
	switch up {
	case "", "AUTO":
		return AuthAuto, true
	case AuthPlain, AuthLogin, AuthCRAMMD5, AuthSCRAMSHA256, AuthXOAUTH2:
		return up, true
	}
	return a, false
}

// defaultPort returns the port a policy uses when Config.Port is zero.
func (p TLSPolicy) defaultPort() int {
	switch p {
	case TLSImplicit:
		return 465
	case TLSNone:
		return 25
	}
	return 587
}

// isLoopbackName reports whether go-mail lets PLAIN and LOGIN send a
// password in clear to host.
func isLoopbackName(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// validDomain reports whether d is a DNS name fit for a msg-id's right-hand
// side (a dot-atom of letter-digit-hyphen labels).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validHelo reports whether s can follow EHLO: no white space or control
// characters.
func validHelo(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
