package email_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// part is one decoded body part of a delivered message.
type part struct {
	ContentType string
	Body        string
}

// parts parses a delivered message's body into its text parts, decoding
// quoted-printable (mime/multipart does for multipart bodies).
func parts(t *testing.T, d delivery) []part {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(d.Data)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := io.ReadAll(decodeBody(m.Header.Get("Content-Transfer-Encoding"), m.Body))
		if err != nil {
			t.Fatal(err)
		}
		return []part{{ContentType: mt, Body: string(body)}}
	}
	if mt != "multipart/alternative" {
		t.Fatalf("Content-Type %s; want multipart/alternative", mt)
	}
	var out []part
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(p) // NextPart decodes quoted-printable
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, part{ContentType: pt, Body: string(body)})
	}
}

func decodeBody(cte string, r io.Reader) io.Reader {
	if strings.EqualFold(cte, "quoted-printable") {
		return quotedprintable.NewReader(r)
	}
	return r
}

func TestDeliversSubjectTextAndHTML(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	h := newHandler(t, testConfig(s))
	msg := email.Message{
		To:       []string{"Ada Lovelace <ada@example.com>", "bob@example.com"},
		Template: "welcome",
		Data:     map[string]any{"name": "Grüße <Ada & co>", "code": "X-1"},
	}
	if err := send(context.Background(), h, "welcome:user-42", msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := s.accepted()
	if len(got) != 1 {
		t.Fatalf("%d messages accepted; want 1", len(got))
	}
	d := got[0]
	if d.From != "noreply@acme.test" {
		t.Errorf("envelope sender %q; want noreply@acme.test", d.From)
	}
	if want := []string{"ada@example.com", "bob@example.com"}; fmt.Sprint(d.To) != fmt.Sprint(want) {
		t.Errorf("envelope recipients %v; want %v", d.To, want)
	}

	hdr := d.header(t)
	from, err := hdr.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Acme" || from[0].Address != "noreply@acme.test" {
		t.Errorf("From %v (%v); want Acme <noreply@acme.test>", from, err)
	}
	to, err := hdr.AddressList("To")
	if err != nil || len(to) != 2 || to[0].Name != "Ada Lovelace" || to[0].Address != "ada@example.com" || to[1].Address != "bob@example.com" {
		t.Errorf("To %v (%v)", to, err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(hdr.Get("Subject"))
	if err != nil || subject != "Welcome, Grüße <Ada & co>!" {
		t.Errorf("Subject %q (%v); want the rendered, trimmed subject", subject, err)
	}
	if id := hdr.Get("Message-ID"); id != h.MessageID("welcome:user-42") {
		t.Errorf("Message-ID %q; want %q", id, h.MessageID("welcome:user-42"))
	}
	if _, err := hdr.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}

	ps := parts(t, d)
	if len(ps) != 2 || ps[0].ContentType != "text/plain" || ps[1].ContentType != "text/html" {
		t.Fatalf("parts %+v; want text/plain then text/html", ps)
	}
	if want := "Hello Grüße <Ada & co>,\nyour code is X-1.\n"; normalizeNL(ps[0].Body) != want {
		t.Errorf("text body %q; want %q", ps[0].Body, want)
	}
	if want := "<p>Hello <b>Grüße &lt;Ada &amp; co&gt;</b>, your code is X-1.</p>\n"; normalizeNL(ps[1].Body) != want {
		t.Errorf("HTML body %q; want %q (data escaped)", ps[1].Body, want)
	}
}

func normalizeNL(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

func TestSingleBodyTemplates(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	h := newHandler(t, testConfig(s))
	for i, tc := range []struct{ template, contentType, body string }{
		{"plain", "text/plain", "Just text, Ada.\n"},
		{"fancy", "text/html", "<p>Just HTML, Ada.</p>\n"},
	} {
		msg := email.Message{To: []string{"ada@example.com"}, Template: tc.template, Data: map[string]any{"name": "Ada"}}
		if err := send(context.Background(), h, tc.template, msg); err != nil {
			t.Fatalf("%s: %v", tc.template, err)
		}
		ps := parts(t, s.accepted()[i])
		if len(ps) != 1 || ps[0].ContentType != tc.contentType || normalizeNL(ps[0].Body) != tc.body {
			t.Errorf("%s: parts %+v; want one %s part %q", tc.template, ps, tc.contentType, tc.body)
		}
	}
}

// msgID is RFC 5322's msg-id with dot-atom-text on both sides.
var msgID = regexp.MustCompile(`^<[A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*>$`)

func TestMessageIDIsDeterministicAndValid(t *testing.T) {
	t.Parallel()
	cfg := email.Config{Host: "smtp.example.com", From: "noreply@acme.test", Templates: testTemplates}
	h1, h2 := newHandler(t, cfg), newHandler(t, cfg)
	keys := []string{
		"welcome:user-42", "with spaces and\ttabs", "<angle>@brackets", "ünïcødé ✉", "line\r\nbreak",
		strings.Repeat("k", outbox.MaxKeyLen), "a", "A",
	}
	seen := map[string]string{}
	for _, k := range keys {
		id := h1.MessageID(k)
		if !msgID.MatchString(id) {
			t.Errorf("key %q: Message-ID %q is not a valid msg-id", k, id)
		}
		if !strings.HasSuffix(id, "@acme.test>") {
			t.Errorf("key %q: Message-ID %q is not in From's domain", k, id)
		}
		if again := h2.MessageID(k); again != id {
			t.Errorf("key %q: %q from one handler, %q from another", k, id, again)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("keys %q and %q share Message-ID %q", prev, k, id)
		}
		seen[id] = k
	}
	cfg.MessageIDDomain = "mail.acme.test"
	if id := newHandler(t, cfg).MessageID("a"); !strings.HasSuffix(id, "@mail.acme.test>") {
		t.Errorf("Message-ID %q ignores MessageIDDomain", id)
	}
}

// The processed key is recorded after the server accepted; the Message-ID
// of a retried message is the one the server saw the first time.
func TestMessageIDStaysTheSameAcrossARetry(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.setAnswer(tempFailData)
	cfg := testConfig(s)
	db, ev := runRelay(t, cfg)
	ctx := context.Background()
	res, err := outbox.Enqueue(ctx, db.Pool, welcome("ada@example.com"), outbox.WithKey("welcome:ada"))
	if err != nil {
		t.Fatal(err)
	}
	retry := ev.Wait(t, res.ID, relay.EventRetry)
	var se *email.SMTPError
	if !errors.As(retry.Err, &se) || se.Code != 451 || se.EnhancedCode != "4.3.0" || !se.Temporary() {
		t.Fatalf("retry error %v; want an *email.SMTPError 451 4.3.0", retry.Err)
	}
	s.setAnswer(accept)
	ev.Wait(t, res.ID, relay.EventDone)

	all := s.all()
	if len(all) < 2 || all[0].Accepted || !all[len(all)-1].Accepted {
		t.Fatalf("server saw %d messages; want a refused one, then an accepted one", len(all))
	}
	first, last := all[0].header(t).Get("Message-ID"), all[len(all)-1].header(t).Get("Message-ID")
	want := newHandler(t, cfg).MessageID("welcome:ada")
	if first != want || last != want {
		t.Fatalf("Message-IDs %q (refused) and %q (accepted); want both %q", first, last, want)
	}
	if n := len(s.accepted()); n != 1 {
		t.Fatalf("%d messages accepted; want 1", n)
	}

	e, err := outbox.Get(ctx, db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	var result email.Result
	if err := json.Unmarshal(e.Result, &result); err != nil {
		t.Fatalf("result %s: %v", e.Result, err)
	}
	if result.MessageID != want || !strings.Contains(result.Response, "queued") {
		t.Errorf("result %+v; want the Message-ID and the server's reply", result)
	}
}

func TestBadAddressIsDeadLetteredWithAClearMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	db, ev := runRelay(t, testConfig(s))
	ctx := context.Background()
	res, err := outbox.Enqueue(ctx, db.Pool, welcome("ada@example.com", "bob@"), outbox.WithKey("bad-address"))
	if err != nil {
		t.Fatal(err)
	}
	dead := ev.Wait(t, res.ID, relay.EventDead)
	if dead.Attempt != 1 {
		t.Errorf("dead after attempt %d; want 1", dead.Attempt)
	}
	var ae *email.AddressError
	if !errors.As(dead.Err, &ae) || ae.Address != "bob@" || !errors.Is(dead.Err, email.ErrInvalidMessage) {
		t.Errorf("dead error %v; want an *email.AddressError for bob@", dead.Err)
	}
	e, err := outbox.Get(ctx, db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != outbox.StateDead || e.LastError == nil || !strings.Contains(*e.LastError, `invalid recipient address "bob@"`) {
		t.Errorf("entry %s with last error %v; want dead, naming the address", e.State, deref(e.LastError))
	}
	if n := len(s.all()); n != 0 {
		t.Errorf("the server saw %d messages; want none", n)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestInvalidMessagesFailPermanentlyBeforeConnecting(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	h := newHandler(t, testConfig(s))
	many := make([]string, email.MaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf("u%d@example.com", i)
	}
	for _, tc := range []struct {
		name   string
		msg    email.Message
		target error
		text   string
	}{
		{"no recipients", email.Message{Template: "welcome"}, email.ErrInvalidMessage, "no recipients"},
		{"no template", email.Message{To: []string{"ada@example.com"}}, email.ErrInvalidMessage, "no template name"},
		{"too many recipients", email.Message{To: many, Template: "plain", Data: map[string]any{"name": "x"}}, email.ErrInvalidMessage, "over the limit"},
		{"unparsable address", welcome("not an address"), email.ErrInvalidMessage, `invalid recipient address "not an address"`},
		{"header injection", welcome("ada@example.com\r\nBcc: eve@example.com"), email.ErrInvalidMessage, "invalid recipient address"},
		{"unknown template", email.Message{To: []string{"ada@example.com"}, Template: "welcom"}, email.ErrUnknownTemplate, `unknown template "welcom"; the handler has: fancy, plain, welcome`},
	} {
		err := send(context.Background(), h, "k", tc.msg)
		if !isPermanent(err) || !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v; want permanent, matching %v, saying %q", tc.name, err, tc.target, tc.text)
		}
	}
	if n := len(s.all()); n != 0 {
		t.Errorf("the server saw %d messages; want none", n)
	}
}

func TestTemplateErrorsArePermanent(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	cfg := testConfig(s)
	cfg.Templates = map[string]email.Template{
		"welcome":   testTemplates["welcome"],
		"multiline": {Subject: "{{.a}}\n{{.b}}", Text: "x"},
		"failing":   {Subject: "s", HTML: "{{fail}}"},
		"huge":      {Subject: "s", Text: "{{huge}}"},
	}
	cfg.Funcs = map[string]any{
		"fail": func() (string, error) { return "", errors.New("no luck") },
		"huge": func() string { return strings.Repeat("x", email.MaxRenderedBytes+1) },
	}
	h := newHandler(t, cfg)
	for _, tc := range []struct {
		name string
		msg  email.Message
		part string
		text string
	}{
		{"missing key", email.Message{To: []string{"a@example.com"}, Template: "welcome", Data: map[string]any{"name": "Ada"}}, "text", `map has no entry for key "code"`},
		{"nil data", email.Message{To: []string{"a@example.com"}, Template: "welcome"}, "subject", `map has no entry for key "name"`},
		{"subject line break", email.Message{To: []string{"a@example.com"}, Template: "multiline", Data: map[string]any{"a": 1, "b": 2}}, "subject", "line break"},
		{"function error", email.Message{To: []string{"a@example.com"}, Template: "failing"}, "html", "no luck"},
		{"oversized body", email.Message{To: []string{"a@example.com"}, Template: "huge"}, "text", "renders more than 8388608 bytes"},
	} {
		err := send(context.Background(), h, "k", tc.msg)
		var te *email.TemplateError
		if !isPermanent(err) || !errors.As(err, &te) || te.Template != tc.msg.Template || te.Part != tc.part || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v; want a permanent *email.TemplateError for %s, saying %q", tc.name, err, tc.part, tc.text)
		}
	}
	if n := len(s.all()); n != 0 {
		t.Errorf("the server saw %d messages; want none", n)
	}
}

func TestSMTPRepliesAreClassified(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		answer    answer
		permanent bool
		code      int
		enhanced  string
		text      string
	}{
		{"550 to RCPT", permFailRcpt, true, 550, "5.1.1", "no such mailbox"},
		{"554 to DATA", permFailData, true, 554, "5.6.0", "content rejected"},
		{"451 to DATA", tempFailData, false, 451, "4.3.0", "try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, serverOptions{})
			s.setAnswer(tc.answer)
			err := send(context.Background(), newHandler(t, testConfig(s)), "k", welcome("ada@example.com"))
			var se *email.SMTPError
			if !errors.As(err, &se) || se.Code != tc.code || se.EnhancedCode != tc.enhanced || se.Temporary() == tc.permanent {
				t.Fatalf("%v; want an *email.SMTPError %d %s", err, tc.code, tc.enhanced)
			}
			if isPermanent(err) != tc.permanent {
				t.Errorf("permanent: %v; want %v", isPermanent(err), tc.permanent)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%q does not quote the server's reply %q", err, tc.text)
			}
		})
	}
}

func TestConnectionErrorsAreRetried(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close() // nothing listens there now
	cfg := email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: "noreply@acme.test", Templates: testTemplates}
	err = send(context.Background(), newHandler(t, cfg), "k", welcome("ada@example.com"))
	var se *email.SMTPError
	var ne net.Error
	if err == nil || isPermanent(err) || errors.As(err, &se) || !errors.As(err, &ne) {
		t.Fatalf("%v; want a retryable network error", err)
	}
}

