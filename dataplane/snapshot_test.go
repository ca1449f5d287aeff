package dataplane

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/encap"
)

func TestSnapshotLookup(t *testing.T) {
	web := spec(t, "web", 0, vip4, 80, MethodDR, 3)
	all := spec(t, "all", 1, vip4, 0, MethodDR, 2)
	web6 := spec(t, "web6", 2, vip6, 80, MethodDR, 2)
	udp := spec(t, "dns", 3, vip4, 53, MethodDR, 1)
	udp.Proto = encap.ProtoUDP
	s := mustSnapshot(t, nil, web, all, web6, udp)
	for _, c := range []struct {
		dst   netip.Addr
		port  uint16
		proto uint8
		want  string
	}{
		{vip4, 80, encap.ProtoTCP, "web"},
		{vip4, 443, encap.ProtoTCP, "all"}, // port-0 fallback
		{vip4, 0, encap.ProtoTCP, "all"},
		{vip6, 80, encap.ProtoTCP, "web6"},
		{vip6, 443, encap.ProtoTCP, ""}, // no all-ports service on the IPv6 VIP
		{vip4, 53, encap.ProtoUDP, "dns"},
		{vip4, 54, encap.ProtoUDP, ""},
		{netip.MustParseAddr("198.18.0.101"), 80, encap.ProtoTCP, ""},
		{netip.MustParseAddr("::ffff:198.18.0.100"), 80, encap.ProtoTCP, "web"}, // mapped = IPv4
		{vip6, 0, encap.ProtoTCP, "web6"},                                       // a fragment: the VIP's only tcp service
		{vip4, 0, encap.ProtoUDP, "dns"},
		{vip6, 0, encap.ProtoUDP, ""},
	} {
		got, ok := s.LookupService(c.dst, c.port, c.proto)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("LookupService(%v, %d, %d) = %q, %v; want %q", c.dst, c.port, c.proto, got, ok, c.want)
		}
	}
	if s.NumServices() != 4 || s.Service(2).Name != "web6" {
		t.Errorf("services: %d, [2] = %q", s.NumServices(), s.Service(2).Name)
	}
}

func TestSnapshotNATReturnLookup(t *testing.T) {
	a := spec(t, "a", 0, vip4, 80, MethodNAT, 2)
	a.Targets[1].Port = 8080
	b := spec(t, "b", 1, netip.MustParseAddr("198.18.0.101"), 0, MethodNAT, 1)
	b.Targets[0].Addr = netip.MustParseAddr("198.18.0.50")
	s := mustSnapshot(t, nil, a, b)
	for _, c := range []struct {
		src  netip.Addr
		port uint16
		want string
	}{
		{backendAddr(false, 0), 80, "a"},   // keeps the service port
		{backendAddr(false, 0), 8080, ""},  // that backend does not listen on 8080
		{backendAddr(false, 1), 8080, "a"}, // a port-mapping backend
		{backendAddr(false, 1), 80, ""},
		{netip.MustParseAddr("198.18.0.50"), 12345, "b"}, // all-ports service
		{backendAddr(false, 2), 80, ""},
	} {
		got, ok := s.LookupNATReturn(c.src, c.port, encap.ProtoTCP)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("LookupNATReturn(%v, %d) = %q, %v; want %q", c.src, c.port, got, ok, c.want)
		}
	}
	if _, ok := s.LookupNATReturn(backendAddr(false, 0), 80, encap.ProtoUDP); ok {
		t.Error("udp reply matched a tcp service")
	}
}

func TestSnapshotRoutes(t *testing.T) {
	hop := func(i int) NextHop { return NextHop{IfIndex: i, SrcMAC: macLB, DstMAC: backendMAC(i), MTU: 1500} }
	s := mustSnapshot(t, []Route{
		{netip.MustParsePrefix("0.0.0.0/0"), hop(1)},
		{netip.MustParsePrefix("198.18.0.0/16"), hop(2)},
		{netip.MustParsePrefix("198.18.1.0/24"), hop(3)},
		{netip.MustParsePrefix("198.18.1.7/32"), hop(4)},
		{netip.MustParsePrefix("198.18.1.128/25"), hop(5)},
		{netip.MustParsePrefix("2001:2::/64"), hop(6)},
	})
	for _, c := range []struct {
		dst  string
		want int
	}{
		{"198.18.1.7", 4}, {"198.18.1.8", 3}, {"198.18.1.200", 5}, {"198.18.2.1", 2},
		{"10.0.0.1", 1}, {"2001:2::5", 6}, {"2001:3::5", 0},
	} {
		a, v6 := addr16(netip.MustParseAddr(c.dst))
		got := 0
		if h := s.route(&a, v6); h != nil {
			got = h.IfIndex
		}
		if got != c.want {
			t.Errorf("route(%s) = interface %d, want %d", c.dst, got, c.want)
		}
	}
}

