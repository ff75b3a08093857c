package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/handlers/webhook"
)

// This file holds the outside world the relay talks to: an SMTP catcher
// standing in for a mail provider, a partner's webhook receiver, and a PDF
// store that says what it wrote. None of it is part of txoutbox.

// catcher is an SMTP server on a loopback port (github.com/emersion/go-smtp)
// that accepts every message after a delay, like a slow mail provider, and
// keeps what it received.
type catcher struct {
	tl    *timeline
	delay time.Duration
	srv   *smtp.Server
	lis   net.Listener
	done  chan error

	mu       sync.Mutex
	received []caught
}

// caught is one message the catcher accepted.
type caught struct {
	To        string
	Subject   string
	MessageID string
	At        time.Duration // on the timeline
}

func startCatcher(tl *timeline, delay time.Duration) (*catcher, error) {
	c := &catcher{tl: tl, delay: delay, done: make(chan error, 1)}
	c.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{c: c}, nil
	}))
	c.srv.Domain = "localhost"
	c.srv.ReadTimeout = time.Minute
	c.srv.WriteTimeout = time.Minute
	c.srv.ErrorLog = log.New(io.Discard, "", 0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c.lis = lis
	go func() { c.done <- c.srv.Serve(lis) }()
	return c, nil
}

// Port is the catcher's TCP port.
func (c *catcher) Port() int { return c.lis.Addr().(*net.TCPAddr).Port }

func (c *catcher) Close() {
	_ = c.srv.Close()
	_ = c.lis.Close() // in case Serve has not registered it yet
	<-c.done
}

// Received returns the messages accepted so far.
func (c *catcher) Received() []caught {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]caught(nil), c.received...)
}

type smtpSession struct {
	c  *catcher
	to []string
}

func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return &smtp.SMTPError{Code: 554, Message: "cannot parse the message"}
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		subject = msg.Header.Get("Subject")
	}
	time.Sleep(s.c.delay) // a real provider takes its time
	m := caught{To: strings.Join(s.to, ", "), Subject: subject, MessageID: msg.Header.Get("Message-ID"), At: s.c.tl.since()}
	s.c.mu.Lock()
	s.c.received = append(s.c.received, m)
	s.c.mu.Unlock()
	s.c.tl.printf("smtp", "accepted %q for %s, Message-ID %s", m.Subject, m.To, m.MessageID)
	return nil
}

func (s *smtpSession) Reset()        { s.to = nil }
func (s *smtpSession) Logout() error { return nil }

// partner is a webhook receiver as a partner would run it: it checks the
// Standard Webhooks signature, and remembers the webhook-ids it acted on so
// that a repeated delivery is acknowledged without acting twice. To show a
// retry, it answers the first request for each webhook-id with 503 and
// Retry-After: 1.
type partner struct {
	tl     *timeline
	secret string // whsec_...
	key    []byte // the secret's decoded bytes
	srv    *http.Server
	lis    net.Listener

	mu       sync.Mutex
	requests int
	failed   map[string]bool          // ids answered 503
	acted    map[string]time.Duration // ids acted on, when (on the timeline)
}

func startPartner(tl *timeline) (*partner, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	p := &partner{
		tl:     tl,
		secret: webhook.SecretPrefix + base64.StdEncoding.EncodeToString(key),
		key:    key,
		failed: map[string]bool{},
		acted:  map[string]time.Duration{},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.lis = lis
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

// URL is where webhooks go.
func (p *partner) URL() string { return "http://" + p.lis.Addr().String() + "/hooks" }

func (p *partner) Close(ctx context.Context) { _ = p.srv.Shutdown(ctx) }

func (p *partner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	id := r.Header.Get(webhook.HeaderID)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	_, seen := p.acted[id]
	if err := p.verify(id, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body); err != nil {
		p.tl.printf("partner", "webhook-id %s: %v; answered 401", id, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	switch {
	case !p.failed[id]:
		p.failed[id] = true
		p.tl.printf("partner", "webhook-id %s: signature valid; answered 503 with Retry-After: 1 (on purpose, the first time)", id)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy, come back in a second", http.StatusServiceUnavailable)
	case seen:
		p.tl.printf("partner", "webhook-id %s: signature valid; seen before, answered 204 without acting again", id)
		w.WriteHeader(http.StatusNoContent)
	default:
		p.acted[id] = p.tl.since()
		var env struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(body, &env)
		p.tl.printf("partner", "webhook-id %s: signature valid; acted on %s %s, answered 204", id, env.Type, env.Data)
		w.WriteHeader(http.StatusNoContent)
	}
}

// verify checks a Standard Webhooks signature: HMAC-SHA256 over
// "id.timestamp.body", keyed with the secret's bytes, in base64 after "v1,"
// (one of possibly several, space-separated), and a timestamp within five
// minutes.
func (p *partner) verify(id, timestamp, signatures string, body []byte) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return errors.New("missing or stale webhook-timestamp")
	}
	mac := hmac.New(sha256.New, p.key)
	fmt.Fprintf(mac, "%s.%s.%s", id, timestamp, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for sig := range strings.FieldsSeq(signatures) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// Stats reports the requests received, and the ids acted on.
func (p *partner) Stats() (requests int, acted map[string]time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	acted = make(map[string]time.Duration, len(p.acted))
	for id, at := range p.acted {
		acted[id] = at
	}
	return p.requests, acted
}

// fileStore is pdf.DirStore, saying on the timeline what it wrote.
type fileStore struct {
	pdf.DirStore
	tl *timeline

	mu      sync.Mutex
	written map[string]time.Duration // object name: when (on the timeline)
}

func (s *fileStore) Put(ctx context.Context, name string, r io.Reader) error {
	cr := &countingReader{r: r}
	if err := s.DirStore.Put(ctx, name, cr); err != nil {
		return err
	}
	s.mu.Lock()
	s.written[name] = s.tl.since()
	s.mu.Unlock()
	s.tl.printf("files", "wrote %s (%d bytes)", name, cr.n)
	return nil
}

// Written returns the object names stored so far, and when.
func (s *fileStore) Written() map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := make(map[string]time.Duration, len(s.written))
	for name, at := range s.written {
		w[name] = at
	}
	return w
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
