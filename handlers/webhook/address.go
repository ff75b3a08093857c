package webhook

import (
	"context"
	"net/netip"
	"syscall"
)

// reservedRanges are refused besides what netip's predicates cover
// (loopback, private, link-local, unspecified, multicast).
var reservedRanges = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (100.64.0.0/10, carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4, including broadcast)"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6 (::/96)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (fec0::/10)"},
	{netip.MustParsePrefix("100::/64"), "discard-only (100::/64)"},
}

// metadataAddrs are the cloud instance metadata services, named in the
// refusal so that the reason is plain.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, ...
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS over IPv6
	netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task metadata
}

// nat64 prefixes embed an IPv4 address in their last 32 bits, which the
// NAT64 gateway then connects to: the embedded address is what counts.
var nat64 = []netip.Prefix{
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// refused returns why ip may not be connected to, or "" if it may.
func refused(ip netip.Addr) string {
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		for _, p := range nat64 {
			if p.Contains(ip) {
				b := ip.As16()
				if r := refused(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
					return "NAT64 of " + r
				}
				return ""
			}
		}
	}
	switch {
	case !ip.IsValid():
		return "not an IP address"
	case metadataAddrs[ip]:
		return "link-local (cloud metadata service)"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, r := range reservedRanges {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	return ""
}

// guardDial is a net.Dialer ControlContext: it runs after DNS resolution,
// just before each connect, with the address actually dialled, so neither a
// name that resolves to an internal address nor one that re-resolves
// between checks (DNS rebinding) gets through.
func guardDial(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &AddressError{Reason: "cannot parse dialled address " + address}
	}
	if reason := refused(ap.Addr()); reason != "" {
		return &AddressError{Addr: ap.Addr().WithZone(""), Reason: reason}
	}
	return nil
}
