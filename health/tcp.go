package health

import (
	"context"
	"fmt"
	"net/netip"
)

// TCP checks that a TCP connection to Target can be opened; the connection is closed at once.
type TCP struct {
	// Target is the address and port to connect to: the backend's own address by default,
	// or the VIP when the Dialer steers the probe through the forwarding path.
	Target netip.AddrPort
	// Dialer configures the probe socket; nil means plain sockets.
	Dialer *Dialer
}

// Check connects to Target and closes the connection.
func (c *TCP) Check(ctx context.Context) (Report, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 {
		return Report{}, fmt.Errorf("tcp check %s: %w: target needs an address and a port", c.Target, ErrConfig)
	}
	conn, err := c.Dialer.dialTCP(ctx, c.Target)
	if err != nil {
		return Report{}, timeoutErr(ctx, "tcp connect", err)
	}
	// A close error says nothing about the backend's health: the connect succeeded.
	_ = conn.Close()
	return Report{}, nil
}

// String returns "tcp ADDR:PORT".
func (c *TCP) String() string { return "tcp " + c.Target.String() }
