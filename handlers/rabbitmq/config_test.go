package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/relay"
)

// New refuses an invalid configuration with every problem, each a
// *ConfigError naming its field and matching ErrInvalidConfig; the URL's
// password never appears in the message.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    rabbitmq.Config
		fields []string
	}{
		{"no URL", rabbitmq.Config{}, []string{"URL"}},
		{"not AMQP", rabbitmq.Config{URL: "http://user:s3cret@host/"}, []string{"URL"}},
		{"template syntax", rabbitmq.Config{URL: "amqp://h/", RoutingKey: "{{.Topic"}, []string{"RoutingKey"}},
		{"unknown field", rabbitmq.Config{URL: "amqp://h/", RoutingKey: "x.{{.Topik}}"}, []string{"RoutingKey"}},
		{"unknown field via $", rabbitmq.Config{URL: "amqp://h/", RoutingKey: `{{with .Payload}}{{$.Nope}}{{end}}`}, []string{"RoutingKey"}},
		{"negatives", rabbitmq.Config{URL: "amqp://h/", ConfirmTimeout: -1, DialTimeout: -1, MaxChannels: -1}, []string{"ConfirmTimeout", "DialTimeout", "MaxChannels"}},
		{"short heartbeat", rabbitmq.Config{URL: "amqp://h/", Heartbeat: time.Millisecond}, []string{"Heartbeat"}},
		{"long exchange", rabbitmq.Config{URL: "amqp://h/", Exchange: strings.Repeat("x", 256)}, []string{"Exchange"}},
	} {
		_, err := rabbitmq.New(tc.cfg)
		if !errors.Is(err, rabbitmq.ErrInvalidConfig) {
			t.Errorf("%s: %v; want ErrInvalidConfig", tc.name, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the password is in the message: %v", tc.name, err)
		}
		for _, f := range tc.fields {
			found := false
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *rabbitmq.ConfigError
				if errors.As(e, &ce) && ce.Field == f {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no *ConfigError for %s in %v", tc.name, f, err)
			}
		}
	}
	// Fields of the payload, headers, and the dot inside range/with are
	// the data's business, not checked.
	for _, ok := range []string{"{{.Topic}}", "{{.Payload.a.b}}.{{index .Headers \"x\"}}", "{{with .Payload}}{{.anything}}{{end}}", "{{.OrderingKey}}.{{.Key}}.{{.Queue}}.{{.Priority}}"} {
		p, err := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:1/", RoutingKey: ok})
		if err != nil {
			t.Errorf("%q: %v", ok, err)
			continue
		}
		_ = p.Close()
	}
}

// Register refuses nil arguments and no topics; Handle after Close
// returns ErrClosed, which the relay retries.
func TestRegisterAndClosed(t *testing.T) {
	t.Parallel()
	p, err := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		rabbitmq.Register(nil, p, []string{"t"}),
		rabbitmq.Register(relay.NewHandlers(), nil, []string{"t"}),
		rabbitmq.Register(relay.NewHandlers(), p, nil),
	} {
		if !errors.Is(err, rabbitmq.ErrInvalidConfig) {
			t.Errorf("Register: %v; want ErrInvalidConfig", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(context.Background()); !errors.Is(err, rabbitmq.ErrClosed) {
		t.Fatalf("Ping after Close: %v", err)
	}
}

// A broker that cannot be reached fails the attempt (retried), quickly,
// and within the caller's context.
func TestUnreachableBroker(t *testing.T) {
	t.Parallel()
	p := newPublisher(t, rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:1/", DialTimeout: time.Second})
	err := p.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "guest:guest") {
		t.Fatalf("Ping: %v; want a connection error naming the host, not the credentials", err)
	}
}