// Once the server has said 250 to the message, the delivery stands, even
// if the connection then fails.
func TestAcceptedMessageStandsWhenTheConnectionDropsAfterwards(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.setAnswer(dropAfterAccept)
	if err := send(context.Background(), newHandler(t, testConfig(s)), "k", welcome("ada@example.com")); err != nil {
		t.Fatalf("send: %v; the server accepted the message, so it must count as sent", err)
	}
	if n := len(s.accepted()); n != 1 {
		t.Fatalf("%d messages accepted; want 1", n)
	}
}

func TestCancellationClosesTheConnection(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.setAnswer(hangData)
	h := newHandler(t, testConfig(s)) // Timeout 30s: only the context can end this
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- send(ctx, h, "k", welcome("ada@example.com")) }()
	s.waitMessage(t) // the server holds the message unanswered; now cancel
	cause := errors.New("lease lost, say")
	cancel(cause)
	var err error
	select {
	case err = <-done:
	case <-time.After(hangGuard):
		t.Fatal("Handle did not return after its context was cancelled")
	}
	if err == nil || isPermanent(err) || !errors.Is(err, cause) {
		t.Fatalf("%v; want a retryable error naming the cancellation's cause", err)
	}
	s.waitHangReleased(t) // the connection was closed, not left to time out
	if n := len(s.accepted()); n != 0 {
		t.Fatalf("%d messages accepted; want none", n)
	}
}

