package email

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/txoutbox/txoutbox/relay"
)

// maxResponseBytes bounds Result.Response.
const maxResponseBytes = 512

// maxNamesInErrors bounds the template names an unknown-template error
// lists.
const maxNamesInErrors = 20

// backstop is how much longer than Config.Timeout go-mail's connection
// deadlines are.
const backstop = 5 * time.Second

// Handler sends Message entries over SMTP. Build it with New (or let
// Register build it); it is safe for concurrent use, and each delivery uses
// a connection of its own.
type Handler struct {
	cfg       Config // with defaults applied
	host      string // Config.Host without IPv6 brackets
	port      int
	from      mail.Address
	domain    string // of Message-IDs
	helo      string
	tlsConfig *tls.Config
	templates map[string]*compiled
	names     string // the template names, for error messages
}

// New validates cfg, parses its templates and returns a Handler. Every
// problem found is reported: the error joins one *ConfigError per problem
// and matches ErrInvalidConfig. New does not connect to the server.
func New(cfg Config) (*Handler, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	h := &Handler{cfg: cfg}

	h.host = strings.TrimSuffix(strings.TrimPrefix(cfg.Host, "["), "]")
	switch {
	case cfg.Host == "":
		bad("Host", "empty; name the SMTP server")
	case strings.ContainsAny(h.host, " \t\r\n/[]@") ||
		strings.Contains(h.host, ":") && net.ParseIP(h.host) == nil:
		bad("Host", "%q is not a host name or IP address (give the port in Port)", cfg.Host)
	}
	if cfg.TLS < TLSMandatory || cfg.TLS > TLSNone {
		bad("TLS", "unknown policy %d", int(cfg.TLS))
	}
	h.port = cfg.Port
	switch {
	case cfg.Port == 0:
		h.port = cfg.TLS.defaultPort()
	case cfg.Port < 0 || cfg.Port > 65535:
		bad("Port", "%d is not a TCP port", cfg.Port)
	}
	switch {
	case cfg.Timeout == 0:
		h.cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		bad("Timeout", "negative (%s)", cfg.Timeout)
	}

	mech, ok := cfg.Auth.normalize()
	h.cfg.Auth = mech
	switch {
	case !ok:
		bad("Auth", "unknown mechanism %q; want PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 or empty for automatic", cfg.Auth)
	case cfg.Username == "" && cfg.Password != "":
		bad("Username", "empty while Password is set")
	case cfg.Username == "" && mech != AuthAuto:
		bad("Auth", "%s set but no Username", mech)
	case (mech == AuthPlain || mech == AuthLogin) && cfg.TLS == TLSNone && !isLoopbackName(h.host):
		bad("Auth", "%s with TLS none would send the password in clear to %s; use TLS or a challenge mechanism", mech, cfg.Host)
	}

	if cfg.From == "" {
		bad("From", "empty; give the sender address")
	} else if from, err := mail.ParseAddress(cfg.From); err != nil {
		errs = append(errs, &ConfigError{Field: "From", Reason: fmt.Sprintf("%q is not an email address", cfg.From), Err: err})
	} else {
		h.from = *from
	}

	h.domain = cfg.MessageIDDomain
	if h.domain == "" && h.from.Address != "" {
		h.domain = h.from.Address[strings.LastIndexByte(h.from.Address, '@')+1:]
		if !validDomain(h.domain) {
			bad("MessageIDDomain", "empty, and From's domain %q is not a plain DNS name; set it", h.domain)
		}
	} else if h.domain != "" && !validDomain(h.domain) {
		bad("MessageIDDomain", "%q is not a DNS name", h.domain)
	}

	h.helo = cfg.HeloName
	if h.helo == "" {
		if name, err := os.Hostname(); err == nil && validHelo(name) {
			h.helo = name
		} else {
			h.helo = "localhost"
		}
	} else if !validHelo(h.helo) {
		bad("HeloName", "%q has white space or control characters", h.helo)
	}

	if cfg.TLSConfig != nil {
		h.tlsConfig = cfg.TLSConfig.Clone()
	} else {
		h.tlsConfig = &tls.Config{}
	}
	if h.tlsConfig.ServerName == "" {
		h.tlsConfig.ServerName = h.host
	}
	if h.tlsConfig.MinVersion == 0 {
		h.tlsConfig.MinVersion = tls.VersionTLS12
	}

	templates, terrs := compileTemplates(cfg)
	errs = append(errs, terrs...)
	h.templates = templates
	names := sortedKeys(templates)
	if len(names) > maxNamesInErrors {
		names = append(names[:maxNamesInErrors], fmt.Sprintf("and %d more", len(templates)-maxNamesInErrors))
	}
	h.names = strings.Join(names, ", ")

	if len(errs) == 0 {
		// Whatever go-mail still refuses is a configuration error too.
		if _, err := h.client(&connSet{}); err != nil {
			errs = append(errs, &ConfigError{Field: "Config", Reason: "refused by the SMTP client", Err: err})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return h, nil
}

// Register builds a Handler from cfg with New and registers it on hs for
// Topic, with the given relay options (relay.WithTimeout, ...). It returns
// New's error, or a *ConfigError when hs is nil.
func Register(hs *relay.Handlers, cfg Config, opts ...relay.HandlerOption) error {
	if hs == nil {
		return &ConfigError{Field: "Register", Reason: "nil *relay.Handlers"}
	}
	h, err := New(cfg)
	if err != nil {
		return err
	}
	relay.Handle(hs, h.Handle, opts...)
	return nil
}

// MessageID returns the Message-ID header, angle brackets included, of the
// message sent for an entry with idempotency key key:
// <txoutbox.HEX@DOMAIN>, where HEX is the first 128 bits of the key's
// SHA-256 in hex and DOMAIN is Config.MessageIDDomain. Every attempt of an
// entry, and any handler with the same domain, gives the same value, so a
// message sent twice (see the package documentation) is recognisably the
// same message. The key is hashed because it may be any text, and may
// carry data (a user id, an address) that recipients should not see.
func (h *Handler) MessageID(key string) string {
	return "<" + h.messageID(key) + ">"
}

func (h *Handler) messageID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "txoutbox." + hex.EncodeToString(sum[:16]) + "@" + h.domain
}

// Render renders msg with its template without sending it: to preview a
// message, or to test templates. Its errors are those Handle dead-letters
// for: ErrUnknownTemplate, or a *TemplateError.
func (h *Handler) Render(msg Message) (*Rendered, error) {
	c, ok := h.templates[msg.Template]
	if !ok {
		return nil, fmt.Errorf("%w %q; the handler has: %s", ErrUnknownTemplate, msg.Template, h.names)
	}
	return c.render(msg.Template, msg.Data)
}

// Handle sends the entry's message: a relay.HandlerFunc for Message, which
// Register registers. It renders the message with its template and
// delivers it to the server with a Message-ID derived from the entry's key
// (MessageID). It returns nil once the server has accepted the message
// (a 250 reply to the message's data), having recorded a Result with
// e.SetResult; the relay then records the entry's processed key. Errors
// after that reply (a failing QUIT, a dropped connection) do not undo the
// delivery and are ignored.
//
// A message that cannot be sent as it is fails permanently (wrapped in
// relay.Permanent): an invalid Message (ErrInvalidMessage, *AddressError),
// an unknown template (ErrUnknownTemplate), a template that fails to render
// (*TemplateError), a 5xx reply (*SMTPError). So does a configuration that
// does not fit the server (a *ConfigError matching ErrInvalidConfig, naming
// the setting to change; see the package documentation). A 4xx reply
// (*SMTPError) and failures without a reply (connection, TLS, timeout,
// cancellation) are returned as they are, for the relay to retry.
func (h *Handler) Handle(ctx context.Context, e *relay.Entry[Message]) error {
	if e == nil {
		return relay.Permanent(errors.New("email: nil entry"))
	}
	rcpts, err := e.Payload.parse()
	if err != nil {
		return relay.Permanent(err)
	}
	r, err := h.Render(e.Payload)
	if err != nil {
		return relay.Permanent(err)
	}
	m := h.compose(e.Key, rcpts, r)
	if err := h.deliver(ctx, m); err != nil {
		return err
	}
	resp := m.ServerResponse()
	if len(resp) > maxResponseBytes {
		resp = resp[:maxResponseBytes]
	}
	e.SetResult(Result{MessageID: h.MessageID(e.Key), Response: resp})
	return nil
}

// compose builds the message to send.
func (h *Handler) compose(key string, rcpts []*mail.Address, r *Rendered) *gomail.Msg {
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	from := h.from
	m.FromMailAddress(&from)
	m.ToMailAddress(rcpts...)
	m.Subject(r.Subject)
	m.SetMessageIDWithValue(h.messageID(key))
	m.SetDate()
	switch {
	case r.Text != "" && r.HTML != "":
		m.SetBodyString(gomail.TypeTextPlain, r.Text)
		m.AddAlternativeString(gomail.TypeTextHTML, r.HTML)
	case r.HTML != "":
		m.SetBodyString(gomail.TypeTextHTML, r.HTML)
	default:
		m.SetBodyString(gomail.TypeTextPlain, r.Text)
	}
	return m
}

// deliver sends m in one SMTP session, bounded by Config.Timeout and ctx:
// when either ends, the connection is closed, which stops the exchange
// wherever it is.
func (h *Handler) deliver(ctx context.Context, m *gomail.Msg) error {
	ctx, cancel := context.WithTimeoutCause(ctx, h.cfg.Timeout,
		fmt.Errorf("email: delivery took longer than Timeout (%s)", h.cfg.Timeout))
	defer cancel()
	conns := &connSet{}
	defer conns.closeAll()
	stop := context.AfterFunc(ctx, conns.closeAll)
	defer stop()

	c, err := h.client(conns)
	if err != nil {
		return fmt.Errorf("email: %w", err)
	}
	err = c.DialAndSendWithContext(ctx, m)
	if m.IsDelivered() {
		return nil // accepted; what failed after (QUIT) does not matter
	}
	if err == nil {
		return errors.New("email: the client reported neither delivery nor an error")
	}
	return h.classify(ctx, err)
}

// classify maps a failed delivery to the relay's retry semantics. A
// configuration that does not fit the server fails permanently with a
// *ConfigError naming the setting to change (see misconfigured).
func (h *Handler) classify(ctx context.Context, err error) error {
	var se *SMTPError
	if code, enhanced, ok := replyCode(err); ok {
		se = &SMTPError{Code: code, EnhancedCode: enhanced, Err: err}
	}
	if ce := h.misconfigured(err, se); ce != nil {
		return relay.Permanent(ce)
	}
	if se != nil {
		if se.Temporary() {
			return se
		}
		return relay.Permanent(se)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("email: delivery stopped (%w): %w", context.Cause(ctx), err)
	}
	return fmt.Errorf("email: delivery failed: %w", err)
}

// authUnsupported are go-mail's errors for an AUTH mechanism the server
// does not offer.
var authUnsupported = []error{
	gomail.ErrPlainAuthNotSupported, gomail.ErrLoginAuthNotSupported,
	gomail.ErrCramMD5AuthNotSupported, gomail.ErrXOauth2AuthNotSupported,
	gomail.ErrSCRAMSHA1AuthNotSupported, gomail.ErrSCRAMSHA256AuthNotSupported,
	gomail.ErrSCRAMSHA1PLUSAuthNotSupported, gomail.ErrSCRAMSHA256PLUSAuthNotSupported,
	gomail.ErrNTLMAuthNotSupported, gomail.ErrNoSupportedAuthDiscovered,
}

// errNoAuthText is the text of go-mail's error for a server that offers no
// AUTH at all (it has no sentinel; TestConfigMismatchFailsOnce pins it).
const errNoAuthText = "server does not support SMTP AUTH"

// misconfigured returns a *ConfigError when a delivery failed because the
// handler's configuration does not fit the server — something no retry
// changes, and an operator fixes by changing the named setting — or nil.
// se is the failure's SMTP reply, if any.
func (h *Handler) misconfigured(err error, se *SMTPError) *ConfigError {
	server := net.JoinHostPort(h.host, strconv.Itoa(h.port))
	bad := func(field, format string, args ...any) *ConfigError {
		var cause error = err
		if se != nil {
			cause = se
		}
		return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...), Err: cause}
	}
	inClear := "" // why the session is not encrypted, if it may not be
	switch h.cfg.TLS {
	case TLSOpportunistic:
		inClear = "it offers no STARTTLS, so with TLS opportunistic the session is in clear"
	case TLSNone:
		inClear = "with TLS none the session is in clear"
	}
	mech := string(h.cfg.Auth)
	if h.cfg.Auth == AuthAuto {
		mech = "PLAIN or LOGIN (chosen automatically)"
	}
	switch {
	case errors.Is(err, smtp.ErrUnencrypted):
		return bad("TLS", "the server at %s: %s, and %s would send the password itself, which the handler does not do in clear to a host other than localhost; "+
			"set TLS to mandatory (STARTTLS) or implicit (port 465), or Auth to a challenge mechanism the server offers (CRAM-MD5, SCRAM-SHA-256)",
			server, cmp.Or(inClear, "the session is in clear"), mech)
	case slices.ContainsFunc(authUnsupported, func(target error) bool { return errors.Is(err, target) }):
		if h.cfg.Auth == AuthAuto {
			return bad("Auth", "the server at %s offers none of the AUTH mechanisms the handler can use here (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, and PLAIN or LOGIN over TLS or to localhost); "+
				"set Auth to one it offers, or TLS to mandatory or implicit if it offers only PLAIN or LOGIN", server)
		}
		return bad("Auth", "the server at %s does not offer the AUTH mechanism %s; set Auth to one it offers, or leave it empty to choose automatically",
			server, mech)
	case strings.Contains(err.Error(), errNoAuthText):
		if inClear != "" {
			return bad("TLS", "the server at %s offers no AUTH on this connection (%s, and servers commonly offer AUTH only over TLS); "+
				"set TLS to mandatory or implicit, or remove Username and Password if the server needs no authentication", server, inClear)
		}
		return bad("Username", "the server at %s offers no AUTH; remove Username and Password if it needs no authentication, or point Host at the server that authenticates", server)
	case se == nil:
		return nil
	}
	reply := strings.ToUpper(se.Error())
	switch {
	case se.Code == 535:
		return bad("Password", "the server at %s refused the credentials of Username %q (535); check Username and Password", server, h.cfg.Username)
	case se.Code == 534:
		return bad("Auth", "the server at %s refuses the AUTH mechanism %s as too weak (534); set Auth to a stronger mechanism it offers", server, mech)
	case se.Code == 538, se.Code == 530 && strings.Contains(reply, "STARTTLS"):
		why := ""
		if inClear != "" {
			why = ", and " + inClear
		}
		return bad("TLS", "the server at %s requires TLS to authenticate (%d)%s; set TLS to mandatory or implicit", server, se.Code, why)
	case se.Code == 530 && h.cfg.Username == "":
		return bad("Username", "the server at %s requires authentication (530); set Username and Password", server)
	}
	return nil
}

