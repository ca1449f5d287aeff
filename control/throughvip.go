package control

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/encap"
	"golang.org/x/sys/unix"
)

// Checks through the VIP (health.through_vip, method dr). A backend's probe goes to VIP:port
// from a socket marked with the backend's mark (health.Dialer.Mark); a policy rule sends
// that mark to a table of its own, where "VIP via BACKEND dev IF onlink" makes the kernel
// send the probe to the backend's MAC: the frame a DR data path forwards. A backend that has
// lost its VIP drops it, and the check fails. When the LB host owns the VIP itself, the
// kernel's "lookup local" rule (priority 0) would deliver the probe locally: it is moved
// after the marks' rules (to priority localPref) while such checks exist and put back
// afterwards, and accept_local is set on the egress interface so the backend's answer (from
// the VIP) is not a martian.

// VIPRoute is the policy route of one backend checked through its service's VIP.
type VIPRoute struct {
	Mark    uint32 // the probe sockets' SO_MARK, also the routing table's number
	VIP     netip.Addr
	Backend netip.Addr
	IfIndex int // the interface the backend is reached on
	// Tunnel services: the probe leaves encapsulated as the data path's packets do (IPv4
	// only), from TunnelSource to Backend, with Encap (and EncapPort for GUE and FOU).
	Tunnel       bool
	Encap        encap.TunnelEncap
	EncapPort    uint16
	TunnelSource netip.Addr
}

// ThroughVIPRouter is a Resolver that can install the policy routes of checks through the
// VIP. *KernelResolver is one.
type ThroughVIPRouter interface {
	// SetThroughVIP makes routes the installed set: it adds what is new, removes what is
	// gone; nil removes everything.
	SetThroughVIP(routes []VIPRoute) error
}

const (
	markBase  = 0x58000000 // marks and tables: markBase + backend ID
	markMask  = 0x00ffffff
	ruleMark  = 90  // priority of the marks' rules
	localPref = 100 // priority of the moved "lookup local" rule
)

// throughVIPMark returns the mark (and table) of the backend with ID id.
func throughVIPMark(id uint32) uint32 { return markBase | id&markMask }

type throughVIP struct {
	installed map[uint32]VIPRoute
	moved     [2]bool // "lookup local" moved, IPv4 and IPv6
	enc       probeEncap
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

func markRule(r VIPRoute) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Priority, rule.Family, rule.Mark, rule.Table = ruleMark, family(r.VIP), r.Mark, int(r.Mark)
	mask := uint32(0xffffffff)
	rule.Mask = &mask
	return rule
}

func markRoute(r VIPRoute) *netlink.Route {
	return &netlink.Route{LinkIndex: r.IfIndex, Dst: hostPrefix(r.VIP), Gw: r.Backend.AsSlice(),
		Table: int(r.Mark), Flags: int(netlink.FLAG_ONLINK)}
}

func localRule(fam, pref int) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Priority, rule.Family, rule.Table = pref, fam, unix.RT_TABLE_LOCAL
	return rule
}

// SetThroughVIP implements ThroughVIPRouter in the resolver's namespace.
func (k *KernelResolver) SetThroughVIP(routes []VIPRoute) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("through vip: netlink: %w", err)
		}
		defer h.Close()
		return k.tv.set(h, routes)
	})
}

func (tv *throughVIP) set(h *netlink.Handle, routes []VIPRoute) error {
	if tv.installed == nil {
		tv.installed = map[uint32]VIPRoute{}
	}
	want := make(map[uint32]VIPRoute, len(routes))
	for _, r := range routes {
		r.VIP, r.Backend = r.VIP.Unmap(), r.Backend.Unmap()
		want[r.Mark] = r
	}
	var errs []error
	for m, r := range tv.installed {
		if w, ok := want[m]; ok && w == r {
			continue
		}
		if err := h.RouteDel(markRoute(r)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("through vip: delete route %v via %v: %w", r.VIP, r.Backend, err))
		}
		if err := h.RuleDel(markRule(r)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("through vip: delete rule fwmark %#x: %w", m, err))
		}
		delete(tv.installed, m)
	}
	local := [2]bool{}
	for m, r := range want {
		fi := 0
		if r.VIP.Is6() {
			fi = 1
		}
		if isLocal(h, r.VIP) {
			local[fi] = true
			if r.VIP.Is4() {
				if err := setAcceptLocal(h, r.IfIndex); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if _, ok := tv.installed[m]; ok {
			continue
		}
		if err := h.RouteReplace(markRoute(r)); err != nil {
			errs = append(errs, fmt.Errorf("through vip: route %v via %v in table %#x: %w", r.VIP, r.Backend, m, err))
			continue
		}
		if err := h.RuleAdd(markRule(r)); err != nil && !errors.Is(err, unix.EEXIST) {
			_ = h.RouteDel(markRoute(r))
			errs = append(errs, fmt.Errorf("through vip: rule fwmark %#x: %w", m, err))
			continue
		}
		tv.installed[m] = r
	}
	for i, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		switch {
		case local[i] && !tv.moved[i]:
			// Add the new place first: the local table is never out of reach.
			if err := h.RuleAdd(localRule(fam, localPref)); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("through vip: move the local rule: %w", err))
				continue
			}
			if err := h.RuleDel(localRule(fam, 0)); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("through vip: move the local rule: %w", err))
			}
			tv.moved[i] = true
		case !local[i] && tv.moved[i]:
			if err := h.RuleAdd(localRule(fam, 0)); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("through vip: restore the local rule: %w", err))
				continue
			}
			if err := h.RuleDel(localRule(fam, localPref)); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("through vip: restore the local rule: %w", err))
			}
			tv.moved[i] = false
		}
	}
	if err := tv.enc.set(h, want); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// isLocal reports whether a is one of the host's addresses (a route of type local).
func isLocal(h *netlink.Handle, a netip.Addr) bool {
	rs, err := h.RouteListFiltered(family(a), &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: hostPrefix(a)},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	return err == nil && slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Type == unix.RTN_LOCAL })
}

// setAcceptLocal turns net.ipv4.conf.IF.accept_local on: the backend answers a probe from
// the VIP, one of the host's own addresses. Runs on a thread in the namespace.
func setAcceptLocal(h *netlink.Handle, ifindex int) error {
	l, err := h.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("through vip: interface %d: %w", ifindex, err)
	}
	p := "/proc/sys/net/ipv4/conf/" + l.Attrs().Name + "/accept_local"
	if b, err := os.ReadFile(p); err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("through vip: accept_local on %s: %w", l.Attrs().Name, err)
	}
	return nil
}
