package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"github.com/xlb-dev/xlb/bgp"
)

// BGP is the optional bgp section: this host announces each service VIP
// (/32, /128) to its routers while the service has an active backend and
// the host forwards, so that several xlb hosts behind a router's ECMP share
// the VIPs. See the bgp package.
type BGP struct {
	// LocalAS is this host's AS number (1..4294967295). Required.
	LocalAS uint32 `yaml:"local_as"`
	// RouterID is the BGP router ID, an IPv4 address. Required.
	RouterID netip.Addr `yaml:"router_id"`
	// ListenPort is the TCP port to accept sessions on; 0 (the default)
	// does not listen: xlb opens the sessions to its neighbours.
	ListenPort uint16 `yaml:"listen_port"`
	// Neighbors are the routers to peer with. At least one.
	Neighbors []BGPNeighbor `yaml:"neighbors"`
	// NextHop is the next hop announced with IPv4 VIPs (this host's
	// address on the routers' segment); required when a service has an
	// IPv4 VIP. NextHop6 is the same for IPv6 VIPs.
	NextHop  netip.Addr `yaml:"next_hop"`
	NextHop6 netip.Addr `yaml:"next_hop6"`
	// WithdrawWait is how long a clean shutdown waits, after withdrawing
	// every route and while still forwarding, for the routers to move the
	// traffic away before it stops. Default 2s; 0 written in the file
	// means no wait.
	WithdrawWait time.Duration `yaml:"withdraw_wait"`

	pos pos
}

// BGPNeighbor is one BGP peer.
type BGPNeighbor struct {
	Address netip.Addr `yaml:"address"`
	AS      uint32     `yaml:"as"`
	// Password, when set, signs the session with TCP MD5.
	Password string `yaml:"password"`
	// HoldTime is the proposed hold time, whole seconds, 3s or more.
	// Default 90s. A router drops a dead host's routes after it.
	HoldTime time.Duration `yaml:"hold_time"`
	// Port is the neighbour's BGP port. Default 179.
	Port uint16 `yaml:"port"`

	pos pos
}

// DefaultWithdrawWait is BGP.WithdrawWait when unset.
const DefaultWithdrawWait = 2 * time.Second

func (b *BGP) setPos(p pos)         { b.pos = p }
func (n *BGPNeighbor) setPos(p pos) { n.pos = p }

// normalize fills the bgp section's defaults (nil-safe).
func (b *BGP) normalize() {
	if b == nil {
		return
	}
	if b.WithdrawWait == 0 && !b.pos.has("withdraw_wait") {
		b.WithdrawWait = DefaultWithdrawWait
	}
	for i := range b.Neighbors {
		n := &b.Neighbors[i]
		if n.HoldTime == 0 && !n.pos.has("hold_time") {
			n.HoldTime = bgp.DefaultHoldTime
		}
	}
}

