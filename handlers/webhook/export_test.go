package webhook

import (
	"context"
	"net"
	"net/netip"
)

// NewWithNet is New with the handler's network replaced, for tests:
// lookup answers the address guard's DNS questions and dial makes every
// connection (after the guard, unless Config.AllowPrivateNetworks is set).
// A test's dial connects only to its loopback receivers, whatever address
// it is asked for, so that no test sends a packet beyond loopback even if
// the guard were broken.
func NewWithNet(cfg Config,
	lookup func(ctx context.Context, host string) ([]netip.Addr, error),
	dial func(ctx context.Context, network, address string) (net.Conn, error),
) (*Handler, error) {
	return newHandler(cfg, lookup, dial)
}
