package preflight

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/internal/inns"
)

// drHost is where a DR backend was found: a network namespace on this host.
type drHost struct {
	ns    string // the namespace file; "" for the caller's own
	link  string // the interface that holds the backend's address
	addrs []netip.Addr
}

// drChecks checks each DR backend that a network namespace of this host
// holds, and names in one line those it cannot see.
func drChecks(o *Options) Report {
	var r Report
	var unseen []string
	cands, _ := filepath.Glob(o.Netns)
	cands = append([]string{""}, cands...)
	for _, b := range o.DRBackends {
		hst, ok := findBackend(cands, b.Addr)
		if !ok {
			unseen = append(unseen, b.Addr.String())
			continue
		}
		r = append(r, hst.check(o, b))
	}
	if len(unseen) > 0 {
		r = append(r, Result{Check: "dr backends", Status: Warn,
			Detail: fmt.Sprintf("%s: not on this host, their ARP and rp_filter sysctls are not visible", strings.Join(unseen, ", ")),
			Fix:    "on each: the VIPs on lo, sysctl net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"})
	}
	return r
}

// findBackend looks for addr on the interfaces of the namespaces cands.
func findBackend(cands []string, addr netip.Addr) (drHost, bool) {
	for _, ns := range cands {
		h, err := nsHandle(ns)
		if err != nil {
			continue
		}
		addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
		var found drHost
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			found.addrs = append(found.addrs, ip)
			if ip == addr {
				if l, err := h.LinkByIndex(a.LinkIndex); err == nil {
					found.link = l.Attrs().Name
				}
			}
		}
		h.Close()
		if err == nil && found.link != "" {
			found.ns = ns
			return found, true
		}
	}
	return drHost{}, false
}

func nsHandle(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// sysctls reads net.ipv4.conf.{all,IF}.KEY for each key in the namespace
// and returns the effective value of each (the larger of the two).
func (d drHost) sysctls(proc string, keys ...string) ([]int, error) {
	vals := make([]int, len(keys))
	err := inNetns(d.ns, func() error {
		for i, k := range keys {
			for _, dev := range []string{"all", d.link} {
				b, err := os.ReadFile(filepath.Join(proc, "sys/net/ipv4/conf", dev, k))
				if err != nil {
					return err
				}
				v, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					return fmt.Errorf("%s/%s: %w", dev, k, err)
				}
				vals[i] = max(vals[i], v)
			}
		}
		return nil
	})
	return vals, err
}

// inNetns runs fn on the calling goroutine's thread switched into the
// namespace file path ("": where it is), then switches back.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return inns.Do(ns, fn)
}

func (d drHost) check(o *Options, b DRBackend) Result {
	where := "this namespace"
	if d.ns != "" {
		where = "netns " + filepath.Base(d.ns)
	}
	r := Result{Check: "dr backend " + b.Addr.String(), Detail: fmt.Sprintf("in %s on %s", where, d.link)}
	var missing []string
	for _, v := range b.VIPs {
		if !slices.Contains(d.addrs, v) {
			missing = append(missing, v.String())
		}
	}
	if len(missing) > 0 {
		r.Status = Fail
		r.Detail += fmt.Sprintf(": VIP %s not on the backend, it drops the packets", strings.Join(missing, ", "))
		r.Fix = fmt.Sprintf("ip addr add %s/32 dev lo (on the backend)", missing[0])
		return r
	}
	if b.Addr.Is6() {
		r.Detail += ": IPv6 (neighbour discovery does not answer for a VIP on lo)"
		return r
	}
	v, err := d.sysctls(o.Proc, "arp_ignore", "arp_announce", "rp_filter")
	if err != nil {
		r.Status, r.Detail = Warn, r.Detail+fmt.Sprintf(": sysctls unreadable: %v", err)
		return r
	}
	r.Detail += fmt.Sprintf(": arp_ignore %d, arp_announce %d, rp_filter %d", v[0], v[1], v[2])
	switch {
	case v[0] < 1 || v[1] < 2:
		r.Status = Fail
		r.Detail += ": it answers or announces ARP for the VIP and steals its traffic"
		r.Fix = "sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 (on the backend)"
	case v[2] == 1:
		r.Status = Warn
		r.Detail += ": strict reverse-path filter drops clients whose route leaves by another interface"
		r.Fix = "sysctl -w net.ipv4.conf.all.rp_filter=2 (loose, on the backend)"
	}
	return r
}

// DRBackendsOf lists the backends (fallbacks included) of cfg's
// direct-routing services with the VIPs each must hold.
func DRBackendsOf(cfg *config.Config) []DRBackend {
	var out []DRBackend
	for _, s := range cfg.Services {
		if s.Method != config.MethodDR {
			continue
		}
		for _, b := range slices.Concat(s.Backends, s.Fallback) {
			i := slices.IndexFunc(out, func(d DRBackend) bool { return d.Addr == b.Address })
			if i < 0 {
				out = append(out, DRBackend{Addr: b.Address})
				i = len(out) - 1
			}
			if !slices.Contains(out[i].VIPs, s.VIP) {
				out[i].VIPs = append(out[i].VIPs, s.VIP)
			}
		}
	}
	return out
}
