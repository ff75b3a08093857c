package rabbitmq

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"text/template"
	"text/template/parse"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/txoutbox/txoutbox/internal/tmplfields"
)

// Defaults of Config.
const (
	// DefaultRoutingKey routes each entry by its topic.
	DefaultRoutingKey = "{{.Topic}}"
	// DefaultConfirmTimeout bounds the wait for one publisher confirm.
	DefaultConfirmTimeout = 10 * time.Second
	// DefaultDialTimeout bounds connecting: TCP, TLS and the AMQP
	// handshake.
	DefaultDialTimeout = 10 * time.Second
	// DefaultHeartbeat is the AMQP heartbeat interval asked of the broker.
	DefaultHeartbeat = 10 * time.Second
	// DefaultMaxChannels bounds the confirm-mode channels open at once,
	// which bounds the messages awaiting a confirm (one per channel).
	DefaultMaxChannels = 32
	// DefaultAppID is the app-id property of every message.
	DefaultAppID = "txoutbox"
	// redialDelay is how long a failed connection attempt is reported to
	// the next callers before another is made, so that a broker that is
	// down sees one attempt per interval rather than one per entry.
	redialDelay = time.Second
	// maxShortString is AMQP's limit for a routing key, a message-id and a
	// correlation-id.
	maxShortString = 255
)

// Config configures a Publisher. URL is required; the zero value of every
// other field is a documented default. New validates the whole and
// reports every problem.
type Config struct {
	// URL is the broker's AMQP URI, amqp:// or amqps://, with the user,
	// password and virtual host, e.g.
	// "amqp://app:secret@rabbit.internal:5672/orders". Required. It is never
	// written into errors or logs (it holds the password): the host and
	// port are.
	URL string

	// Exchange is the exchange every message is published to. Default ""
	// (the default exchange, which routes by queue name: the routing key
	// is then the queue's name). The exchange must exist: publishing to a
	// missing one dead-letters the entry (404 NOT_FOUND).
	Exchange string

	// RoutingKey is a text/template that renders each entry's routing key
	// from a RouteData: {{.Topic}}, {{.Key}}, {{.OrderingKey}}, {{.Queue}},
	// {{.Priority}}, {{index .Headers "name"}} and the JSON payload's
	// fields, {{.Payload.customer.region}} (numbers as written in the
	// JSON). Parsed and checked by New (only those fields exist); a
	// template that fails on an entry (a payload field it names is
	// missing: missingkey=error) dead-letters the entry with
	// ErrRoutingKey, and so does a key over 255 bytes. Default
	// DefaultRoutingKey ("{{.Topic}}").
	RoutingKey string

	// ConfirmTimeout bounds the wait for the broker's publisher confirm of
	// one message. An attempt that runs out of time fails with
	// ErrConfirmTimeout and is retried (the relay's per-attempt timeout,
	// relay.WithTimeout, also applies). Default DefaultConfirmTimeout (10s).
	ConfirmTimeout time.Duration

	// AllowUnroutable publishes without the mandatory flag, so a message
	// that no binding routes is dropped by the broker and the entry is
	// done. Default false: messages are mandatory, and one the broker
	// returns fails the attempt with an *UnroutableError (ErrUnroutable).
	AllowUnroutable bool

	// RetryUnroutable retries an entry whose message was returned
	// unroutable, for setups where the consumer declares its queue and
	// binding itself and may start after the producer. Default false: it
	// is dead-lettered at once, since a missing binding is a configuration
	// error that retries only hide; replay the dead entries once it is
	// fixed. Meaningless with AllowUnroutable.
	RetryUnroutable bool

	// MaxChannels bounds the confirm-mode channels the publisher opens on
	// its connection. Each publish takes a channel for itself until its
	// confirm arrives, so this is also the number of publishes in flight;
	// more callers wait for a channel (bounded by their context). Set it
	// at least to the relay's workers for the handler's queue. Default
	// DefaultMaxChannels (32).
	MaxChannels int

	// DialTimeout bounds connecting to the broker: TCP, TLS and the AMQP
	// handshake. Default DefaultDialTimeout (10s).
	DialTimeout time.Duration

	// Heartbeat is the AMQP heartbeat interval; a broker that stays silent
	// for three of them is taken as gone and the connection is replaced.
	// Default DefaultHeartbeat (10s).
	Heartbeat time.Duration

	// AppID is the app-id property of every message. Default DefaultAppID.
	AppID string

	// TLS configures amqps:// connections. Default nil: the system's roots
	// and the URL's host name.
	TLS *tls.Config

	// Logger receives connection events (connected, lost). Default
	// slog.Default().
	Logger *slog.Logger
}

