package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// vrrp translates the vrrp_instance blocks, the sync groups and the scripts they use: one
// instance becomes the vrrp section, several the vrrp_instances.
func (t *translator) vrrp(instances, syncGroups []*Node) {
	var out []*outVRRP
	names := map[string]bool{}
	for _, n := range instances {
		if names[n.Arg(0)] {
			t.drop(n, "instance %q defined twice: this one left out", n.Arg(0))
			continue
		}
		if v := t.instance(n); v != nil {
			out = append(out, v)
			names[v.Name] = true
		}
	}
	t.dedupVRRP(&out)
	for _, s := range t.scriptNodes {
		if sc := t.script(s); sc != nil {
			t.out.Scripts = append(t.out.Scripts, sc)
		}
	}
	for _, v := range out {
		t.checkTracks(v)
	}
	member := map[string]bool{}
	for _, g := range syncGroups {
		if sg := t.syncGroup(g, names, member); sg != nil {
			t.out.SyncGroups = append(t.out.SyncGroups, *sg)
		}
	}
	switch len(out) {
	case 0:
	case 1:
		t.out.VRRP = out[0]
	default:
		t.out.Instances = out
	}
}

// dedupVRRP drops instances whose VRID or VIPs an earlier one already uses.
func (t *translator) dedupVRRP(out *[]*outVRRP) {
	vrids, vips := map[uint8]string{}, map[string]string{}
	var keep []*outVRRP
	for _, v := range *out {
		if prev, dup := vrids[v.VirtualRouterID]; dup {
			t.drop(v.node, "virtual_router_id %d already used by %s: left out", v.VirtualRouterID, prev)
			continue
		}
		var own []string
		for _, a := range v.VIPs {
			if prev, dup := vips[a]; dup {
				t.drop(v.node, "VIP %s already held by %s", a, prev)
				continue
			}
			own = append(own, a)
		}
		if len(own) == 0 {
			t.drop(v.node, "no VIP of its own left: left out")
			continue
		}
		v.VIPs = own
		vrids[v.VirtualRouterID] = v.Name
		for _, a := range own {
			vips[a] = v.Name
		}
		t.addIface(v.Interface)
		keep = append(keep, v)
	}
	*out = keep
}

