package dataplane

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/encap"
)

// TestServiceGroup: a group listens on every VIP with every port of its ranges, shares one
// scheduler (a flow's packets reach the group's backends whichever VIP or port it used),
// and its (VIP, port) pairs are the XDP program's keys.
func TestServiceGroup(t *testing.T) {
	vip2 := netip.MustParseAddr("198.18.0.101")
	web := spec(t, "web", 0, vip4, 80, MethodDR, 3)
	web.VIPs = []netip.Addr{vip4, vip2}
	web.Ports = []PortRange{{80, 80}, {443, 443}, {8000, 8099}}
	other := spec(t, "other", 1, vip4, 8100, MethodDR, 1)
	s := mustSnapshot(t, nil, web, other)
	for _, c := range []struct {
		dst  netip.Addr
		port uint16
		want string
	}{
		{vip4, 80, "web"}, {vip2, 80, "web"}, {vip4, 443, "web"}, {vip2, 8000, "web"}, {vip2, 8099, "web"},
		{vip4, 8050, "web"}, {vip4, 8100, "other"}, {vip2, 8100, ""}, {vip2, 81, ""}, {vip4, 7999, ""},
	} {
		if got, _ := s.LookupService(c.dst, c.port, encap.ProtoTCP); got != c.want {
			t.Errorf("LookupService(%v, %d) = %q, want %q", c.dst, c.port, got, c.want)
		}
	}
	svcs, _ := steeringKeys(s)
	if len(svcs) != 2*102+1 {
		t.Errorf("%d steering keys, want %d", len(svcs), 2*102+1)
	}
	// One scheduler: a flow to the second VIP on a ranged port is forwarded to a backend.
	e := newEngine(t)
	pkt := craft(t, pktOpts{src: client4, dst: vip2, sport: 4000, dport: 8042, flags: encap.TCPFlagSYN, payload: 10})
	f := frameOf(pkt)
	run(e, s, &f)
	if f.Out != ifLB {
		t.Fatalf("a flow to %v:8042 was not forwarded (why %d)", vip2, f.Why)
	}
	backendOf(t, &f)
}

func TestServiceGroupErrors(t *testing.T) {
	base := func() ServiceSpec {
		s := spec(t, "web", 0, vip4, 80, MethodDR, 2)
		s.VIPs = []netip.Addr{vip4, netip.MustParseAddr("198.18.0.101")}
		s.Ports = []PortRange{{80, 90}}
		return s
	}
	nat := base()
	nat.Method = MethodNAT
	v6 := base()
	v6.VIPs = append(v6.VIPs, vip6)
	backwards := base()
	backwards.Ports = []PortRange{{90, 80}}
	huge := base()
	huge.Ports = []PortRange{{1, 4000}}
	clash := spec(t, "clash", 1, netip.MustParseAddr("198.18.0.101"), 85, MethodDR, 1)
	for _, c := range []struct {
		name string
		svcs []ServiceSpec
		want error
	}{
		{"nat", []ServiceSpec{nat}, ErrBadService},
		{"families", []ServiceSpec{v6}, ErrBadService},
		{"backwards", []ServiceSpec{backwards}, ErrBadService},
		{"too many pairs", []ServiceSpec{huge}, ErrDupService},
		{"overlap", []ServiceSpec{base(), clash}, ErrDupService},
	} {
		if _, err := NewSnapshot(c.svcs, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
