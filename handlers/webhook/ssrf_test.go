package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/handlers/webhook"
)

// loopbackNet is the network of a handler under test (webhook.NewWithNet):
// lookups answer from a table, and every connection goes to the loopback
// receiver, whatever address it was meant for, and is recorded. No test
// sends a packet beyond loopback, even with a broken address guard.
type loopbackNet struct {
	receiver string // host:port of the loopback receiver

	mu      sync.Mutex
	names   map[string][][]netip.Addr // host: answers, one per lookup (the last repeats)
	lookups map[string]int
	dialed  []string
}

func newLoopbackNet(t *testing.T, rc *receiver) *loopbackNet {
	t.Helper()
	u, err := url.Parse(rc.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &loopbackNet{receiver: u.Host, names: map[string][][]netip.Addr{}, lookups: map[string]int{}}
}

// answer makes host resolve to addrs on its next lookups (each call adds
// one answer; the last answer repeats).
func (n *loopbackNet) answer(host string, addrs ...string) {
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	n.mu.Lock()
	n.names[host] = append(n.names[host], as)
	n.mu.Unlock()
}

func (n *loopbackNet) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	answers := n.names[host]
	if len(answers) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(n.lookups[host], len(answers)-1)
	n.lookups[host]++
	return answers[i], nil
}

func (n *loopbackNet) dial(ctx context.Context, network, address string) (net.Conn, error) {
	n.mu.Lock()
	n.dialed = append(n.dialed, address)
	n.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", n.receiver)
}

func (n *loopbackNet) dials() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dialed...)
}

func newNetHandler(t *testing.T, cfg webhook.Config, n *loopbackNet) *webhook.Handler {
	t.Helper()
	h, err := webhook.NewWithNet(cfg, n.lookup, n.dial)
	if err != nil {
		t.Fatalf("webhook.NewWithNet: %v", err)
	}
	t.Cleanup(h.CloseIdleConnections)
	return h
}

