package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Only global unicast addresses are allowed; everything in the IANA
// special-purpose registries, and every IPv6 form that carries an IPv4
// address, is refused.
func TestRefusedRanges(t *testing.T) {
	t.Parallel()
	refusedAddrs := []string{
		// IPv4 special-purpose blocks
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255",
		"127.0.0.1", "127.255.0.9", "169.254.0.1", "169.254.169.254", "169.254.170.2",
		"172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.0.9", "192.0.2.1", "192.31.196.1",
		"192.52.193.1", "192.88.99.1", "192.168.1.1", "192.175.48.1", "198.18.0.1",
		"198.19.255.255", "198.51.100.7", "203.0.113.7", "224.0.0.1", "239.1.1.1",
		"240.0.0.1", "255.255.255.255",
		// IPv6 special-purpose blocks
		"::", "::1", "100::1", "100:0:0:1::1", "2001:2::1", "2001:db8::1", "2001:10::1",
		"2001:20::1", "2001:1::1", "2001:4:112::1", "2620:4f:8000::1", "3fff::1", "5f00::1",
		"fc00::1", "fd12:3456::1", "fd00:ec2::254", "fe80::1", "fe80::1%eth0", "fec0::1",
		"ff02::1", "ff0e::1",
		// outside 2000::/3
		"4000::1", "1000::1", "e000::1",
		// IPv6 forms carrying an IPv4 address, whatever that address
		"::ffff:127.0.0.1", "::ffff:10.1.1.1", "::ffff:169.254.169.254", "::ffff:8.8.8.8",
		"::ffff:0:a00:1", "::ffff:0:808:808", // IPv4-translated (RFC 2765)
		"::127.0.0.1", "::8.8.8.8", // IPv4-compatible
		"64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b::808:808", "64:ff9b:1::808:808", // NAT64
		"2002:c000:204::1", "2002:808:808::1", "2002:7f00:1::1", // 6to4
		"2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
	}
	allowedAddrs := []string{
		"1.1.1.1", "8.8.8.8", "11.0.0.1", "93.184.215.14", "100.63.255.255", "100.128.0.1",
		"169.253.0.1", "172.15.0.1", "172.32.0.1", "192.0.1.1", "192.0.3.1", "192.167.1.1",
		"192.169.0.1", "198.17.255.255", "198.20.0.1", "203.0.114.7", "223.255.255.254",
		"2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1", "2001:200::1",
		"2003::1", "2620:4f:8001::1", "3ffe::1",
	}
	for _, a := range refusedAddrs {
		if r := refused(netip.MustParseAddr(a)); r == "" {
			t.Errorf("%s: allowed; want refused", a)
		}
	}
	for _, a := range allowedAddrs {
		if r := refused(netip.MustParseAddr(a)); r != "" {
			t.Errorf("%s: refused (%s); want allowed", a, r)
		}
	}
	for addr, want := range map[string]string{
		"::ffff:127.0.0.1": "IPv4-mapped (::ffff:0:0/96) carrying 127.0.0.1",
		"64:ff9b::a00:1":   "NAT64 (64:ff9b::/96) carrying 10.0.0.1",
		"2002:c000:204::1": "6to4 (2002::/16) carrying 192.0.2.4",
		"169.254.169.254":  "link-local (cloud metadata service)",
		"10.1.2.3":         "private (10.0.0.0/8)",
		"4000::1":          "not global unicast (outside 2000::/3)",
	} {
		if got := refused(netip.MustParseAddr(addr)); !strings.HasPrefix(got, want) {
			t.Errorf("%s: reason %q; want it to start with %q", addr, got, want)
		}
	}
}

// An address from a resolver or the socket layer in IPv4-mapped form is
// the IPv4 address it carries.
func TestResolvedUnmaps(t *testing.T) {
	t.Parallel()
	if r := resolved(netip.MustParseAddr("::ffff:8.8.8.8")); r != "" {
		t.Errorf("::ffff:8.8.8.8 from a resolver refused: %s", r)
	}
	if r := resolved(netip.MustParseAddr("::ffff:10.0.0.1")); !strings.HasPrefix(r, "private") {
		t.Errorf("::ffff:10.0.0.1 from a resolver: %q; want private", r)
	}
}

