package keepalived

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// vrrp translates the vrrp_instance blocks (and the sync groups and scripts they use).
func (t *translator) vrrp(instances, syncGroups []*Node) {
	var out []*outVRRP
	for _, n := range instances {
		if v := t.instance(n); v != nil {
			out = append(out, v)
		}
	}
	for _, g := range syncGroups {
		t.drop(g, "xlb runs one VRRP instance: sync groups are not translated yet")
	}
	for _, s := range t.scriptNodes {
		t.drop(s, "vrrp scripts are not translated yet")
	}
	if len(out) == 0 {
		return
	}
	t.out.VRRP = out[0]
	t.out.VRRP.Name = ""
	for _, n := range instances[1:] {
		t.drop(n, "xlb runs one VRRP instance: only %s is translated", instances[0].Arg(0))
	}
}

// instance translates one vrrp_instance; nil when it cannot be used.
func (t *translator) instance(n *Node) *outVRRP {
	v := &outVRRP{Name: n.Arg(0), Priority: 100}
	for _, o := range n.Children {
		switch o.Name {
		case "interface":
			if name := o.Arg(0); name != "" && len(name) <= 15 && !strings.ContainsAny(name, "/ \t\n") {
				v.Interface = name
			} else {
				t.drop(o, "%q is not an interface name", name)
			}
		case "virtual_router_id":
			if id, ok := uintArg(o, 0, 1, 255); ok {
				v.VirtualRouterID = uint8(id)
			} else {
				t.drop(o, "%q is not a router id (1-255)", o.Arg(0))
			}
		case "priority":
			if p, ok := uintArg(o, 0, 1, 255); ok {
				v.Priority = uint8(p)
			} else {
				t.drop(o, "%q is not a priority (1-255): using 100", o.Arg(0))
			}
		case "advert_int":
			if d, ok := seconds(o.Arg(0)); ok && d >= 10*time.Millisecond && d <= 40950*time.Millisecond {
				v.AdvertInterval = dur(d.Round(10 * time.Millisecond))
			} else {
				t.drop(o, "%q is not a number of seconds", o.Arg(0))
			}
		case "nopreempt":
			no := false
			v.Preempt = &no
		case "preempt_delay":
			if d, ok := seconds(o.Arg(0)); ok {
				v.PreemptDelay = dur(d)
			}
		case "unicast_src_ip":
			if a, err := netip.ParseAddr(o.Arg(0)); err == nil {
				v.SourceAddress = a.String()
			} else {
				t.drop(o, "%q is not an address", o.Arg(0))
			}
		case "unicast_peer":
			for _, p := range o.Children {
				if a, err := netip.ParseAddr(p.Name); err == nil {
					v.UnicastPeers = append(v.UnicastPeers, a.String())
				} else {
					t.drop(p, "%q is not an address", p.Name)
				}
			}
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			t.vips(v, o)
		case "garp_master_repeat":
			if r, ok := uintArg(o, 0, 1, 100); ok {
				v.GARPRepeat = int(r)
			}
		default:
			t.instanceOption(o)
		}
	}
	t.vrrpPeers(v, n)
	if v.Interface == "" || v.VirtualRouterID == 0 || len(v.VIPs) == 0 {
		t.drop(n, "a vrrp_instance needs interface, virtual_router_id and virtual_ipaddress: left out")
		return nil
	}
	t.addIface(v.Interface)
	return v
}

// vips reads a virtual_ipaddress block: "ADDR[/LEN] [dev IF] [label L] ..." per line. The
// first address's family is the instance's; xlb (like RFC 5798) runs one family per router.
func (t *translator) vips(v *outVRRP, block *Node) {
	if block.Name == "virtual_ipaddress_excluded" {
		t.approx(block, "xlb announces these in the advertisements too")
	}
	for _, line := range block.Children {
		s, _, _ := strings.Cut(line.Name, "/")
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			t.drop(line, "%q is not an address", line.Name)
			continue
		}
		a = a.Unmap()
		if a.IsMulticast() || a.IsUnspecified() || slices.Contains(v.VIPs, a.String()) || len(v.VIPs) == 255 {
			t.drop(line, "%s: not a unicast address, listed twice, or more than 255 VIPs", a)
			continue
		}
		if len(v.VIPs) > 0 && netip.MustParseAddr(v.VIPs[0]).Is4() != a.Is4() {
			t.drop(line, "one VRRP instance holds VIPs of one family (RFC 5798): use a second instance for %s", a)
			continue
		}
		if len(line.Args) > 0 {
			t.approx(line, "xlb puts the VIP on the instance's interface as a /32 or /128; %q ignored", strings.Join(line.Args, " "))
		}
		v.VIPs = append(v.VIPs, a.String())
	}
}

func (t *translator) instanceOption(o *Node) {
	switch o.Name {
	case "state":
		if strings.EqualFold(o.Arg(0), "MASTER") {
			t.approx(o, "xlb starts as backup and becomes master by priority (keepalived does the same after its first advertisement)")
		}
	case "authentication":
		t.drop(o, "VRRPv3 has no authentication; use unicast_peers or a firewall")
	case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
		t.drop(o, "notify scripts are not translated yet")
	case "track_script", "track_interface":
		t.drop(o, "tracking is not translated yet")
	case "smtp_alert":
		t.drop(o, "xlb sends no e-mail")
	case "garp_master_delay", "garp_master_refresh", "garp_master_refresh_repeat", "garp_lower_prio_repeat", "garp_lower_prio_delay":
		t.drop(o, "xlb sends its gratuitous ARPs on becoming master (garp_repeat, garp_interval)")
	case "dont_track_primary", "skip_check_adv_addr", "check_unicast_src", "strict_mode", "version":
		// Nothing to do in xlb.
	case "use_vmac", "vmac_xmit_base", "native_ipv6", "mcast_src_ip", "lvs_sync_daemon_interface":
		t.drop(o, "no xlb equivalent")
	default:
		t.drop(o, "unknown vrrp_instance keyword")
	}
}

// vrrpPeers drops the unicast peers and source address not of the VIPs' family.
func (t *translator) vrrpPeers(v *outVRRP, n *Node) {
	if len(v.VIPs) == 0 {
		return
	}
	v4 := netip.MustParseAddr(v.VIPs[0]).Is4()
	ok := func(s string) bool {
		a := netip.MustParseAddr(s)
		return a.Is4() == v4 && !a.Is4In6() && !a.IsMulticast() && !a.IsUnspecified()
	}
	var peers []string
	for _, p := range v.UnicastPeers {
		if ok(p) {
			peers = append(peers, p)
		} else {
			t.drop(n, "unicast peer %s is not a unicast address of the VIPs' family", p)
		}
	}
	v.UnicastPeers = peers
	if v.SourceAddress != "" && !ok(v.SourceAddress) {
		t.drop(n, "unicast_src_ip %s is not of the VIPs' family", v.SourceAddress)
		v.SourceAddress = ""
	}
}