// Without AllowPrivateNetworks, only global unicast addresses are
// connected to. IP literals in ad-hoc URLs are refused before any
// connection; names are resolved when the connection is about to be made
// and refused if any of their addresses is refused. The receiver on
// loopback would answer every request, but sees none of the refused ones.
func TestInternalAddressesAreRefused(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	n := newLoopbackNet(t, rc)
	n.answer("localhost", "127.0.0.1", "::1")
	n.answer("internal.test", "10.0.0.1")
	n.answer("metadata.test", "169.254.169.254")
	n.answer("mixed.test", "93.184.215.14", "10.0.0.1")
	n.answer("mapped.test", "::ffff:127.0.0.1")
	n.answer("nat64.test", "64:ff9b::808:808")
	n.answer("doc.test", "2001:db8::1")
	secret := newSecret(t)
	h := newNetHandler(t, webhook.Config{
		Endpoints: map[string]webhook.Endpoint{
			// A name, not a literal: only resolution tells it is loopback.
			"local": {URL: "http://localhost:8080/hook", Secrets: []string{secret}},
		},
		AdHoc: &webhook.Endpoint{Secrets: []string{secret}},
	}, n)
	for _, tc := range []struct {
		name   string
		ev     webhook.Event
		reason string // the start of AddressError.Reason
		addr   string // AddressError.Addr
	}{
		// IP literals
		{"127.0.0.1", webhook.Event{URL: "http://127.0.0.1:8080/hook"}, "loopback", "127.0.0.1"},
		{"[::1]", webhook.Event{URL: "http://[::1]:8080/hook"}, "loopback", "::1"},
		{"10.0.0.1", webhook.Event{URL: "http://10.0.0.1/hook"}, "private", "10.0.0.1"},
		{"169.254.169.254", webhook.Event{URL: "http://169.254.169.254/latest/meta-data/"}, "link-local (cloud metadata service)", "169.254.169.254"},
		{"100.64.0.1 (CGNAT)", webhook.Event{URL: "http://100.64.0.1/"}, "shared address space", "100.64.0.1"},
		{"0.0.0.0", webhook.Event{URL: "http://0.0.0.0/"}, `"this network"`, "0.0.0.0"},
		{"192.0.2.1 (documentation)", webhook.Event{URL: "https://192.0.2.1/"}, "documentation", "192.0.2.1"},
		{"IPv4-mapped loopback", webhook.Event{URL: "http://[::ffff:127.0.0.1]:8080/"}, "IPv4-mapped", "::ffff:127.0.0.1"},
		{"IPv4-mapped public", webhook.Event{URL: "http://[::ffff:8.8.8.8]/"}, "IPv4-mapped", "::ffff:8.8.8.8"},
		{"IPv4-translated", webhook.Event{URL: "http://[::ffff:0:a00:1]/"}, "IPv4-translated", "::ffff:0:a00:1"},
		{"NAT64", webhook.Event{URL: "http://[64:ff9b::808:808]/"}, "NAT64", "64:ff9b::808:808"},
		{"6to4", webhook.Event{URL: "http://[2002:c000:204::1]/"}, "6to4", "2002:c000:204::1"},
		{"Teredo", webhook.Event{URL: "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"}, "Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
		{"ULA", webhook.Event{URL: "http://[fd12::1]/"}, "unique local", "fd12::1"},
		{"multicast", webhook.Event{URL: "http://[ff02::1]/"}, "multicast", "ff02::1"},
		// names, resolved at dial time
		{"localhost (endpoint)", webhook.Event{Endpoint: "local"}, "loopback", "127.0.0.1"},
		{"name of a private address", webhook.Event{URL: "http://internal.test/"}, "private", "10.0.0.1"},
		{"name of the metadata service", webhook.Event{URL: "http://metadata.test/"}, "link-local (cloud metadata service)", "169.254.169.254"},
		{"name with a public and a private address", webhook.Event{URL: "http://mixed.test/"}, "private", "10.0.0.1"},
		{"name of an IPv4-mapped loopback address", webhook.Event{URL: "http://mapped.test/"}, "loopback", "127.0.0.1"},
		{"name of a NAT64 address", webhook.Event{URL: "http://nat64.test/"}, "NAT64", "64:ff9b::808:808"},
		{"name of a documentation address", webhook.Event{URL: "http://doc.test/"}, "documentation", "2001:db8::1"},
	} {
		tc.ev.Type = "t"
		err := h.Handle(context.Background(), entry("k-ssrf", tc.ev))
		var aerr *webhook.AddressError
		switch {
		case !errors.Is(err, webhook.ErrForbiddenAddress) || !errors.As(err, &aerr):
			t.Errorf("%s: %v; want ErrForbiddenAddress", tc.name, err)
		case !isPermanent(err):
			t.Errorf("%s: %v; want a permanent error", tc.name, err)
		case aerr.Addr.String() != tc.addr || !strings.HasPrefix(aerr.Reason, tc.reason):
			t.Errorf("%s: refused %s (%s); want %s (%s...)", tc.name, aerr.Addr, aerr.Reason, tc.addr, tc.reason)
		}
	}
	if d := n.dials(); len(d) != 0 {
		t.Errorf("connections were made for refused addresses: %q", d)
	}
	if c := rc.count(); c != 0 {
		t.Fatalf("the receiver got %d requests", c)
	}
}

// A name is judged on every connection, with the addresses it resolves to
// then: one rebound from a public to an internal address between two
// deliveries is refused the second time (DNS rebinding), and the handler
// connects to the address it checked, never resolving again in between.
func TestReboundNameIsRefusedAtDialTime(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	n := newLoopbackNet(t, rc)
	n.answer("rebind.test", "93.184.215.14") // first lookup: public
	n.answer("rebind.test", "127.0.0.1")     // then: loopback
	h := newNetHandler(t, webhook.Config{AdHoc: &webhook.Endpoint{Secrets: []string{newSecret(t)}}}, n)
	ev := webhook.Event{URL: "http://rebind.test:8080/hook", Type: "t"}

	if err := h.Handle(context.Background(), entry("k-1", ev)); err != nil {
		t.Fatalf("first delivery, to the public address: %v", err)
	}
	if d := n.dials(); len(d) != 1 || d[0] != "93.184.215.14:8080" {
		t.Fatalf("dialled %q; want the checked address 93.184.215.14:8080", d)
	}
	h.CloseIdleConnections() // the next delivery needs a new connection

	err := h.Handle(context.Background(), entry("k-2", ev))
	var aerr *webhook.AddressError
	if !errors.As(err, &aerr) || !isPermanent(err) || aerr.Host != "rebind.test" || !aerr.Addr.IsLoopback() {
		t.Fatalf("second delivery: %v; want a permanent *AddressError for rebind.test's loopback address", err)
	}
	if d := n.dials(); len(d) != 1 {
		t.Fatalf("dialled %q; want no connection after the rebinding", d)
	}
	if c := rc.count(); c != 1 {
		t.Fatalf("the receiver got %d requests; want 1", c)
	}
}

// Global unicast addresses, and names that resolve only to such, are
// allowed (here connected to the loopback receiver standing in for them).
func TestGlobalAddressesAreAllowed(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	n := newLoopbackNet(t, rc)
	n.answer("public.test", "93.184.215.14", "2606:4700:4700::1111")
	n.answer("mapped.test", "::ffff:93.184.215.14") // a resolver's IPv4-mapped form of an IPv4 address
	h := newNetHandler(t, webhook.Config{AdHoc: &webhook.Endpoint{Secrets: []string{newSecret(t)}}}, n)
	for _, u := range []string{"http://public.test/", "http://mapped.test/", "http://93.184.215.14/", "http://[2606:4700:4700::1111]/"} {
		h.CloseIdleConnections()
		if err := h.Handle(context.Background(), entry("k", webhook.Event{URL: u, Type: "t"})); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if c := rc.count(); c != 4 {
		t.Fatalf("the receiver got %d requests; want 4", c)
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
