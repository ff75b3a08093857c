package email_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/mail"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// answer is how the test server answers the next messages.
type answer int

const (
	accept          answer = iota
	tempFailData           // 451 to the message's data (after reading it)
	permFailRcpt           // 550 to RCPT TO
	permFailData           // 554 to the message's data
	hangData               // no answer to the data until the client closes the connection
	dropAfterAccept        // 250 to the data, then the connection is closed
)

// delivery is one message the server read, whatever it answered.
type delivery struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool   // the session used TLS (STARTTLS or implicit)
	AuthUser string // the authenticated user, if any
	Accepted bool   // the server answered 250
}

// header parses the delivery's headers.
func (d delivery) header(t *testing.T) mail.Header {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(d.Data))
	if err != nil {
		t.Fatalf("delivered message does not parse: %v\n%s", err, d.Data)
	}
	return m.Header
}

// mailServer is a real SMTP server (github.com/emersion/go-smtp) on a
// loopback port, with a backend that records what it reads and answers as
// told.
type mailServer struct {
	Host string
	Port int

	srv *smtp.Server

	mu         sync.Mutex
	answer     answer
	users      map[string]string // AUTH PLAIN credentials; nil: no AUTH
	authReply  *smtp.SMTPError   // the answer to every AUTH, if set
	deliveries []delivery
	hangs      int // hung data commands released by the client closing the connection
	changed    chan struct{}
}

type serverOptions struct {
	users     map[string]string // require AUTH PLAIN with these credentials
	starttls  *tls.Config       // offer STARTTLS
	implicit  *tls.Config       // speak TLS from the first byte
	noAuthTLS bool              // refuse AUTH without TLS (default: allowed, as on loopback)
	authReply *smtp.SMTPError   // answer every AUTH with this reply
}

func startServer(t *testing.T, o serverOptions) *mailServer {
	t.Helper()
	s := &mailServer{users: o.users, authReply: o.authReply, changed: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{s: s, conn: c, tls: isTLS}, nil
	}))
	s.srv.Domain = "mx.test"
	s.srv.AllowInsecureAuth = !o.noAuthTLS
	s.srv.TLSConfig = o.starttls
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout = time.Minute // a guard; tests end sessions long before
	s.srv.WriteTimeout = time.Minute

	var l net.Listener
	var err error
	if o.implicit != nil {
		l, err = tls.Listen("tcp", "127.0.0.1:0", o.implicit)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	s.Host, s.Port = addr.IP.String(), addr.Port
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(l) }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		// Close misses the listener when Serve has not registered it yet.
		_ = l.Close()
		if err := <-served; err != nil {
			t.Errorf("smtp server: %v", err)
		}
	})
	return s
}

func (s *mailServer) setAnswer(a answer) {
	s.mu.Lock()
	s.answer = a
	s.mu.Unlock()
}

func (s *mailServer) record(d delivery) {
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// all returns every message the server read.
func (s *mailServer) all() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.deliveries...)
}

// accepted returns the messages the server accepted.
func (s *mailServer) accepted() []delivery {
	var out []delivery
	for _, d := range s.all() {
		if d.Accepted {
			out = append(out, d)
		}
	}
	return out
}

// acceptedWithID counts the accepted messages with Message-ID id.
func (s *mailServer) acceptedWithID(id string) int {
	n := 0
	for _, d := range s.accepted() {
		m, err := mail.ReadMessage(bytes.NewReader(d.Data))
		if err == nil && m.Header.Get("Message-ID") == id {
			n++
		}
	}
	return n
}

// waitMessage waits until the server has read a message.
func (s *mailServer) waitMessage(t *testing.T) {
	t.Helper()
	s.waitFor(t, "no message reached the server", func() bool { return len(s.deliveries) > 0 })
}

// waitHangReleased waits until a hung data command has seen its
// connection closed by the client.
func (s *mailServer) waitHangReleased(t *testing.T) {
	t.Helper()
	s.waitFor(t, "the client did not close the hung connection", func() bool { return s.hangs > 0 })
}

// waitFor waits until cond, called with s.mu held, is true.
func (s *mailServer) waitFor(t *testing.T, failure string, cond func() bool) {
	t.Helper()
	deadline := time.After(hangGuard)
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s within %s", failure, hangGuard)
		}
	}
}

// session is one SMTP session of mailServer.
type session struct {
	s    *mailServer
	conn *smtp.Conn
	tls  bool

	user        string
	from        string
	to          []string
	dropOnReset bool
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.users == nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	if ss.s.authReply != nil {
		return nil, ss.s.authReply
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if want, ok := ss.s.users[username]; !ok || want != password || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.users != nil && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	a := ss.s.answer
	ss.s.mu.Unlock()
	if a == permFailRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox: " + to}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	d := delivery{From: ss.from, To: ss.to, Data: data, TLS: ss.tls, AuthUser: ss.user}
	ss.s.mu.Lock()
	a := ss.s.answer
	ss.s.mu.Unlock()
	switch a {
	case tempFailData:
		ss.s.record(d)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	case permFailData:
		ss.s.record(d)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"}
	case hangData:
		ss.s.record(d)
		// No answer until the client closes the connection (or the server
		// stops): the client sent the final dot and now only waits, so a
		// read returns only then.
		_, _ = ss.conn.Conn().Read(make([]byte, 1))
		ss.s.mu.Lock()
		ss.s.hangs++
		close(ss.s.changed)
		ss.s.changed = make(chan struct{})
		ss.s.mu.Unlock()
		return &smtp.SMTPError{Code: 451, Message: "hung"}
	}
	d.Accepted = true
	ss.s.record(d)
	// The server writes 250 when Data returns, then calls Reset.
	ss.dropOnReset = a == dropAfterAccept
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
	if ss.dropOnReset {
		ss.dropOnReset = false
		_ = ss.conn.Conn().Close()
	}
}

func (ss *session) Logout() error { return nil }

// testCA is a self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
type testCA struct {
	Cert tls.Certificate
	Pool *x509.CertPool
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "txoutbox test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return testCA{Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, Pool: pool}
}

func (ca testCA) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.Cert}, MinVersion: tls.VersionTLS12}
}