func TestNewSnapshotErrors(t *testing.T) {
	ok := func() ServiceSpec { return spec(t, "web", 0, vip4, 80, MethodDR, 2) }
	for _, c := range []struct {
		name   string
		edit   func(s *ServiceSpec) []ServiceSpec
		routes []Route
		want   error
	}{
		{"empty name", func(s *ServiceSpec) []ServiceSpec { s.Name = ""; return nil }, nil, ErrBadService},
		{"no vip", func(s *ServiceSpec) []ServiceSpec { s.VIP = netip.Addr{}; return nil }, nil, ErrBadService},
		{"icmp", func(s *ServiceSpec) []ServiceSpec { s.Proto = 1; return nil }, nil, ErrBadService},
		{"method", func(s *ServiceSpec) []ServiceSpec { s.Method = 9; return nil }, nil, ErrBadMethod},
		{"no sched", func(s *ServiceSpec) []ServiceSpec { s.Sched = nil; return nil }, nil, ErrBadService},
		{"targets", func(s *ServiceSpec) []ServiceSpec { s.Targets = s.Targets[:1]; return nil }, nil, ErrTargetsLength},
		{"family", func(s *ServiceSpec) []ServiceSpec {
			s.Targets[0].Addr = backendAddr(true, 0)
			return nil
		}, nil, ErrBadBackend},
		{"dr port", func(s *ServiceSpec) []ServiceSpec { s.Targets[0].Port = 81; return nil }, nil, ErrBadBackend},
		{"mtu", func(s *ServiceSpec) []ServiceSpec { s.Targets[0].Hop.MTU = 20; return nil }, nil, ErrBadBackend},
		{"no mac", func(s *ServiceSpec) []ServiceSpec { s.Targets[0].Hop.DstMAC = [6]byte{}; return nil }, nil, ErrBadBackend},
		{"tunnel without source", func(s *ServiceSpec) []ServiceSpec {
			s.Method = MethodTunnel
			return nil
		}, nil, ErrBadService},
		{"source without tunnel", func(s *ServiceSpec) []ServiceSpec {
			s.TunnelSource = netip.MustParsePrefix("198.18.0.2/32")
			return nil
		}, nil, ErrBadService},
		{"tunnel family", func(s *ServiceSpec) []ServiceSpec {
			s.Method = MethodTunnel
			s.TunnelSource = netip.MustParsePrefix("2001:2::2/128")
			return nil
		}, nil, ErrBadBackend},
		{"duplicate name", func(s *ServiceSpec) []ServiceSpec {
			o := spec(t, "web", 1, vip4, 81, MethodDR, 1)
			return []ServiceSpec{o}
		}, nil, ErrDupService},
		{"duplicate tuple", func(s *ServiceSpec) []ServiceSpec {
			o := spec(t, "other", 1, vip4, 80, MethodDR, 1)
			return []ServiceSpec{o}
		}, nil, ErrDupService},
		{"nat conflict", func(s *ServiceSpec) []ServiceSpec {
			s.Method = MethodNAT
			o := spec(t, "other", 1, netip.MustParseAddr("198.18.0.101"), 80, MethodNAT, 1)
			return []ServiceSpec{o}
		}, nil, ErrNATConflict},
		{"route", func(s *ServiceSpec) []ServiceSpec { return nil },
			[]Route{{Prefix: netip.Prefix{}}}, ErrBadRoute},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ok()
			more := c.edit(&s)
			_, err := NewSnapshot(append([]ServiceSpec{s}, more...), c.routes)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			t.Log(err)
		})
	}
	if _, err := NewSnapshot([]ServiceSpec{ok()}, nil); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
}

// TestSnapshotErrorsWrapCause: a backend refused because of an encap error
// keeps that error in the chain (errors.Is sees both sentinels).
func TestSnapshotErrorsWrapCause(t *testing.T) {
	sp := spec(t, "web", 0, vip4, 80, MethodTunnel, 1)
	sp.Targets[0].Hop.MTU = 68 // too small for an outer header
	_, err := NewSnapshot([]ServiceSpec{sp}, nil)
	if !errors.Is(err, ErrBadBackend) || !errors.Is(err, encap.ErrTunnelMTU) {
		t.Fatalf("err = %v, want ErrBadBackend wrapping encap.ErrTunnelMTU", err)
	}
}
