package nats_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/relay"
)

// Every problem of a Config is reported at once, each a *ConfigError
// naming its field and matching ErrInvalidConfig (and ErrInvalidSubject
// for the template); nothing connects.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		cfg     nats.Config
		fields  []string
		subject bool
	}{
		{"no server", nats.Config{Topics: []string{"a"}}, []string{"URL"}, false},
		{"negative ack timeout", nats.Config{URL: "nats://127.0.0.1:1", Topics: []string{"a"}, AckTimeout: -1}, []string{"AckTimeout"}, false},
		{"template does not parse", nats.Config{URL: "nats://127.0.0.1:1", Topics: []string{"a"}, Subject: "x.{{.Topic"}, []string{"Subject"}, true},
		{"unknown field", nats.Config{URL: "nats://127.0.0.1:1", Topics: []string{"a"}, Subject: "x.{{.Topc}}"}, []string{"Subject"}, true},
		{"unknown field via $", nats.Config{URL: "nats://127.0.0.1:1", Topics: []string{"a"}, Subject: "{{with .Payload}}{{$.Nope}}{{end}}"}, []string{"Subject"}, true},
		{"bad stream name", nats.Config{URL: "nats://127.0.0.1:1", Topics: []string{"a"}, Stream: "ORDERS.x"}, []string{"Stream"}, false},
		{"no topics", nats.Config{URL: "nats://127.0.0.1:1"}, []string{"Topics"}, false},
		{"empty and repeated topics", nats.Config{URL: "nats://127.0.0.1:1", Topics: []string{"a", "", "a"}}, []string{"Topics[1]", "Topics[2]"}, false},
		{"everything", nats.Config{AckTimeout: -1, Subject: "{{.X}}", Stream: "a b"}, []string{"URL", "AckTimeout", "Subject", "Stream", "Topics"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pub, err := nats.Register(relay.NewHandlers(), c.cfg)
			if err == nil {
				pub.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, nats.ErrInvalidConfig) || errors.Is(err, nats.ErrInvalidSubject) != c.subject {
				t.Fatalf("%v: ErrInvalidConfig %v, ErrInvalidSubject %v (want %v)", err, errors.Is(err, nats.ErrInvalidConfig), errors.Is(err, nats.ErrInvalidSubject), c.subject)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *nats.ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not a *ConfigError", e)
				}
				if !strings.HasPrefix(ce.Error(), "nats: invalid config "+ce.Field+": ") {
					t.Errorf("message %q", ce.Error())
				}
				got = append(got, ce.Field)
			}
			if strings.Join(got, ",") != strings.Join(c.fields, ",") {
				t.Fatalf("fields %v, want %v (%v)", got, c.fields, err)
			}
		})
	}
}

// New does not require topics, and accepts templates over every field,
// including inside with and range.
func TestConfigAccepted(t *testing.T) {
	t.Parallel()
	for _, subject := range []string{
		"", "events.{{.Topic}}", "{{.Queue}}.{{.OrderingKey}}.{{.Key}}", `x.{{index .Headers "tenant"}}`,
		"x.{{with .Payload}}{{.region}}{{end}}", "x.{{range $k, $v := .Headers}}{{$k}}{{end}}", "x.{{$.Payload.a.b}}",
	} {
		pub, err := nats.New(nats.Config{URL: "nats://127.0.0.1:1", Subject: subject})
		if err != nil {
			t.Errorf("%q: %v", subject, err)
			continue
		}
		pub.Close()
	}
	if _, err := nats.Register(nil, nats.Config{}); !errors.Is(err, nats.ErrInvalidConfig) {
		t.Errorf("Register(nil): %v", err)
	}
}

// MsgID is "<topic>:<key>", or a hash when a header cannot carry it.
func TestMsgID(t *testing.T) {
	t.Parallel()
	if got := nats.MsgID("order.paid", "o-17"); got != "order.paid:o-17" {
		t.Errorf("MsgID = %q", got)
	}
	a, b := nats.MsgID("t", "line\nbreak"), nats.MsgID("t", "line\nbreak ")
	if !strings.HasPrefix(a, "txkey_") || len(a) != len("txkey_")+64 || a == b {
		t.Errorf("MsgID of keys a header cannot carry: %q, %q", a, b)
	}
}
