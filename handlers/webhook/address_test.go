package webhook

import (
	"errors"
	"net/netip"
	"testing"
)

func TestRefusedRanges(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		// refused
		"127.0.0.1": true, "127.255.0.9": true, "::1": true,
		"10.0.0.1": true, "172.16.0.1": true, "172.31.255.255": true, "192.168.1.1": true,
		"fc00::1": true, "fd12:3456::1": true,
		"169.254.169.254": true, "169.254.0.1": true, "fe80::1": true, "fe80::1%eth0": true, "fd00:ec2::254": true,
		"0.0.0.0": true, "0.1.2.3": true, "::": true,
		"224.0.0.1": true, "239.1.1.1": true, "ff02::1": true,
		"100.64.0.1": true, "100.127.255.255": true,
		"240.0.0.1": true, "255.255.255.255": true, "198.18.0.1": true, "192.0.0.8": true,
		"::ffff:127.0.0.1": true, "::ffff:10.1.1.1": true, "::ffff:169.254.169.254": true,
		"64:ff9b::a00:1": true, "64:ff9b::7f00:1": true, "::127.0.0.1": true, "fec0::1": true,
		// allowed
		"8.8.8.8": false, "1.1.1.1": false, "100.63.255.255": false, "100.128.0.1": false,
		"172.15.0.1": false, "172.32.0.1": false, "192.167.1.1": false, "169.253.0.1": false,
		"2606:4700:4700::1111": false, "::ffff:8.8.8.8": false, "64:ff9b::808:808": false,
		"203.0.114.7": false,
	} {
		ip := netip.MustParseAddr(addr)
		if got := refused(ip) != ""; got != want {
			t.Errorf("%s: refused = %v (%q); want %v", addr, got, refused(ip), want)
		}
	}
}

func TestGuardDial(t *testing.T) {
	t.Parallel()
	if err := guardDial(t.Context(), "tcp4", "93.184.215.14:443", nil); err != nil {
		t.Fatalf("public address refused: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "[fe80::1%lo]:80", "not-an-address"} {
		err := guardDial(t.Context(), "tcp", addr, nil)
		var aerr *AddressError
		if !errors.Is(err, ErrForbiddenAddress) || !errors.As(err, &aerr) {
			t.Errorf("%s: %v; want an *AddressError", addr, err)
		}
	}
}
