package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Errors returned by this package.
var (
	ErrConfig      = errors.New("lab: bad config")
	ErrClosed      = errors.New("lab: closed")
	ErrNotRoot     = errors.New("lab: needs root")
	ErrUnsupported = errors.New("lab: kernel feature missing")
)

// configure sets sysctls, VIPs and routes once every interface exists.
func (n *Net) configure(cseg segment) error {
	v6 := !n.Config.DisableIPv6
	cli := cseg.addr(hostCli).Addr()
	cli6 := cseg.addr6(hostCli).Addr()
	// LBs: accept_local (a frame that comes back with one of the LB's addresses as source
	// is not dropped), forwarding for TwoArm, default route via the client so replies to
	// any source address (e.g. a generator spreading sources over 198.18.0.0/15) go there.
	for _, lb := range n.LBs {
		sc := map[string]string{
			"net.ipv4.conf.all.accept_local":  "1",
			"net.ipv4.conf.eth0.accept_local": "1",
		}
		if n.Kind == TwoArm {
			sc["net.ipv4.ip_forward"] = "1"
			sc["net.ipv6.conf.all.forwarding"] = "1"
			sc["net.ipv4.conf.eth1.accept_local"] = "1"
		}
		if err := lb.Sysctls(sc); err != nil {
			return err
		}
		if err := n.defaultVia(lb.Host(), cli, cli6); err != nil {
			return err
		}
	}
	if err := n.clientPool(); err != nil {
		return err
	}
	if !n.Config.NoVIPOnLB {
		if err := n.LB.AddAddr("eth0", netip.PrefixFrom(n.VIP, 32)); err != nil {
			return err
		}
		if v6 {
			if err := n.LB.AddAddr("eth0", netip.PrefixFrom(n.VIP6, 128)); err != nil {
				return err
			}
		}
	}
	if n.Kind == TwoArm {
		// The client reaches net B through the LB (plain kernel routing when no dataplane
		// runs); backends route everything via the LB's net B address.
		lbA := segA.addr(hostLB).Addr()
		if err := n.Client.AddRoute(segB.prefix(), lbA, "eth0"); err != nil {
			return err
		}
		if v6 {
			if err := n.Client.AddRoute(segB.prefix6(), segA.addr6(hostLB).Addr(), "eth0"); err != nil {
				return err
			}
		}
		for _, b := range n.Backends {
			if n.Config.Decap {
				if err := n.vipOnLo(b); err != nil {
					return err
				}
			}
			if err := n.defaultVia(b.Host, segB.addr(hostGW).Addr(), segB.addr6(hostGW).Addr()); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range n.Backends {
		if err := n.vipOnLo(b); err != nil {
			return err
		}
		if err := n.defaultVia(b.Host, cli, cli6); err != nil {
			return err
		}
	}
	return nil
}

// vipOnLo puts the VIPs on a backend's lo (DR and tunnel: OneArm always, TwoArm with
// Config.Decap) with ARP for them answered by the LB only (arp_ignore=1: answer only for
// addresses on the receiving interface; arp_announce=2: never use the VIP as the source of
// an ARP request). For IPv6 Linux answers a neighbour solicitation only for addresses on
// the receiving interface, so the /128 on lo stays silent (TestOneArm checks both).
func (n *Net) vipOnLo(b *Backend) error {
	if err := b.Sysctls(map[string]string{
		"net.ipv4.conf.all.arp_ignore":    "1",
		"net.ipv4.conf.eth0.arp_ignore":   "1",
		"net.ipv4.conf.all.arp_announce":  "2",
		"net.ipv4.conf.eth0.arp_announce": "2",
		"net.ipv4.conf.all.accept_local":  "1",
		"net.ipv4.conf.eth0.accept_local": "1",
	}); err != nil {
		return err
	}
	if err := b.AddAddr("lo", netip.PrefixFrom(n.VIP, 32)); err != nil {
		return err
	}
	if n.Config.DisableIPv6 {
		return nil
	}
	return b.AddAddr("lo", netip.PrefixFrom(n.VIP6, 128))
}

// waitUp waits until every interface the topology made is operationally up. The kernel
// attaches an interface's real qdisc (until then a "noop" one drops every packet) and sets
// its operstate in the same deferred link-watch step, which it rate-limits to one a
// second: without this wait a test's first packet is often lost and TCP retries after 1s.
func (n *Net) waitUp(timeout time.Duration) error {
	type want struct {
		ns   *NS
		name string
	}
	var ws []want
	for _, h := range n.hosts() {
		for _, i := range h.Ifaces {
			ws = append(ws, want{h.NS, i.Name}, want{n.Switch, i.Peer})
		}
	}
	deadline := time.Now().Add(timeout)
	for _, w := range ws {
		for {
			l, err := w.ns.nl.LinkByName(w.name)
			if err != nil {
				return fmt.Errorf("%s: find %s: %w", w.ns.name, w.name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s not up after %v (operstate %v)", w.ns.name, w.name, timeout, l.Attrs().OperState)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// hosts returns the client, the LBs and the backends.
func (n *Net) hosts() []*Host {
	hs := append([]*Host{n.Client}, n.LBs...)
	for _, b := range n.Backends {
		hs = append(hs, b.Host)
	}
	return hs
}

// Client source pools (inside 198.18.0.0/15 and 2001:2::/48, apart from every segment).
var (
	clientPool  = netip.MustParsePrefix("198.18.64.0/18")
	clientPool6 = netip.MustParsePrefix("2001:2:0:4000::/52")
)

// clientPool routes the client source pools locally in the client namespace.
func (n *Net) clientPool() error {
	sc := map[string]string{"net.ipv4.ip_nonlocal_bind": "1"}
	pools := []netip.Prefix{clientPool}
	if !n.Config.DisableIPv6 {
		sc["net.ipv6.ip_nonlocal_bind"] = "1"
		pools = append(pools, clientPool6)
	}
	if err := n.Client.Sysctls(sc); err != nil {
		return err
	}
	lo, err := n.Client.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("%s: find lo: %w", n.Client.name, err)
	}
	for _, p := range pools {
		r := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: ipNet(p), Type: unix.RTN_LOCAL,
			Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}
		if err := n.Client.nl.RouteAdd(r); err != nil {
			return fmt.Errorf("%s: local route %s: %w", n.Client.name, p, err)
		}
	}
	n.ClientPool = clientPool
	if !n.Config.DisableIPv6 {
		n.ClientPool6 = clientPool6
	}
	return nil
}

// Host returns h itself (so an LB *Host and a *Backend's Host read alike).
func (h *Host) Host() *Host { return h }

func (n *Net) defaultVia(h *Host, gw4, gw6 netip.Addr) error {
	if err := h.AddRoute(netip.Prefix{}, gw4, "eth0"); err != nil {
		return err
	}
	if n.Config.DisableIPv6 {
		return nil
	}
	return h.AddRoute(netip.Prefix{}, gw6, "eth0")
}

// peerXDP attaches XDP_PASS to the switch-side peers of the LB's interfaces.
func (n *Net) peerXDP() error {
	if !n.Config.PeerXDP {
		return nil
	}
	for _, lb := range n.LBs {
		for _, i := range lb.Ifaces {
			if err := n.Switch.AttachXDPPass(i.Peer); err != nil {
				return err
			}
		}
	}
	return nil
}

// startBackends starts the HTTP servers and attaches the decap program.
func (n *Net) startBackends() error {
	for _, b := range n.Backends {
		if n.Config.Decap {
			p, err := b.AttachDecap("eth0")
			if err != nil {
				return err
			}
			b.Decap = p
		}
		if n.Config.NoHTTP {
			continue
		}
		s, err := b.ServeHTTP(b.Name, n.Config.HTTPPort)
		if err != nil {
			return err
		}
		b.HTTP = s
	}
	return nil
}

// Namespaces returns every namespace of the topology (switch first).
func (n *Net) Namespaces() []*NS { return append([]*NS(nil), n.all...) }

// LBIfaces returns the LB's interfaces (where the dataplane attaches XDP): eth0, and for
// TwoArm eth1 on the backends' network.
func (n *Net) LBIfaces() []Iface { return append([]Iface(nil), n.LB.Ifaces...) }

// Close stops the servers and processes, removes every veth from the switch namespace and
// deletes all namespaces of the topology. It is idempotent and safe after a failed New.
func (n *Net) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.Switch != nil {
			// Deleting the switch-side ends removes each pair at once, even if a socket
			// someone leaked keeps a host namespace alive after its name is gone.
			if links, err := n.Switch.nl.LinkList(); err == nil {
				for _, l := range links {
					if _, ok := l.(*netlink.Veth); ok {
						_ = n.Switch.nl.LinkDel(l)
					}
				}
			}
		}
		for i := len(n.all) - 1; i >= 0; i-- {
			if err := n.all[i].Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			n.closeErr = fmt.Errorf("close lab %s: %w", n.ID, errors.Join(errs...))
		}
	})
	return n.closeErr
}
