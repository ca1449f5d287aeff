package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer says how a checker opens its probe sockets. The zero value (or a nil *Dialer) opens
// plain sockets in the calling thread's network namespace, routed by the kernel's main table.
//
// Checking through the VIP. By default a probe goes to the backend's own address. To catch a
// backend whose VIP configuration or decapsulation is broken, control can instead send the
// probe to the VIP and make it leave on the forwarding path the load balancer would use for
// that backend (what Katran and Seesaw do). The checker only sends to Target = VIP:port; the
// steering is the Dialer's job, and control sets it up per backend:
//
//   - dr: give each backend a firewall mark (Mark), and install a policy rule
//     "fwmark Mark lookup T" plus, in table T, "VIP via BACKEND dev IF onlink". The kernel then
//     sends the probe to the VIP with the backend's MAC as destination: exactly a DR-forwarded
//     packet. The backend answers from the VIP; if the LB host owns the VIP itself, it must
//     accept that source (net.ipv4.conf.IF.accept_local=1).
//   - tunnel and nat: the same mark can select a route whose device or lightweight tunnel
//     (encap) reproduces the forwarding, or Control can attach a socket filter/BPF program
//     keyed by the mark; both live in control, not here.
//
// Source and Device pin the probe's source address and egress interface (SO_BINDTODEVICE);
// Control runs last on every socket, after the options above, for anything else.
type Dialer struct {
	// Source, when valid, is the local address probes are sent from.
	Source netip.Addr
	// Device, when set, binds probe sockets to this interface (SO_BINDTODEVICE).
	Device string
	// Mark, when non-zero, is set as SO_MARK on probe sockets (needs CAP_NET_ADMIN).
	Mark uint32
	// Control, when set, is called on every probe socket before it connects or sends,
	// with the same arguments as net.Dialer.Control.
	Control func(network, address string, c syscall.RawConn) error
}

// control applies the Dialer's socket options; it has net.Dialer.Control's signature.
func (d *Dialer) control(network, address string, c syscall.RawConn) error {
	if d == nil {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		if d.Mark != 0 {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(d.Mark)); e != nil {
				serr = fmt.Errorf("set SO_MARK %d: %w", d.Mark, e)
				return
			}
		}
		if d.Device != "" {
			if e := unix.BindToDevice(int(fd), d.Device); e != nil {
				serr = fmt.Errorf("bind to device %s: %w", d.Device, e)
				return
			}
		}
	})
	if err != nil {
		return fmt.Errorf("socket control: %w", err)
	}
	if serr != nil {
		return serr
	}
	if d.Control != nil {
		return d.Control(network, address, c)
	}
	return nil
}

// source returns the configured source address, or the invalid Addr.
func (d *Dialer) source() netip.Addr {
	if d == nil {
		return netip.Addr{}
	}
	return d.Source
}

// netDialer returns a net.Dialer with the Dialer's options, keep-alive probes off (a probe
// connection lives for one check only).
func (d *Dialer) netDialer(network string) *net.Dialer {
	nd := &net.Dialer{KeepAlive: -1, Control: d.control}
	if src := d.source(); src.IsValid() {
		if network == "udp" {
			nd.LocalAddr = &net.UDPAddr{IP: src.AsSlice(), Zone: src.Zone()}
		} else {
			nd.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}
		}
	}
	return nd
}

// dialTCP connects to addr on the calling goroutine (a literal address never races two
// dials).
func (d *Dialer) dialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return d.netDialer("tcp").DialContext(ctx, "tcp", addr.String())
}

// dialUDP opens a connected UDP socket to addr: the kernel then reports an ICMP port
// unreachable as ECONNREFUSED on the next read.
func (d *Dialer) dialUDP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return d.netDialer("udp").DialContext(ctx, "udp", addr.String())
}

// deadline bounds every read and write on conn by ctx: its deadline, and cancellation at
// once. The returned stop func releases the cancellation hook.
func deadline(ctx context.Context, conn net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}
