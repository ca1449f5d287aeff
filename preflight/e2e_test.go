package preflight

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestPreflightOnVeth runs the checks in the LB namespace of a one-armed
// test topology: on veth native XDP attaches and zero copy is refused (a
// warning), the kernel features pass, and the DR backends are found in
// their namespaces, one of them misconfigured on purpose (root only).
func TestPreflightOnVeth(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true, NoHTTP: true})
	// b1 answers ARP for the VIP: the one mistake that breaks DR.
	if err := tn.Backends[1].Sysctls(map[string]string{"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.eth0.arp_ignore": "0"}); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Dataplane: dataplane.Config{Interfaces: []dataplane.InterfaceConfig{{Name: "eth0"}}},
		Netns:     filepath.Join("/var/run/netns", "xlb-"+tn.ID+"-*"),
	}
	for _, b := range tn.Backends {
		o.DRBackends = append(o.DRBackends, DRBackend{Addr: b.Addr(), VIPs: []netip.Addr{tn.VIP}})
	}
	var rep Report
	if err := tn.LB.Do(func() error { rep = Run(o); return nil }); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.WriteTo(&out)
	t.Logf("xlb preflight on the test topology's LB:\n%s", out.String())

	want := map[string]Status{
		"kernel": Pass, "af_xdp": Pass, "need_wakeup": Pass, "bpf_link": Pass, "memlock": Pass, "capabilities": Pass,
		"eth0 link": Pass, "eth0 driver": Pass, "eth0 xdp": Pass, "eth0 zero-copy": Warn,
		"eth0 rss": Pass, "eth0 irqs": Pass, "eth0 mtu": Pass,
		"dr backend " + tn.Backends[0].Addr().String(): Pass,
		"dr backend " + tn.Backends[1].Addr().String(): Fail,
	}
	for check, st := range want {
		r, ok := rep.Find(check)
		if !ok {
			t.Errorf("no %q line", check)
			continue
		}
		if r.Status != st {
			t.Errorf("%s: %v, want %v", check, r, st)
		}
		if (r.Status == Pass) != (r.Fix == "") {
			t.Errorf("%s: a pass has no fix, anything else has one: %v", check, r)
		}
	}
	if r, _ := rep.Find("eth0 driver"); !strings.HasPrefix(r.Detail, "veth") {
		t.Errorf("driver: %v", r)
	}
	if r, _ := rep.Find("eth0 zero-copy"); !strings.Contains(r.Detail, "copy mode only") {
		t.Errorf("zero-copy: %v", r)
	}
	if rep.Fit() || !strings.Contains(out.String(), "NOT fit: ") {
		t.Error("a backend that answers ARP for the VIP must make the host unfit")
	}
	// Nothing stays behind: the probe's XDP program is gone.
	if l, err := tn.LB.Handle().LinkByName("eth0"); err != nil || l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
		t.Errorf("eth0 after preflight: XDP attached (%v)", err)
	}
}

// TestPreflightQueuesAndBackends covers the other outcomes on a two-queue
// veth: fewer cores than queues, no RSS information, a backend with a
// strict reverse-path filter, then one without the VIP while another XDP
// program holds the interface (root only).
func TestPreflightQueuesAndBackends(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 1, Queues: 2, DisableIPv6: true, NoHTTP: true})
	b := tn.Backends[0]
	if err := b.Sysctls(map[string]string{"net.ipv4.conf.all.rp_filter": "1"}); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Dataplane:  dataplane.Config{Interfaces: []dataplane.InterfaceConfig{{Name: "eth0", Cores: []int{0}}}},
		Netns:      filepath.Join("/var/run/netns", "xlb-"+tn.ID+"-*"),
		DRBackends: []DRBackend{{Addr: b.Addr(), VIPs: []netip.Addr{tn.VIP}}},
	}
	run := func() Report {
		var rep Report
		if err := tn.LB.Do(func() error { rep = Run(o); return nil }); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		rep.WriteTo(&out)
		t.Logf("preflight:\n%s", out.String())
		return rep
	}
	rep := run()
	check := func(name string, st Status, detail string) {
		t.Helper()
		r, ok := rep.Find(name)
		if !ok || r.Status != st || !strings.Contains(r.Detail, detail) {
			t.Errorf("%s: %v (found %v), want %v with %q", name, r, ok, st, detail)
		}
	}
	check("eth0 queues", Warn, "cores: lists 1 CPUs for 2 queues")
	check("eth0 rss", Warn, "2 queues, but the driver reports no RSS hash fields")
	check("dr backend "+b.Addr().String(), Warn, "rp_filter 1")
	if !rep.Fit() {
		t.Error("warnings alone must leave the host fit")
	}
	if err := b.DelAddr("lo", netip.PrefixFrom(tn.VIP, 32)); err != nil {
		t.Fatal(err)
	}
	// Another XDP program on eth0: preflight leaves it alone and says so.
	if err := tn.LB.AttachXDPPass("eth0"); err != nil {
		t.Fatal(err)
	}
	rep = run()
	check("dr backend "+b.Addr().String(), Fail, "VIP "+tn.VIP.String()+" not on the backend")
	check("eth0 xdp", Warn, "is attached already")
	if l, err := tn.LB.Handle().LinkByName("eth0"); err != nil || l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
		t.Errorf("preflight removed the XDP program it found (%v)", err)
	}
	if rep.Fit() {
		t.Error("a DR backend without the VIP must make the host unfit")
	}
}