// replyCode finds the SMTP reply code (4xx or 5xx) in a go-mail error: a
// *SendError carries it for the MAIL, RCPT and DATA stages; a
// *textproto.Error for the greeting, EHLO, STARTTLS and AUTH.
func replyCode(err error) (code int, enhanced string, ok bool) {
	var se *gomail.SendError
	if errors.As(err, &se) {
		if c := se.ErrorCode(); c >= 400 && c < 600 {
			return c, se.EnhancedStatusCode(), true
		}
	}
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 400 && te.Code < 600 {
		return te.Code, enhancedCode(te.Msg), true
	}
	return 0, "", false
}

// enhancedCode returns the RFC 3463 status code that starts msg, if any.
func enhancedCode(msg string) string {
	word, _, _ := strings.Cut(msg, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || (parts[0] != "4" && parts[0] != "5") {
		return ""
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return word
}

// client returns a go-mail client for one delivery, dialling through
// conns.
func (h *Handler) client(conns *connSet) (*gomail.Client, error) {
	opts := []gomail.Option{
		gomail.WithPort(h.port),
		// The delivery's context enforces Timeout, by closing the
		// connection; go-mail's own deadlines are only a backstop, set
		// later so that a timeout is always reported as the context's.
		gomail.WithTimeout(h.cfg.Timeout + backstop),
		gomail.WithHELO(h.helo),
		gomail.WithDialContextFunc(h.dialer(conns)),
		gomail.WithTLSConfig(h.tlsConfig),
		// One message per connection: no NOOP before it, no RSET after.
		gomail.WithoutNoop(),
		gomail.WithoutRset(),
	}
	switch h.cfg.TLS {
	case TLSMandatory:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSOpportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	default: // TLSImplicit is done by the dialer; TLSNone needs nothing
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if h.cfg.Username != "" {
		opts = append(opts, gomail.WithUsername(h.cfg.Username), gomail.WithPassword(h.cfg.Password))
		switch h.cfg.Auth {
		case AuthAuto:
			opts = append(opts, gomail.WithOpportunisticSMTPAuth(
				gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthCramMD5,
				gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
		case AuthPlain:
			opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain))
		case AuthLogin:
			opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthLogin))
		case AuthCRAMMD5:
			opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthCramMD5))
		case AuthSCRAMSHA256:
			opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthSCRAMSHA256))
		case AuthXOAUTH2:
			opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthXOAUTH2))
		}
	}
	return gomail.NewClient(h.host, opts...)
}

// dialer connects to the server (with TLS for TLSImplicit) and registers
// the TCP connection in conns, so that it can be closed from outside.
func (h *Handler) dialer(conns *connSet) gomail.DialContextFunc {
	// go-mail passes "host:port", which is wrong for an IPv6 host.
	addr := net.JoinHostPort(h.host, strconv.Itoa(h.port))
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if !conns.add(raw) {
			return nil, fmt.Errorf("connection to %s closed: %w", addr, context.Cause(ctx))
		}
		if h.cfg.TLS != TLSImplicit {
			return raw, nil
		}
		tc := tls.Client(raw, h.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		return tc, nil
	}
}

// connSet holds the TCP connections of one delivery. closeAll closes them
// (not a TLS layer above them, whose Close could wait on a blocked write)
// and any added later.
type connSet struct {
	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

// add registers c, or closes it and reports false when the set is closed.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conns = append(s.conns, c)
	return true
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}