func TestTimeoutBoundsADelivery(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.setAnswer(hangData)
	cfg := testConfig(s)
	cfg.Timeout = 500 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- send(context.Background(), newHandler(t, cfg), "k", welcome("ada@example.com")) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(hangGuard):
		t.Fatal("Handle did not return after Timeout")
	}
	if err == nil || isPermanent(err) || !strings.Contains(err.Error(), "longer than Timeout (500ms)") {
		t.Fatalf("%v; want a retryable timeout error", err)
	}
	s.waitHangReleased(t)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	users := map[string]string{"relay": "s3cret"}
	for _, tc := range []struct {
		name       string
		user, pass string
		auth       email.AuthMechanism
		wantCode   int // 0: delivered
	}{
		{"PLAIN", "relay", "s3cret", email.AuthPlain, 0},
		{"automatic", "relay", "s3cret", email.AuthAuto, 0},
		{"wrong password", "relay", "wr0ng-p4ss", email.AuthPlain, 535},
		{"no credentials", "", "", email.AuthAuto, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, serverOptions{users: users})
			cfg := testConfig(s)
			cfg.Username, cfg.Password, cfg.Auth = tc.user, tc.pass, tc.auth
			err := send(context.Background(), newHandler(t, cfg), "k", welcome("ada@example.com"))
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("send: %v", err)
				}
				if got := s.accepted(); len(got) != 1 || got[0].AuthUser != "relay" {
					t.Fatalf("accepted %+v; want one message from user relay", got)
				}
				return
			}
			var se *email.SMTPError
			if !errors.As(err, &se) || se.Code != tc.wantCode || !isPermanent(err) {
				t.Fatalf("%v; want a permanent *email.SMTPError %d", err, tc.wantCode)
			}
			if strings.Contains(err.Error(), tc.pass) && tc.pass != "" {
				t.Errorf("the error %q shows the password", err)
			}
			if n := len(s.all()); n != 0 {
				t.Errorf("the server saw %d messages; want none", n)
			}
		})
	}
}