// instance translates one vrrp_instance; nil when it cannot be used.
func (t *translator) instance(n *Node) *outVRRP {
	v := &outVRRP{Name: n.Arg(0), Priority: 100, node: n}
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
		case "track_script":
			v.TrackScripts = append(v.TrackScripts, t.tracks(o)...)
		case "track_interface":
			v.TrackInterfaces = append(v.TrackInterfaces, t.tracks(o)...)
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			v.Notify = t.notify(v.Notify, o)
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
	if v.Name == "" {
		v.Name = fmt.Sprintf("VI_%d", v.VirtualRouterID)
	}
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

// tracks reads a track_script or track_interface block: "NAME [weight W]" per line.
func (t *translator) tracks(block *Node) []outTrack {
	var out []outTrack
	for _, l := range block.Children {
		tr := outTrack{Name: l.Name}
		for i := 0; i < len(l.Args); i++ {
			switch l.Args[i] {
			case "weight":
				w, err := strconv.Atoi(l.Arg(i + 1))
				if err != nil || w < -254 || w > 254 {
					t.drop(l, "%q is not a weight (-254..254)", l.Arg(i+1))
				} else {
					tr.Weight = w
				}
				i++
			case "reverse":
				t.drop(l, "xlb has no reversed tracking")
			default:
				t.drop(l, "unknown track option %q", l.Args[i])
			}
		}
		if block.Name == "track_interface" && (tr.Name == "" || len(tr.Name) > 15 || strings.ContainsAny(tr.Name, "/ ")) {
			t.drop(l, "%q is not an interface name", tr.Name)
			continue
		}
		out = append(out, tr)
	}
	return out
}

// checkTracks drops the track_scripts naming no translated script.
func (t *translator) checkTracks(v *outVRRP) {
	var keep []outTrack
	for _, tr := range v.TrackScripts {
		found := false
		for _, s := range t.out.Scripts {
			found = found || s.Name == tr.Name
		}
		if !found {
			t.drop(v.node, "track_script %q: no such vrrp_script (or it was not translated)", tr.Name)
			continue
		}
		keep = append(keep, tr)
	}
	v.TrackScripts = keep
}

// notify adds one notify line to n (made when nil).
func (t *translator) notify(n *outNotify, o *Node) *outNotify {
	if n == nil {
		n = &outNotify{}
	}
	cmd := command(strings.Join(o.Args, " "))
	if len(o.Args) == 1 {
		cmd = command(o.Arg(0))
	}
	if len(cmd) == 0 {
		t.drop(o, "no program given")
		return n
	}
	switch o.Name {
	case "notify_master":
		n.Master = cmd
	case "notify_backup":
		n.Backup = cmd
	case "notify_fault":
		n.Fault = cmd
	case "notify_stop":
		n.Stop = cmd
	case "notify":
		n.Any = cmd
	}
	if n.User == "" {
		n.User = t.scriptUser
	}
	return n
}

// script translates a vrrp_script.
func (t *translator) script(n *Node) *outScript {
	s := &outScript{Name: n.Arg(0)}
	interval, timeout := time.Second, time.Duration(0)
	for _, o := range n.Children {
		switch o.Name {
		case "script":
			s.Command = command(strings.Join(o.Args, " "))
			if len(o.Args) == 1 {
				s.Command = command(o.Arg(0))
			}
		case "interval", "timeout":
			d, ok := seconds(o.Arg(0))
			if !ok || d <= 0 {
				t.drop(o, "%q is not a number of seconds", o.Arg(0))
			} else if o.Name == "interval" {
				interval = d
			} else {
				timeout = d
			}
		case "weight":
			w, err := strconv.Atoi(o.Arg(0))
			if err != nil || w < -254 || w > 254 {
				t.drop(o, "%q is not a weight (-254..254)", o.Arg(0))
				continue
			}
			s.Weight = w
		case "rise", "fall":
			v, ok := uintArg(o, 0, 1, 1000)
			if !ok {
				t.drop(o, "%q is not a count", o.Arg(0))
			} else if o.Name == "rise" {
				s.Rise = int(v)
			} else {
				s.Fall = int(v)
			}
		case "user":
			s.User = o.Arg(0)
		case "init_fail":
			t.approx(o, "xlb counts a script as succeeding until its first run says otherwise")
		default:
			t.drop(o, "unknown vrrp_script keyword")
		}
	}
	if len(s.Command) == 0 {
		t.drop(n, "a vrrp_script without script: left out")
		return nil
	}
	if timeout > interval {
		t.approx(n, "timeout %v is longer than the interval %v: xlb uses %v", timeout, interval, interval)
		timeout = interval
	}
	s.Interval, s.Timeout = dur(interval), dur(timeout)
	if s.User == "" {
		s.User = t.scriptUser
	}
	return s
}

// syncGroup translates a vrrp_sync_group whose instances were translated.
func (t *translator) syncGroup(g *Node, names, member map[string]bool) *outSyncGroup {
	sg := &outSyncGroup{Name: g.Arg(0)}
	var notify *outNotify
	for _, o := range g.Children {
		switch o.Name {
		case "group":
			for _, l := range o.Children {
				for _, name := range append([]string{l.Name}, l.Args...) {
					switch {
					case !names[name]:
						t.drop(l, "no translated vrrp_instance %q", name)
					case member[name]:
						t.drop(l, "instance %q is already in a sync group", name)
					default:
						member[name] = true
						sg.Instances = append(sg.Instances, name)
					}
				}
			}
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			notify = t.notify(notify, o)
		case "smtp_alert":
			t.drop(o, "xlb sends no e-mail")
		case "global_tracking", "sync_group_tracking_weight":
			t.drop(o, "xlb tracks per instance")
		default:
			t.drop(o, "unknown vrrp_sync_group keyword")
		}
	}
	if sg.Name == "" || len(sg.Instances) == 0 {
		t.drop(g, "a sync group needs a name and translated instances: left out")
		return nil
	}
	sg.Notify = notify
	return sg
}