func TestGuardDial(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"93.184.215.14:443", "[::ffff:93.184.215.14]:443", "[2606:4700:4700::1111]:443"} {
		if err := guardDial(t.Context(), "tcp", addr, nil); err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "[fe80::1%lo]:80", "[::ffff:10.0.0.1]:80", "192.0.2.1:80", "not-an-address"} {
		err := guardDial(t.Context(), "tcp", addr, nil)
		var aerr *AddressError
		if !errors.Is(err, ErrForbiddenAddress) || !errors.As(err, &aerr) {
			t.Errorf("%s: %v; want an *AddressError", addr, err)
		}
	}
}

// fakeNet answers lookups from a table and records dials without
// connecting anywhere.
type fakeNet struct {
	names map[string][]netip.Addr
	fail  map[string]bool // dialled addresses that fail

	mu     sync.Mutex
	dialed []string
}

func (f *fakeNet) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	addrs, ok := f.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

func (f *fakeNet) dial(_ context.Context, _, address string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, address)
	f.mu.Unlock()
	if f.fail[address] {
		return nil, errors.New("connection refused (fake)")
	}
	c, s := net.Pipe()
	_ = s.Close()
	return c, nil
}

// The guard resolves names itself, refuses a name if any of its addresses
// is refused, and connects only to the addresses it checked.
func TestGuardDialContext(t *testing.T) {
	t.Parallel()
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	names := map[string][]netip.Addr{
		"public.test":          addrs("93.184.215.14"),
		"dual.test":            addrs("2606:4700:4700::1111", "93.184.215.14"),
		"internal.test":        addrs("10.0.0.1"),
		"mixed.test":           addrs("93.184.215.14", "10.0.0.1"),
		"mapped.test":          addrs("::ffff:93.184.215.14"),
		"mapped-internal.test": addrs("::ffff:127.0.0.1"),
		"nat64.test":           addrs("64:ff9b::808:808"),
		"fallback.test":        addrs("93.184.215.14", "93.184.215.15"),
	}
	for _, tc := range []struct {
		network, address string
		dialed           []string // nil: refused without a dial
		host             string   // the refusal's AddressError.Host
	}{
		{"tcp", "public.test:443", []string{"93.184.215.14:443"}, ""},
		{"tcp4", "dual.test:80", []string{"93.184.215.14:80"}, ""},
		{"tcp", "dual.test:80", []string{"[2606:4700:4700::1111]:80"}, ""},
		{"tcp", "mapped.test:80", []string{"93.184.215.14:80"}, ""},
		{"tcp", "fallback.test:80", []string{"93.184.215.14:80", "93.184.215.15:80"}, ""},
		{"tcp", "8.8.8.8:80", []string{"8.8.8.8:80"}, ""},
		{"tcp", "internal.test:80", nil, "internal.test"},
		{"tcp", "mixed.test:80", nil, "mixed.test"},
		{"tcp", "mapped-internal.test:80", nil, "mapped-internal.test"},
		{"tcp", "nat64.test:80", nil, "nat64.test"},
		{"tcp", "[::ffff:8.8.8.8]:80", nil, ""}, // a literal is judged as written
		{"tcp", "127.0.0.1:80", nil, ""},
	} {
		f := &fakeNet{names: names, fail: map[string]bool{"93.184.215.14:80": tc.address == "fallback.test:80"}}
		g := guard{lookup: f.lookup, dial: f.dial}
		c, err := g.DialContext(t.Context(), tc.network, tc.address)
		if c != nil {
			_ = c.Close()
		}
		if !slices.Equal(f.dialed, tc.dialed) {
			t.Errorf("%s %s: dialled %q; want %q", tc.network, tc.address, f.dialed, tc.dialed)
		}
		if tc.dialed != nil {
			if err != nil {
				t.Errorf("%s %s: %v", tc.network, tc.address, err)
			}
			continue
		}
		var aerr *AddressError
		if !errors.As(err, &aerr) || aerr.Host != tc.host {
			t.Errorf("%s %s: %v; want an *AddressError for host %q", tc.network, tc.address, err, tc.host)
		}
	}
}