// RouteData is what Config.RoutingKey renders. Every field is the entry's.
type RouteData struct {
	Topic       string
	Key         string
	OrderingKey string
	Queue       string
	Priority    int
	Headers     map[string]string
	// Payload is the entry's JSON payload, decoded (objects as
	// map[string]any, numbers as json.Number). It is decoded only when the
	// template mentions Payload.
	Payload any
}

// routeFields are RouteData's field names, which a template may use.
var routeFields = map[string]bool{
	"Topic": true, "Key": true, "OrderingKey": true, "Queue": true,
	"Priority": true, "Headers": true, "Payload": true,
}

// settings is a validated Config, ready to use.
type settings struct {
	Config
	route       *template.Template
	needPayload bool   // the template mentions Payload
	addr        string // host:port of the broker, for messages
	amqp        amqp.Config
}

// withDefaults fills in defaults and validates c, returning every problem
// joined.
func (c Config) withDefaults() (*settings, error) {
	var errs []error
	bad := func(field string, err error, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...), Err: err})
	}
	s := &settings{}
	if c.URL == "" {
		bad("URL", nil, "required (amqp://user:password@host:5672/vhost)")
	} else if uri, err := amqp.ParseURI(c.URL); err != nil {
		// The parse error may quote the URL; say what is wrong without it.
		bad("URL", nil, "not an AMQP URI (want amqp:// or amqps://user:password@host:port/vhost)")
	} else {
		s.addr = fmt.Sprintf("%s:%d", uri.Host, uri.Port)
	}
	if len(c.Exchange) > maxShortString {
		bad("Exchange", nil, "longer than %d bytes", maxShortString)
	}
	if c.RoutingKey == "" {
		c.RoutingKey = DefaultRoutingKey
	}
	tmpl, err := template.New("routing key").Option("missingkey=error").Parse(c.RoutingKey)
	if err != nil {
		bad("RoutingKey", err, "%v", err)
	} else if used, err := checkFields(tmpl.Tree.Root); err != nil {
		bad("RoutingKey", err, "%v (known: .Topic, .Key, .OrderingKey, .Queue, .Priority, .Headers, .Payload)", err)
	} else {
		s.route = tmpl
		s.needPayload = used["Payload"]
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
	if c.ConfirmTimeout < 0 {
		bad("ConfirmTimeout", nil, "negative (%s)", c.ConfirmTimeout)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DialTimeout < 0 {
		bad("DialTimeout", nil, "negative (%s)", c.DialTimeout)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Heartbeat < time.Second {
		bad("Heartbeat", nil, "%s; at least 1s", c.Heartbeat)
	}
	if c.MaxChannels == 0 {
		c.MaxChannels = DefaultMaxChannels
	}
	if c.MaxChannels < 0 || c.MaxChannels > 2047 {
		bad("MaxChannels", nil, "%d; from 1 to 2047 (the broker's default channel_max)", c.MaxChannels)
	}
	if c.AppID == "" {
		c.AppID = DefaultAppID
	}
	if len(c.AppID) > maxShortString {
		bad("AppID", nil, "longer than %d bytes", maxShortString)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.Config = c
	s.amqp = amqp.Config{
		Heartbeat:       c.Heartbeat,
		TLSClientConfig: c.TLS,
		Dial:            amqp.DefaultDial(c.DialTimeout),
		Properties:      amqp.Table{"connection_name": c.AppID + " (txoutbox rabbitmq publisher)"},
	}
	return s, nil
}

// checkFields returns the RouteData fields the template names at the top
// level (see tmplfields.Used), or an error for the first name RouteData
// lacks (a typo such as {{.Topik}}), which would otherwise fail every entry.
func checkFields(root *parse.ListNode) (map[string]bool, error) {
	used := map[string]bool{}
	for _, f := range tmplfields.Used(root) {
		if !routeFields[f] {
			return nil, fmt.Errorf("unknown field .%s", f)
		}
		used[f] = true
	}
	return used, nil
}