// validateBGP checks the bgp section, if any.
func (c *Config) validateBGP(e *errs) {
	b := c.BGP
	if b == nil {
		return
	}
	const p = "bgp"
	if b.LocalAS == 0 && !c.failed[p+".local_as"] {
		e.add(b.pos.at("local_as"), p+".local_as", ErrMissing, "local_as is required (1..4294967295)")
	}
	switch {
	case c.failed[p+".router_id"]:
	case !b.RouterID.IsValid():
		e.add(b.pos.at("router_id"), p+".router_id", ErrMissing, "router_id is required (an IPv4 address)")
	case !b.RouterID.Is4() || b.RouterID.IsUnspecified():
		e.add(b.pos.at("router_id"), p+".router_id", ErrValue, "%s is not an IPv4 address", b.RouterID)
	}
	if len(b.Neighbors) == 0 && !c.failed[p+".neighbors"] {
		e.add(b.pos.at("neighbors"), p+".neighbors", ErrMissing, "at least one neighbor is required")
	}
	seen := map[netip.Addr]int{}
	for i := range b.Neighbors {
		n := &b.Neighbors[i]
		np := fmt.Sprintf("%s.neighbors[%d]", p, i)
		switch {
		case c.failed[np+".address"]:
		case !n.Address.IsValid():
			e.add(n.pos.line, np+".address", ErrMissing, "address is required")
		case n.Address.IsUnspecified() || n.Address.IsMulticast() || n.Address == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			e.add(n.pos.at("address"), np+".address", ErrValue, "%s is not a unicast address", n.Address)
		default:
			if prev, dup := seen[n.Address]; dup {
				e.add(n.pos.at("address"), np+".address", ErrDuplicate, "neighbor %s already listed on line %d", n.Address, prev)
			}
			seen[n.Address] = n.pos.at("address")
		}
		if n.AS == 0 && !c.failed[np+".as"] {
			e.add(n.pos.at("as"), np+".as", ErrMissing, "as is required (1..4294967295)")
		}
		if h := n.HoldTime; !c.failed[np+".hold_time"] && (h < bgp.MinHoldTime || h > bgp.MaxHoldTime || h%time.Second != 0) {
			e.add(n.pos.at("hold_time"), np+".hold_time", ErrValue, "%v: want whole seconds from %v to %v", h, bgp.MinHoldTime, bgp.MaxHoldTime)
		}
		if len(n.Password) > bgp.MaxPasswordLen {
			e.add(n.pos.at("password"), np+".password", ErrValue, "longer than %d bytes", bgp.MaxPasswordLen)
		}
	}
	need4, need6 := false, false
	for _, s := range c.Services {
		need4 = need4 || s.VIP.Is4()
		need6 = need6 || s.VIP.Is6()
	}
	hop := func(field string, a netip.Addr, v6, needed bool) {
		path := p + "." + field
		switch {
		case c.failed[path]:
		case !a.IsValid() && needed:
			e.add(b.pos.at(field), path, ErrMissing, "%s is required: a service has an IPv%s VIP", field, map[bool]string{false: "4", true: "6"}[v6])
		case !a.IsValid():
		case a.Is6() != v6 || !usableUnicast(a):
			e.add(b.pos.at(field), path, ErrValue, "%s is not a usable IPv%s unicast address", a, map[bool]string{false: "4", true: "6"}[v6])
		}
	}
	hop("next_hop", b.NextHop, false, need4)
	hop("next_hop6", b.NextHop6, true, need6)
	if !b.NextHop.IsValid() && !b.NextHop6.IsValid() && !need4 && !need6 && !c.failed[p+".next_hop"] {
		e.add(b.pos.at("next_hop"), p+".next_hop", ErrMissing, "next_hop or next_hop6 is required")
	}
	if b.WithdrawWait < 0 {
		e.add(b.pos.at("withdraw_wait"), p+".withdraw_wait", ErrValue, "%v is negative", b.WithdrawWait)
	}
}

// SpeakerConfig maps the section onto the bgp package's configuration (the
// caller sets its Logger).
func (b *BGP) SpeakerConfig() bgp.Config {
	sc := bgp.Config{LocalAS: b.LocalAS, RouterID: b.RouterID, ListenPort: b.ListenPort,
		NextHop: b.NextHop, NextHop6: b.NextHop6}
	for _, n := range b.Neighbors {
		sc.Neighbors = append(sc.Neighbors, bgp.Neighbor{Address: n.Address, AS: n.AS, Password: n.Password,
			HoldTime: n.HoldTime, Port: n.Port})
	}
	return sc
}

// bgpView is the bgp section without its positions, for comparison.
func bgpView(b *BGP) *BGP {
	if b == nil {
		return nil
	}
	v := *b
	v.pos = pos{}
	v.Neighbors = nil
	for _, n := range b.Neighbors {
		n.pos = pos{}
		v.Neighbors = append(v.Neighbors, n)
	}
	return &v
}

// Equal reports whether two bgp sections (either may be nil) say the same,
// wherever in their files they are.
func (b *BGP) Equal(o *BGP) bool { return reflect.DeepEqual(bgpView(b), bgpView(o)) }
