package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
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
	twice := base()
	twice.Ports = []PortRange{{80, 90}, {90, 95}}
	clash := spec(t, "clash", 1, netip.MustParseAddr("198.18.0.101"), 85, MethodDR, 1)
	for _, c := range []struct {
		name string
		svcs []ServiceSpec
		want error
	}{
		{"nat", []ServiceSpec{nat}, ErrBadService},
		{"families", []ServiceSpec{v6}, ErrBadService},
		{"backwards", []ServiceSpec{backwards}, ErrBadService},
		{"too many pairs", []ServiceSpec{huge}, ErrBadService},
		{"pair twice in one service", []ServiceSpec{twice}, ErrDupService},
		{"overlap", []ServiceSpec{base(), clash}, ErrDupService},
	} {
		if _, err := NewSnapshot(c.svcs, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestProcessPersistentAllocs: batches of new flows to a persistent group service, and of
// datagrams to a one-packet service, are forwarded without allocating; a client's flows
// on two engines sharing a persistence table reach one backend.
func TestProcessPersistentAllocs(t *testing.T) {
	pt, err := sched.NewPersistTable(1024)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(index int, one bool) *sched.Service {
		bs := make([]sched.Backend, 3)
		for i := range bs {
			bs[i] = sched.Backend{ID: uint32(i + 1), Name: fmt.Sprintf("b%d", i), Weight: 1, Up: true}
		}
		s, err := sched.NewService(sched.ServiceConfig{Index: index, Strategy: sched.RoundRobin, OnePacket: one,
			Persistence: sched.Persistence{Timeout: time.Minute}}, bs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	web := spec(t, "web", 0, vip4, 80, MethodDR, 3)
	web.Sched, web.Ports = mk(0, false), []PortRange{{80, 80}, {8000, 8009}}
	dns := spec(t, "dns", 1, vip4, 53, MethodDR, 3)
	dns.Proto, dns.Sched = encap.ProtoUDP, mk(1, true)
	s := mustSnapshot(t, nil, web, dns)
	engines := make([]*Engine, 2)
	for i := range engines {
		if engines[i], err = NewEngineCore(sched.CoreConfig{ID: i, Capacity: 1 << 12, Persist: pt}); err != nil {
			t.Fatal(err)
		}
	}
	frames := make([]Frame, maxBatch)
	bufs := make([][]byte, maxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, frameSize)
	}
	tmpl := make([][]byte, maxBatch)
	for i := range tmpl {
		o := pktOpts{src: client4, dst: vip4, sport: 1, dport: 8000 + uint16(i%10), flags: encap.TCPFlagSYN, payload: 10}
		if i%2 == 1 {
			o.udp, o.dport, o.flags = true, 53, 0
		}
		tmpl[i] = craft(t, o)
	}
	sport := uint16(1000)
	prep := func() { // new connections (source ports) of one client
		for i := range frames {
			n := copy(bufs[i][headroom:], tmpl[i])
			binary.BigEndian.PutUint16(bufs[i][headroom+34:], sport)
			sport++
			frames[i] = Frame{Buf: bufs[i], Off: headroom, Len: n, In: ifLB}
		}
	}
	backends := map[int]bool{}
	for _, e := range engines {
		prep()
		e.Process(s, frames, 1)
		for i := range frames {
			if frames[i].Out != ifLB {
				t.Fatalf("frame %d dropped (why %d)", i, frames[i].Why)
			}
			backends[backendOf(t, &frames[i])] = true
		}
	}
	if len(backends) != 1 {
		t.Errorf("one client's flows on two engines reached backends %v, want one", backends)
	}
	e := engines[0]
	allocs := testing.AllocsPerRun(50, func() {
		prep()
		e.Process(s, frames, 2)
	})
	if allocs != 0 {
		t.Errorf("Process allocates %.1f times per batch", allocs)
	}
	if c := e.Counters(); c.ConnOnePacket == 0 || c.ConnPersisted == 0 {
		t.Errorf("counters: one-packet %d, persisted %d", c.ConnOnePacket, c.ConnPersisted)
	}
}