// A configuration that does not fit the server fails once, permanently,
// with a *ConfigError naming the setting to change: a retry cannot fix it.
func TestConfigMismatchFailsOnce(t *testing.T) {
	t.Parallel()
	users := map[string]string{"relay": "s3cret"}
	// A host name other than localhost that still reaches the loopback
	// server: the handler then refuses to send a password in clear.
	const remote = "::ffff:127.0.0.1"
	for _, tc := range []struct {
		name     string
		server   serverOptions
		host     string
		policy   email.TLSPolicy
		auth     email.AuthMechanism
		password string
		field    string // the ConfigError's Field
		says     string // part of its message
		code     int    // the *SMTPError's code it wraps; 0: none
	}{
		{"opportunistic TLS, no STARTTLS, AUTH only over TLS", serverOptions{users: users, noAuthTLS: true}, "", email.TLSOpportunistic, email.AuthAuto, "s3cret",
			"TLS", "offers no AUTH on this connection", 0},
		{"opportunistic TLS, no STARTTLS, PLAIN to another host", serverOptions{users: users}, remote, email.TLSOpportunistic, email.AuthPlain, "s3cret",
			"TLS", "set TLS to mandatory", 0},
		{"no TLS, automatic mechanism, another host", serverOptions{users: users}, remote, email.TLSNone, email.AuthAuto, "s3cret",
			"TLS", "in clear", 0},
		{"mechanism not offered", serverOptions{users: users}, "", email.TLSNone, email.AuthCRAMMD5, "s3cret",
			"Auth", "does not offer the AUTH mechanism CRAM-MD5", 0},
		{"wrong password (535)", serverOptions{users: users}, "", email.TLSNone, email.AuthPlain, "wr0ng-p4ss",
			"Password", "check Username and Password", 535},
		{"encryption required (538)", serverOptions{users: users, authReply: &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required"}},
			"", email.TLSNone, email.AuthPlain, "s3cret", "TLS", "requires TLS to authenticate", 538},
		{"STARTTLS first (530)", serverOptions{users: users, authReply: &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}},
			"", email.TLSNone, email.AuthPlain, "s3cret", "TLS", "requires TLS to authenticate", 530},
		{"mechanism too weak (534)", serverOptions{users: users, authReply: &smtp.SMTPError{Code: 534, EnhancedCode: smtp.EnhancedCode{5, 7, 9}, Message: "Authentication mechanism is too weak"}},
			"", email.TLSNone, email.AuthPlain, "s3cret", "Auth", "too weak", 534},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tc.server)
			cfg := testConfig(s)
			if tc.host != "" {
				cfg.Host = tc.host
			}
			cfg.TLS, cfg.Auth = tc.policy, tc.auth
			cfg.Username, cfg.Password = "relay", tc.password
			err := send(context.Background(), newHandler(t, cfg), "k", welcome("ada@example.com"))
			var ce *email.ConfigError
			if !isPermanent(err) || !errors.Is(err, email.ErrInvalidConfig) || !errors.As(err, &ce) {
				t.Fatalf("%v; want a permanent *email.ConfigError", err)
			}
			if ce.Field != tc.field || !strings.Contains(err.Error(), "email: invalid config "+tc.field+": ") || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%v; want a ConfigError for %s saying %q", err, tc.field, tc.says)
			}
			var se *email.SMTPError
			if got := errors.As(err, &se); got != (tc.code != 0) || got && se.Code != tc.code {
				t.Errorf("%v; want the server's %d reply wrapped", err, tc.code)
			}
			if strings.Contains(err.Error(), tc.password) {
				t.Errorf("the error %q shows the password", err)
			}
			if n := len(s.all()); n != 0 {
				t.Errorf("the server saw %d messages; want none", n)
			}
		})
	}
}

