package control

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/inns"
)

// Resolver finds the next hop (egress interface and MAC addresses) toward
// a backend.
type Resolver interface {
	Resolve(ctx context.Context, addr netip.Addr) (dataplane.NextHop, error)
}

// Watcher is a Resolver that can tell when next hops may have changed
// (a neighbour's MAC, a route). Watch calls changed until ctx is done.
type Watcher interface {
	Watch(ctx context.Context, changed func()) error
}

// RouteSource is a Resolver that also knows the routes NAT replies take
// back to clients. An error says what could not be listed; the routes
// returned with it are still usable.
type RouteSource interface {
	Routes() ([]dataplane.Route, error)
}

// InterfaceUser is a RouteSource that can limit the routes back to clients
// to the data path's interfaces (Start gives it the configured ones).
type InterfaceUser interface {
	UseInterfaces(names []string) error
}

// KernelResolver resolves next hops through the kernel's routing and
// neighbour tables (netlink route get, then the neighbour table, asking the
// kernel to resolve an unknown neighbour), follows neighbour and route
// changes, and lists the routes back to clients for NAT. Safe for
// concurrent use.
type KernelResolver struct {
	ns    netns.NsHandle // -1: the calling thread's namespace
	mu    sync.Mutex
	hops  map[netip.Addr]bool // next-hop addresses (gateways or backends) in use
	links map[int]bool        // egress interfaces in use
	tv    throughVIP          // policy routes of checks through the VIP
}

// NewKernelResolver returns a resolver of the calling process's network
// namespace.
func NewKernelResolver() *KernelResolver {
	return NewKernelResolverIn(netns.None())
}

// NewKernelResolverIn returns a resolver of the network namespace ns (the
// caller keeps ns open while the resolver is used).
func NewKernelResolverIn(ns netns.NsHandle) *KernelResolver {
	return &KernelResolver{ns: ns, hops: map[netip.Addr]bool{}, links: map[int]bool{}}
}

// do runs fn on a thread in the resolver's namespace.
func (k *KernelResolver) do(fn func() error) error { return inns.Do(k.ns, fn) }

// Resolve returns the next hop toward addr, waiting (until ctx is done)
// for the kernel to resolve the neighbour when it is unknown.
func (k *KernelResolver) Resolve(ctx context.Context, addr netip.Addr) (hop dataplane.NextHop, err error) {
	derr := k.do(func() error {
		hop, err = k.resolve(ctx, addr)
		return nil
	})
	if derr != nil {
		return hop, derr
	}
	return hop, err
}

func (k *KernelResolver) resolve(ctx context.Context, addr netip.Addr) (dataplane.NextHop, error) {
	hop, via, err := dataplane.ResolveNextHopVia(ctx, addr)
	k.mu.Lock()
	if via.IsValid() {
		k.hops[via] = true // Watch follows its neighbour entry
	}
	if err == nil {
		k.links[hop.IfIndex] = true
	}
	k.mu.Unlock()
	return hop, err
}

// UseInterfaces adds the named interfaces (those the data path serves) to
// the ones Routes and Watch look at, so NAT replies find their way back to
// clients on them.
func (k *KernelResolver) UseInterfaces(names []string) error {
	return k.do(func() error {
		for _, n := range names {
			l, err := netlink.LinkByName(n)
			if err != nil {
				return fmt.Errorf("interface %s: %w", n, err)
			}
			k.mu.Lock()
			k.links[l.Attrs().Index] = true
			k.mu.Unlock()
		}
		return nil
	})
}

// Watch calls changed once as soon as it is subscribed, then (at once, then at
// most every 100ms) when a neighbour entry of a next hop in use or any route
// changes.
func (k *KernelResolver) Watch(ctx context.Context, changed func()) error {
	done := make(chan struct{})
	defer close(done)
	neigh := make(chan netlink.NeighUpdate, 64)
	route := make(chan netlink.RouteUpdate, 64)
	if err := netlink.NeighSubscribeAt(k.ns, neigh, done); err != nil {
		return err
	}
	if err := netlink.RouteSubscribeAt(k.ns, route, done); err != nil {
		return err
	}
	// A change made before the subscriptions existed sent no notification:
	// have the caller look once now, so there is no gap between its first
	// resolution and the first notification.
	changed()
	// Fire at once on the first change (a new client's neighbour entry is
	// wanted before its first reply comes back), then at most every 100ms.
	var pending bool
	var last time.Time
	fire := func() {
		if time.Since(last) < 100*time.Millisecond {
			pending = true
			return
		}
		pending, last = false, time.Now()
		changed()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-neigh:
			if !ok {
				return errors.New("neighbour subscription ended")
			}
			// A next hop's entry, or any entry on an egress interface
			// (a client NAT replies go to).
			if a, ok := netip.AddrFromSlice(u.IP); ok {
				k.mu.Lock()
				hit := k.hops[a.Unmap()] || k.links[u.LinkIndex]
				k.mu.Unlock()
				if hit {
					fire()
				}
			}
		case _, ok := <-route:
			if !ok {
				return errors.New("route subscription ended")
			}
			fire()
		case <-tick.C:
			if pending {
				fire()
			}
		}
	}
}

// Routes lists the ways back to clients through the interfaces in use: a
// host route per resolved neighbour, and each gateway route (the default
// route included) through its gateway's MAC. What netlink could not list is
// left out and named in the error (the routes found are still returned).
func (k *KernelResolver) Routes() (out []dataplane.Route, err error) {
	derr := k.do(func() error {
		out, err = k.routes()
		return nil
	})
	return out, errors.Join(derr, err)
}

