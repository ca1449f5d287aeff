package control

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/ha"
	"github.com/xlb-dev/xlb/sched"
)

// TestGuardDropsGroup: the crash guard drops every (VIP, port) of a group whose VIP the
// virtual router holds, and nothing of the VIPs it does not.
func TestGuardDropsGroup(t *testing.T) {
	ss, err := sched.NewService(sched.ServiceConfig{}, []sched.Backend{{ID: 1, Name: "b0", Weight: 1, Up: true}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101")
	snap, err := dataplane.NewSnapshot([]dataplane.ServiceSpec{{Name: "g", VIP: a, Port: 80, Proto: 6,
		Method: dataplane.MethodDR, Sched: ss, Targets: []dataplane.Target{{Addr: netip.MustParseAddr("198.18.0.11")}},
		VIPs: []netip.Addr{a, b}, Ports: []dataplane.PortRange{{Lo: 80, Hi: 80}, {Lo: 8000, Hi: 8002}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := guardDrops(snap, []netip.Addr{b})
	want := []ha.Drop{{VIP: b, Port: 80, Proto: 6}, {VIP: b, Port: 8000, Proto: 6}, {VIP: b, Port: 8001, Proto: 6}, {VIP: b, Port: 8002, Proto: 6}}
	if len(got) != len(want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("drop %d = %v, want %v", i, got[i], want[i])
		}
	}
	if n := len(guardDrops(snap, []netip.Addr{a, b})); n != 8 {
		t.Errorf("%d drops for both VIPs, want 8", n)
	}
}

func TestListFlags(t *testing.T) {
	for y, want := range map[string]string{
		"vip: 198.19.0.10\n    port: 80\n":                                                              "",
		"vip: 198.19.0.10\n    port: 80\n    persistence: {timeout: 300s, prefix: 24}\n":                "persistent 300 mask 255.255.255.0",
		"vip: 2001:2::10\n    port: 53\n    protocol: udp\n    one_packet: true\n    persistence: {}\n": "persistent 300 mask 64 ops",
		"vips: [198.19.0.10, 198.19.0.11]\n    ports: [80, 8000-8009]\n":                                "group 22 pairs",
	} {
		addr := "198.18.0.11"
		if strings.Contains(y, "2001:") {
			addr = "2001:2::11"
		}
		cfg, err := config.Parse("t.yaml", []byte("interfaces: [{name: eth0}]\nservices:\n  - name: s\n    "+y+"    backends: [{address: "+addr+"}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := listFlags(&cfg.Services[0]); got != want {
			t.Errorf("%q: flags %q, want %q", y, got, want)
		}
	}
}
