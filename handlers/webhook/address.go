package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// The address check is an allow-list: an address may be connected to only
// if it is global unicast — IPv4 outside every block below, IPv6 inside
// 2000::/3 and outside every block below. The blocks are those of the IANA
// IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its
// updates), plus multicast and the reserved space. Blocks the registry
// marks globally reachable (AS112, AMT, the 2001::/23 anycast services)
// are refused too: no webhook receiver lives there.
//
// IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible,
// IPv4-translated, NAT64, 6to4, Teredo) are refused whatever the IPv4
// address they carry: they would be connected to through a translator
// whose reach the check cannot see. Give the IPv4 address itself. The one
// exception is the dial-time check of an address the operating system
// resolved: a resolver may hand back an IPv4 address in its IPv4-mapped
// form, which is judged as the IPv4 address it is.

// special is one refused block; embeds4 says where the IPv6 form carries
// an IPv4 address (the byte offset), for the refusal's message.
type special struct {
	prefix  netip.Prefix
	reason  string
	embeds4 int // 0: carries none
}

func block(prefix, reason string) special {
	return special{prefix: netip.MustParsePrefix(prefix), reason: reason}
}

func embedding(prefix, reason string, at int) special {
	return special{prefix: netip.MustParsePrefix(prefix), reason: reason, embeds4: at}
}