// Through a relay: the entry is dead-lettered on its first attempt, not
// retried until its attempts run out.
func TestConfigMismatchIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{users: map[string]string{"relay": "s3cret"}, noAuthTLS: true})
	cfg := testConfig(s)
	cfg.TLS = email.TLSOpportunistic
	cfg.Username, cfg.Password = "relay", "s3cret"
	db, rec := runRelay(t, cfg)
	res, err := outbox.Enqueue(context.Background(), db.Pool, welcome("ada@example.com"), outbox.WithKey("welcome:1"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := rec.Wait(t, res.ID, relay.EventDead); ev.Attempt != 1 || !errors.Is(ev.Err, email.ErrInvalidConfig) {
		t.Fatalf("dead after attempt %d with %v; want attempt 1, ErrInvalidConfig", ev.Attempt, ev.Err)
	}
	if n := rec.Count(res.ID, relay.EventRetry); n != 0 {
		t.Fatalf("%d retries of a configuration problem", n)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	trusted := &tls.Config{RootCAs: ca.Pool}
	for _, tc := range []struct {
		name      string
		server    serverOptions
		policy    email.TLSPolicy
		tlsConfig *tls.Config
		wantTLS   bool
		wantErr   string // "": delivered
	}{
		{"STARTTLS mandatory", serverOptions{starttls: ca.serverConfig()}, email.TLSMandatory, trusted, true, ""},
		{"STARTTLS opportunistic", serverOptions{starttls: ca.serverConfig()}, email.TLSOpportunistic, trusted, true, ""},
		{"opportunistic without STARTTLS", serverOptions{}, email.TLSOpportunistic, trusted, false, ""},
		{"implicit TLS", serverOptions{implicit: ca.serverConfig()}, email.TLSImplicit, trusted, true, ""},
		{"mandatory without STARTTLS", serverOptions{}, email.TLSMandatory, trusted, false, "does not support STARTTLS"},
		{"untrusted certificate", serverOptions{starttls: ca.serverConfig()}, email.TLSMandatory, nil, false, "certificate"},
		{"untrusted implicit", serverOptions{implicit: ca.serverConfig()}, email.TLSImplicit, nil, false, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.server.users = map[string]string{"relay": "s3cret"}
			tc.server.noAuthTLS = tc.wantTLS // where TLS is used, AUTH requires it
			s := startServer(t, tc.server)
			cfg := testConfig(s)
			cfg.TLS, cfg.TLSConfig = tc.policy, tc.tlsConfig
			cfg.Username, cfg.Password = "relay", "s3cret"
			err := send(context.Background(), newHandler(t, cfg), "k", welcome("ada@example.com"))
			if tc.wantErr != "" {
				if err == nil || isPermanent(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%v; want a retryable error saying %q", err, tc.wantErr)
				}
				if n := len(s.all()); n != 0 {
					t.Fatalf("the server saw %d messages; want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			got := s.accepted()
			if len(got) != 1 || got[0].TLS != tc.wantTLS || got[0].AuthUser != "relay" {
				t.Fatalf("accepted %+v; want one message, TLS %v, from user relay", got, tc.wantTLS)
			}
		})
	}
}

func TestRenderNumbersExactly(t *testing.T) {
	t.Parallel()
	h := newHandler(t, email.Config{
		Host: "smtp.example.com", From: "noreply@acme.test",
		Templates: map[string]email.Template{"n": {Subject: "#{{.id}}", Text: "{{.id}} {{.price}} {{.big}} {{if gt .id.Int64 1}}many{{end}}"}},
	})
	var msg email.Message
	if err := json.Unmarshal([]byte(`{"to":["a@example.com"],"template":"n","data":{"id":12345678,"price":9.99,"big":123456789012345678901234567890}}`), &msg); err != nil {
		t.Fatal(err)
	}
	r, err := h.Render(msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "#12345678" || r.Text != "12345678 9.99 123456789012345678901234567890 many" || r.HTML != "" {
		t.Fatalf("rendered %+v", r)
	}
}

func TestMessageJSON(t *testing.T) {
	t.Parallel()
	in := email.Message{To: []string{"Ada <ada@example.com>"}, Template: "welcome", Data: map[string]any{"name": "Ada", "n": 3}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"to":["Ada \u003cada@example.com\u003e"],"template":"welcome","data":{"n":3,"name":"Ada"}}`; string(b) != want {
		t.Errorf("JSON %s; want %s", b, want)
	}
	var out email.Message
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Data["n"] != json.Number("3") || out.Data["name"] != "Ada" || out.To[0] != in.To[0] || out.Template != "welcome" {
		t.Errorf("decoded %#v", out)
	}
	if err := json.Unmarshal([]byte(`{"to":["a@example.com"],"template":"t","data":[1]}`), &out); err == nil {
		t.Error("data that is not an object decoded")
	}
	if err := json.Unmarshal([]byte(`{"to":["a@example.com"],"template":"t","data":null}`), &out); err != nil || out.Data != nil {
		t.Errorf("null data: %v, %#v", err, out.Data)
	}
	if email.Topic != "email.send" || (email.Message{}).Topic() != email.Topic {
		t.Error("topic is not email.send")
	}
}

func TestMessageValidate(t *testing.T) {
	t.Parallel()
	if err := welcome("ada@example.com", "Bob <bob@example.com>").Validate(); err != nil {
		t.Errorf("valid message: %v", err)
	}
	for _, m := range []email.Message{
		{Template: "welcome"},
		{To: []string{"ada@"}, Template: "welcome"},
		{To: []string{"ada@example.com"}},
	} {
		if err := m.Validate(); !errors.Is(err, email.ErrInvalidMessage) {
			t.Errorf("%+v: %v; want ErrInvalidMessage", m, err)
		}
	}
}