func (k *KernelResolver) routes() ([]dataplane.Route, error) {
	k.mu.Lock()
	links := slices.Sorted(maps.Keys(k.links))
	k.mu.Unlock()
	var out []dataplane.Route
	var errs []error
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix, h dataplane.NextHop) {
		if p.IsValid() && !seen[p] {
			seen[p] = true
			out = append(out, dataplane.Route{Prefix: p, Hop: h})
		}
	}
	for _, idx := range links {
		link, err := netlink.LinkByIndex(idx)
		if err != nil {
			errs = append(errs, fmt.Errorf("routes back to clients: interface %d: %w", idx, err))
			continue
		}
		if len(link.Attrs().HardwareAddr) != 6 {
			continue // not ethernet: the data path does not send there
		}
		base := dataplane.NextHop{IfIndex: idx, MTU: link.Attrs().MTU}
		copy(base.SrcMAC[:], link.Attrs().HardwareAddr)
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			if err := linkRoutes(base, fam, add); err != nil {
				errs = append(errs, fmt.Errorf("routes back to clients: %s: %w", link.Attrs().Name, err))
			}
		}
	}
	return out, errors.Join(errs...)
}

// linkRoutes passes to add the routes of family fam through base's
// interface: a host route per usable neighbour, and each gateway route whose
// gateway is one of them.
func linkRoutes(base dataplane.NextHop, fam int, add func(netip.Prefix, dataplane.NextHop)) error {
	neighs, err := netlink.NeighList(base.IfIndex, fam)
	if err != nil {
		return fmt.Errorf("neighbours: %w", err)
	}
	macs := map[netip.Addr][6]byte{}
	for _, n := range neighs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || len(n.HardwareAddr) != 6 || !dataplane.UsableNeighbour(n.State) || a.IsLinkLocalUnicast() || a.IsMulticast() {
			continue
		}
		a = a.Unmap()
		h := base
		copy(h.DstMAC[:], n.HardwareAddr)
		macs[a] = h.DstMAC
		add(netip.PrefixFrom(a, a.BitLen()), h)
	}
	routes, err := netlink.RouteListFiltered(fam, &netlink.Route{LinkIndex: base.IfIndex, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	for _, r := range routes {
		gw, ok := netip.AddrFromSlice(r.Gw)
		if r.Gw == nil || !ok {
			continue
		}
		mac, ok := macs[gw.Unmap()]
		if !ok {
			continue
		}
		var p netip.Prefix
		if r.Dst == nil {
			p = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if fam == netlink.FAMILY_V6 {
				p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		} else if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			ones, _ := r.Dst.Mask.Size()
			p = netip.PrefixFrom(a.Unmap(), ones).Masked()
		}
		h := base
		h.DstMAC = mac
		add(p, h)
	}
	return nil
}

// resolveAll resolves every backend's next hop in parallel and records the
// results; it reports whether any changed.
func (c *Controller) resolveAll(ctx context.Context) bool {
	return c.resolve(ctx, false)
}

// resolveNew resolves the backends never resolved before (a reload's new
// ones), leaving the others, and a dead host's wait, to the follower.
func (c *Controller) resolveNew(ctx context.Context) bool {
	return c.resolve(ctx, true)
}

func (c *Controller) resolve(ctx context.Context, onlyNew bool) bool {
	c.mu.Lock()
	addrs := map[netip.Addr]bool{}
	for _, s := range c.services {
		for _, b := range s.backends {
			if !onlyNew || !b.tried {
				addrs[b.addr] = true
			}
		}
	}
	c.mu.Unlock()
	if len(addrs) == 0 {
		return false
	}
	type res struct {
		hop dataplane.NextHop
		err error
	}
	results := make(map[netip.Addr]res, len(addrs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, c.opts.ResolveTimeout)
			defer cancel()
			hop, err := c.opts.Resolver.Resolve(rctx, a)
			mu.Lock()
			results[a] = res{hop, err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for _, s := range c.services {
		for _, b := range s.backends {
			r, ok := results[b.addr]
			if !ok {
				continue // added meanwhile: the next pass resolves it
			}
			resolved := r.err == nil
			errText := ""
			if r.err != nil {
				errText = r.err.Error()
			}
			if resolved != b.resolved || r.hop != b.hop {
				changed = true
				if resolved {
					c.log.Info("next hop resolved", "service", s.cfg.Name, "backend", b.name, "ifindex", r.hop.IfIndex,
						"mac", net.HardwareAddr(r.hop.DstMAC[:]).String())
				} else {
					c.log.Warn("next hop unresolved", "service", s.cfg.Name, "backend", b.name, "err", r.err)
				}
			}
			b.resolved, b.hopErr, b.tried = resolved, errText, true
			if resolved {
				b.hop = r.hop
			}
		}
	}
	return changed
}

// follow re-resolves next hops when the resolver says they changed, every
// few seconds while some are unresolved, and every 30s regardless, and
// republishes on a change.
func (c *Controller) follow(ctx context.Context) {
	kick := make(chan struct{}, 1)
	if w, ok := c.opts.Resolver.(Watcher); ok {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			err := w.Watch(ctx, func() {
				select {
				case kick <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				c.log.Warn("not following neighbour changes", "err", err)
			}
		}()
	}
	last := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-kick:
			kicked = true // routes back to clients may have changed too
		case <-tick.C:
			if !c.anyUnresolved() && time.Since(last) < 30*time.Second {
				continue
			}
		}
		last = time.Now()
		if c.resolveAll(ctx) || kicked {
			c.mu.Lock()
			if !c.closed {
				_ = c.publishLocked("next hop change")
			}
			c.mu.Unlock()
		}
	}
}

func (c *Controller) anyUnresolved() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.services {
		for _, b := range s.backends {
			if !b.resolved {
				return true
			}
		}
	}
	return false
}
