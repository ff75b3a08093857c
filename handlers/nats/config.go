package nats

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	natsio "github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/internal/tmplfields"
)

// Defaults of Config.
const (
	// DefaultSubject publishes each entry to a subject named after its
	// topic: an entry of topic "order.created" goes to "order.created".
	DefaultSubject = "{{.Topic}}"
	// DefaultAckTimeout bounds the wait for one publish's ack.
	DefaultAckTimeout = 5 * time.Second
	// DefaultName is the connection's name as the server shows it.
	DefaultName = "txoutbox"
)

// Headers the handler sets on every message. Entry headers of these names
// are replaced, and entry headers starting with "Nats-" are not sent: they
// would change what JetStream does with the message (Nats-Msg-Id,
// Nats-Expected-Stream, Nats-Rollup, Nats-TTL, ...).
const (
	// HeaderMsgID is JetStream's deduplication header: "<topic>:<key>",
	// the same on every attempt of an entry (see the package
	// documentation for why the topic is part of it).
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderTopic carries the entry's topic.
	HeaderTopic = "Txoutbox-Topic"
	// HeaderKey carries the entry's key as it is.
	HeaderKey = "Txoutbox-Key"
	// HeaderOrderingKey carries the entry's ordering key; absent when it
	// has none.
	HeaderOrderingKey = "Txoutbox-Ordering-Key"
	// HeaderEntryID carries the entry's id in the outbox table.
	HeaderEntryID = "Txoutbox-Entry-Id"
)

// Config configures a Publisher. Set Conn or URL; every other field has a
// documented default. New validates the whole and reports every problem.
type Config struct {
	// Topics are the outbox topics Register serves: entries of each are
	// published. At least one for Register; New ignores it (wrap
	// Publisher.Handle yourself).
	Topics []string

	// Conn is a connection the application made and owns (Close leaves it
	// open). Set Conn or URL, not both. The Publisher adds its own error
	// handler to the connection, calling the one it had, to recognise
	// publish permission violations.
	Conn *natsio.Conn

	// URL is the server (or comma-separated servers) to connect to when
	// Conn is not set, e.g. "nats://127.0.0.1:4222". Credentials belong in
	// Options (natsio.UserCredentials, natsio.Token, natsio.UserInfo), not
	// in the URL, which appears in errors. The connection is made with
	// unlimited reconnects, and New returns even when no server answers
	// yet: entries are retried until one does. Close closes it.
	URL string

	// Options are applied to the connection New makes from URL, after
	// the handler's own (a name, unlimited reconnects, the error handler):
	// credentials, TLS, timeouts. Ignored with Conn.
	Options []natsio.Option

	// Subject is a text/template that yields the subject of an entry's
	// message from a SubjectData: its topic, key, ordering key, queue,
	// headers and payload. Default DefaultSubject ("{{.Topic}}"); for
	// example "events.{{.Topic}}" or "orders.{{.Payload.region}}.{{.Topic}}".
	// A template naming a field SubjectData lacks fails New; a template
	// that fails on an entry (a payload field missing), or yields an
	// invalid subject, dead-letters the entry with ErrInvalidSubject.
	Subject string

	// Stream, when set, names the stream every message must land in: each
	// publish carries Nats-Expected-Stream, and JetStream refuses a message
	// another stream would capture. A missing or mismatched stream
	// dead-letters the entry with ErrNoStream. Publisher.CheckStream
	// checks that it exists. Default "": any stream that captures the
	// subject.
	Stream string

	// AckTimeout bounds the wait for one message's publish ack. A publish
	// without an ack in time fails with ErrAckTimeout and is retried. The
	// relay's per-attempt timeout (relay.WithTimeout, default 1m) also
	// applies. Default DefaultAckTimeout (5s).
	AckTimeout time.Duration
}

// SubjectData is what the Subject template sees of an entry.
type SubjectData struct {
	Topic       string
	Key         string
	OrderingKey string // "" when the entry has none
	Queue       string
	Headers     map[string]string
	// Payload is the entry's JSON payload decoded: an object is a
	// map[string]any, so "{{.Payload.region}}" reads its "region". It is
	// decoded only when the template names .Payload.
	Payload any
}

// subjectFields are SubjectData's fields, for the template check.
var subjectFields = map[string]bool{
	"Topic": true, "Key": true, "OrderingKey": true, "Queue": true, "Headers": true, "Payload": true,
}

// withDefaults fills in defaults and validates c, returning every problem
// joined, and the parsed subject template.
func (c Config) withDefaults(needTopics bool) (Config, *template.Template, bool, error) {
	var errs []error
	bad := func(field string, sentinel error, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Err: sentinel, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case c.Conn == nil && c.URL == "":
		bad("URL", nil, "set URL or Conn")
	case c.Conn != nil && c.URL != "":
		bad("URL", nil, "set URL or Conn, not both")
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.AckTimeout < 0 {
		bad("AckTimeout", nil, "negative (%s)", c.AckTimeout)
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	tmpl, err := template.New("subject").Option("missingkey=error").Parse(c.Subject)
	usesPayload := false
	if err != nil {
		bad("Subject", ErrInvalidSubject, "%s", strings.TrimPrefix(err.Error(), "template: "))
	} else if fields, err := checkFields(tmpl.Tree.Root); err != nil {
		bad("Subject", ErrInvalidSubject, "%s", err)
	} else {
		usesPayload = fields["Payload"]
	}
	if c.Stream != "" && strings.ContainsAny(c.Stream, ".*> \t\r\n") {
		bad("Stream", nil, "%q is not a stream name (no '.', '*', '>' or whitespace)", c.Stream)
	}
	if needTopics && len(c.Topics) == 0 {
		bad("Topics", nil, "no topic: the handler would publish nothing")
	}
	seen := map[string]bool{}
	for i, t := range c.Topics {
		field := fmt.Sprintf("Topics[%d]", i)
		switch {
		case t == "":
			bad(field, nil, "empty")
		case seen[t]:
			bad(field, nil, "%q listed twice", t)
		}
		seen[t] = true
	}
	if len(errs) > 0 {
		return c, nil, false, errors.Join(errs...)
	}
	return c, tmpl, usesPayload, nil
}

// checkFields returns the SubjectData fields the template names at the top
// level, or an error for a name SubjectData lacks.
func checkFields(root *parse.ListNode) (map[string]bool, error) {
	used := map[string]bool{}
	var problems []string
	for _, f := range tmplfields.Used(root) {
		if !subjectFields[f] {
			problems = append(problems, fmt.Sprintf("no field %q (SubjectData has %s)", f, fieldList()))
			continue
		}
		used[f] = true
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return used, nil
}

func fieldList() string {
	names := make([]string, 0, len(subjectFields))
	for n := range subjectFields {
		names = append(names, "."+n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkSubject reports why s cannot be published to, or "".
func checkSubject(s string) string {
	if s == "" {
		return "empty"
	}
	for _, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return "has an empty token"
		case tok == "*" || tok == ">":
			return "has a wildcard token"
		}
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return "contains whitespace or a control character"
		}
	}
	return ""
}

// validHeaderName reports whether s can be a NATS header name: printable
// ASCII without ':' or space.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value and
// read back unchanged: no control characters, no surrounding whitespace.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(s) == s
}
