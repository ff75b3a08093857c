package webhook_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/txoutbox/txoutbox/handlers/webhook"
)

// Without AllowPrivateNetworks, internal addresses are refused when the
// connection is about to be made: the receiver on 127.0.0.1 would answer,
// but never sees a request. Ad-hoc URLs and a name that resolves to
// loopback go through the dial-time check (endpoint IP literals are refused
// earlier, by New: see TestNewRejectsInvalidConfig).
func TestInternalAddressesAreRefusedAtDialTime(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	u, err := url.Parse(rc.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	secret := newSecret(t)
	h := newHandler(t, webhook.Config{
		Endpoints: map[string]webhook.Endpoint{
			// A name, not a literal: only resolution tells it is loopback.
			"local": {URL: "http://localhost:" + port + "/hook", Secrets: []string{secret}},
		},
		AdHoc: &webhook.Endpoint{Secrets: []string{secret}},
	})
	for _, tc := range []struct {
		name string
		ev   webhook.Event
		want func(*webhook.AddressError) bool
	}{
		{"127.0.0.1", webhook.Event{URL: "http://127.0.0.1:" + port + "/hook"}, func(a *webhook.AddressError) bool { return a.Addr.String() == "127.0.0.1" }},
		{"[::1]", webhook.Event{URL: "http://[::1]:" + port + "/hook"}, func(a *webhook.AddressError) bool { return a.Addr.String() == "::1" }},
		{"10.0.0.1", webhook.Event{URL: "http://10.0.0.1/hook"}, func(a *webhook.AddressError) bool { return a.Reason == "private" }},
		{"169.254.169.254", webhook.Event{URL: "http://169.254.169.254/latest/meta-data/"}, func(a *webhook.AddressError) bool {
			return a.Reason == "link-local (cloud metadata service)"
		}},
		{"100.64.0.1 (CGNAT)", webhook.Event{URL: "http://100.64.0.1/"}, func(a *webhook.AddressError) bool { return a.Addr.String() == "100.64.0.1" }},
		{"IPv4-mapped loopback", webhook.Event{URL: "http://[::ffff:127.0.0.1]:" + port + "/"}, func(a *webhook.AddressError) bool { return a.Reason == "loopback" }},
		{"localhost", webhook.Event{Endpoint: "local"}, func(a *webhook.AddressError) bool { return a.Addr.IsLoopback() }},
	} {
		tc.ev.Type = "t"
		err := h.Handle(context.Background(), entry("k-ssrf", tc.ev))
		var aerr *webhook.AddressError
		switch {
		case !errors.Is(err, webhook.ErrForbiddenAddress) || !errors.As(err, &aerr):
			t.Errorf("%s: %v; want ErrForbiddenAddress", tc.name, err)
		case !isPermanent(err):
			t.Errorf("%s: %v; want a permanent error", tc.name, err)
		case !tc.want(aerr):
			t.Errorf("%s: refused %s (%s); not the expected address", tc.name, aerr.Addr, aerr.Reason)
		}
	}
	if n := rc.count(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
}

// The same receiver is reachable once AllowPrivateNetworks is set.
func TestAllowPrivateNetworksAllowsLoopback(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	u, _ := url.Parse(rc.srv.URL)
	h := newHandler(t, oneEndpoint("http://localhost:"+u.Port(), newSecret(t)))
	if err := h.Handle(context.Background(), entry("k", webhook.Event{Endpoint: "recv", Type: "t"})); err != nil {
		t.Fatal(err)
	}
	if rc.count() != 1 {
		t.Fatalf("%d requests; want 1", rc.count())
	}
}