// special4 are the refused IPv4 blocks.
var special4 = []special{
	block("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
	block("10.0.0.0/8", "private (10.0.0.0/8)"),
	block("100.64.0.0/10", "shared address space (100.64.0.0/10, carrier-grade NAT)"),
	block("127.0.0.0/8", "loopback (127.0.0.0/8)"),
	block("169.254.0.0/16", "link-local (169.254.0.0/16)"),
	block("172.16.0.0/12", "private (172.16.0.0/12)"),
	block("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
	block("192.0.2.0/24", "documentation (192.0.2.0/24)"),
	block("192.31.196.0/24", "AS112 (192.31.196.0/24)"),
	block("192.52.193.0/24", "AMT (192.52.193.0/24)"),
	block("192.88.99.0/24", "6to4 relay anycast (192.88.99.0/24)"),
	block("192.168.0.0/16", "private (192.168.0.0/16)"),
	block("192.175.48.0/24", "AS112 (192.175.48.0/24)"),
	block("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
	block("198.51.100.0/24", "documentation (198.51.100.0/24)"),
	block("203.0.113.0/24", "documentation (203.0.113.0/24)"),
	block("224.0.0.0/4", "multicast (224.0.0.0/4)"),
	block("240.0.0.0/4", "reserved (240.0.0.0/4, including broadcast)"),
}

// special6 are the refused IPv6 blocks, most specific first: the first
// that contains an address names it.
var special6 = []special{
	block("::/128", "unspecified (::)"),
	block("::1/128", "loopback (::1)"),
	embedding("::ffff:0:0/96", "IPv4-mapped (::ffff:0:0/96)", 12),
	embedding("::ffff:0:0:0/96", "IPv4-translated (::ffff:0:0:0/96)", 12),
	embedding("::/96", "IPv4-compatible (::/96, deprecated)", 12),
	embedding("64:ff9b::/96", "NAT64 (64:ff9b::/96)", 12),
	embedding("64:ff9b:1::/48", "NAT64, local use (64:ff9b:1::/48)", 12),
	block("100::/64", "discard-only (100::/64)"),
	block("100:0:0:1::/64", "dummy prefix (100:0:0:1::/64)"),
	block("2001::/32", "Teredo (2001::/32)"),
	block("2001:2::/48", "benchmarking (2001:2::/48)"),
	block("2001:db8::/32", "documentation (2001:db8::/32)"),
	block("2001::/23", "IETF protocol assignments (2001::/23)"),
	embedding("2002::/16", "6to4 (2002::/16)", 2),
	block("2620:4f:8000::/48", "AS112 (2620:4f:8000::/48)"),
	block("3fff::/20", "documentation (3fff::/20)"),
	block("5f00::/16", "segment routing (5f00::/16)"),
	block("fc00::/7", "unique local, private (fc00::/7)"),
	block("fe80::/10", "link-local (fe80::/10)"),
	block("fec0::/10", "site-local (fec0::/10, deprecated)"),
	block("ff00::/8", "multicast (ff00::/8)"),
}

// globalUnicast6 is the IPv6 global unicast space (RFC 4291, IANA IPv6
// Address Space registry): everything else is refused.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// metadataAddrs are the cloud instance metadata services, named in the
// refusal so that the reason is plain.
var metadataAddrs = map[netip.Addr]string{
	netip.MustParseAddr("169.254.169.254"): "link-local (cloud metadata service)", // AWS, GCP, Azure, ...
	netip.MustParseAddr("169.254.170.2"):   "link-local (cloud metadata service)", // AWS ECS task metadata
	netip.MustParseAddr("fd00:ec2::254"):   "unique local (cloud metadata service)",
}

// refused returns why ip may not be connected to, or "" if it may: only
// global unicast addresses outside the special-purpose blocks are allowed.
// An IPv4-mapped ip is refused as such; see resolved for addresses that
// come from a resolver.
func refused(ip netip.Addr) string {
	ip = ip.WithZone("")
	if !ip.IsValid() {
		return "not an IP address"
	}
	if r, ok := metadataAddrs[ip]; ok {
		return r
	}
	if ip.Is4() {
		for _, s := range special4 {
			if s.prefix.Contains(ip) {
				return s.reason
			}
		}
		return ""
	}
	for _, s := range special6 {
		if s.prefix.Contains(ip) {
			if s.embeds4 == 0 {
				return s.reason
			}
			b := ip.As16()
			v4 := netip.AddrFrom4([4]byte(b[s.embeds4 : s.embeds4+4]))
			return s.reason + " carrying " + v4.String() + "; use the IPv4 address itself"
		}
	}
	if !globalUnicast6.Contains(ip) {
		return "not global unicast (outside 2000::/3)"
	}
	return ""
}

// resolved is refused for an address the operating system gave: a
// resolver or the socket layer may write an IPv4 address in its
// IPv4-mapped form, and the connection then goes to that IPv4 address.
func resolved(ip netip.Addr) string {
	return refused(ip.WithZone("").Unmap())
}

// lookupFunc resolves a host name to its addresses.
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// dialFunc connects to an address ("ip:port" once the guard ran).
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// guard dials only addresses that refused allows. It resolves the host
// itself, checks every address the name has, and connects to the checked
// IP, so the address checked is the address connected to: a name that
// resolves to an internal address, or is rebound to one between two
// lookups, is refused. A name with any refused address is refused as a
// whole rather than have some of its addresses tried.
type guard struct {
	lookup lookupFunc
	dial   dialFunc
}

// DialContext is the transport's dialer.
func (g guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, &net.AddrError{Err: "invalid port", Addr: address}
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		// An IP literal from a URL: judged as written.
		if reason := refused(ip); reason != "" {
			return nil, &AddressError{Addr: ip.WithZone(""), Reason: reason}
		}
		addrs = []netip.Addr{ip}
	} else {
		found, err := g.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, ip := range found {
			if reason := resolved(ip); reason != "" {
				return nil, &AddressError{Addr: ip.WithZone("").Unmap(), Host: host, Reason: reason}
			}
			ip = ip.Unmap()
			if network == "tcp4" && !ip.Is4() || network == "tcp6" && !ip.Is6() {
				continue
			}
			addrs = append(addrs, ip)
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no suitable address", Name: host, IsNotFound: true}
		}
	}
	var errs []error
	for _, ip := range addrs {
		c, err := g.dial(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// guardDial is a net.Dialer ControlContext, a second check just before
// each connect with the address actually dialled (the guard has already
// checked it; this keeps a mistake in the guard from reaching the
// network).
func guardDial(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &AddressError{Reason: "cannot parse dialled address " + address}
	}
	if reason := resolved(ap.Addr()); reason != "" {
		return &AddressError{Addr: ap.Addr().WithZone("").Unmap(), Reason: reason}
	}
	return nil
}

// defaultLookup resolves with the system's resolver.
func defaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
