package dataplane

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

func newEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine(0, 1<<12)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func run(e *Engine, s *Snapshot, fs ...*Frame) {
	batch := make([]Frame, len(fs))
	for i, f := range fs {
		batch[i] = *f
	}
	e.Process(s, batch, 1)
	for i, f := range fs {
		*f = batch[i]
	}
}

// backendOf returns the index of the backend whose MAC the frame carries.
func backendOf(t *testing.T, f *Frame) int {
	t.Helper()
	p := f.packet()
	for i := range 64 {
		if [6]byte(p[0:6]) == backendMAC(i) {
			return i
		}
	}
	t.Fatalf("destination MAC %x is no backend's", p[0:6])
	return -1
}

func TestEngineDR(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			e := newEngine(t)
			s := mustSnapshot(t, nil, spec(t, "web", 0, vip, 80, MethodDR, 3))
			src := client4
			if vip.Is6() {
				src = client6
			}
			seen := map[int]int{}
			for port := uint16(1000); port < 1300; port++ {
				pkt := craft(t, pktOpts{src: src, dst: vip, sport: port, dport: 80, flags: encap.TCPFlagSYN, payload: 10})
				f := frameOf(pkt)
				run(e, s, &f)
				if f.Out != ifLB || f.Off != headroom || f.Len != len(pkt) {
					t.Fatalf("out %d off %d len %d", f.Out, f.Off, f.Len)
				}
				got := f.packet()
				b := backendOf(t, &f)
				if [6]byte(got[6:12]) != macLB {
					t.Fatalf("source MAC %x", got[6:12])
				}
				if string(got[12:]) != string(pkt[12:]) {
					t.Fatal("dr changed more than the MACs")
				}
				// The scheduler's choice, and the same on the next packet of the flow.
				f2 := frameOf(craft(t, pktOpts{src: src, dst: vip, sport: port, dport: 80}))
				run(e, s, &f2)
				if backendOf(t, &f2) != b {
					t.Fatal("second packet of a flow went elsewhere")
				}
				seen[b]++
			}
			for i := range 3 {
				if seen[i] < 50 {
					t.Errorf("backend %d got %d of 300 flows: %v", i, seen[i], seen)
				}
			}
			c := e.Counters()
			if c.RxPackets != 600 || c.Dropped() != 0 || c.ConnHits != 300 || c.ConnMisses != 300 {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

// The spread must follow the scheduler: the backend is the one sched.Service's Maglev table
// names for the flow's hash.
func TestEngineFollowsMaglev(t *testing.T) {
	e := newEngine(t)
	sp := spec(t, "web", 0, vip4, 80, MethodDR, 3)
	s := mustSnapshot(t, nil, sp)
	for port := uint16(2000); port < 2100; port++ {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80, flags: encap.TCPFlagSYN}))
		run(e, s, &f)
		a, _ := addr16(client4)
		v, _ := addr16(vip4)
		k := sched.Key{Src: a, Dst: v, SrcPort: port, DstPort: 80, Proto: encap.ProtoTCP}
		if want := sp.Sched.Lookup(&k); backendOf(t, &f) != want {
			t.Fatalf("port %d: backend %d, maglev says %d", port, backendOf(t, &f), want)
		}
	}
}

// TestEnginesAgreeOnNewFlows: two engines, as on two LB hosts, whose connection tables have
// different random secrets, send every new flow to the same backend when their services
// share a hash key (what a VRRP takeover or an ECMP rehash relies on); with another key
// most flows go elsewhere.
func TestEnginesAgreeOnNewFlows(t *testing.T) {
	withKey := func(key string) *Snapshot {
		sp := spec(t, "web", 0, vip4, 80, MethodDR, 8)
		hk, err := sched.ParseHashKey(key)
		if err != nil {
			t.Fatal(err)
		}
		bs := make([]sched.Backend, sp.Sched.Len())
		for i := range bs {
			bs[i] = sp.Sched.Backend(i)
		}
		if sp.Sched, err = sched.NewService(sched.ServiceConfig{Strategy: sched.Maglev, HashKey: hk}, bs); err != nil {
			t.Fatal(err)
		}
		return mustSnapshot(t, nil, sp)
	}
	s1 := withKey("0123456789abcdef0123456789abcdef")
	s2 := withKey("0123456789abcdef0123456789abcdef")
	s3 := withKey("fedcba9876543210fedcba9876543210")
	a, b, c := newEngine(t), newEngine(t), newEngine(t)
	moved := 0
	for port := uint16(3000); port < 3500; port++ {
		pkt := craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80, flags: encap.TCPFlagSYN})
		fa, fb, fc := frameOf(pkt), frameOf(pkt), frameOf(pkt)
		run(a, s1, &fa)
		run(b, s2, &fb)
		run(c, s3, &fc)
		if backendOf(t, &fa) != backendOf(t, &fb) {
			t.Fatalf("port %d: backend %d on one host, %d on the other", port, backendOf(t, &fa), backendOf(t, &fb))
		}
		if backendOf(t, &fa) != backendOf(t, &fc) {
			moved++
		}
	}
	if moved < 350 { // 7/8 of 500 expected
		t.Errorf("another hash key moved only %d of 500 flows", moved)
	}
}

func TestEngineTunnel(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			e := newEngine(t)
			s := mustSnapshot(t, nil, spec(t, "web", 0, vip, 80, MethodTunnel, 2))
			src := client4
			if vip.Is6() {
				src = client6
			}
			pkt := craft(t, pktOpts{src: src, dst: vip, sport: 999, dport: 80, flags: encap.TCPFlagSYN, payload: 100})
			f := frameOf(pkt)
			run(e, s, &f)
			if f.Out != ifLB {
				t.Fatalf("out %d, counters %+v", f.Out, e.Counters())
			}
			b := backendOf(t, &f)
			p := decode(f.packet())
			var outerDst, innerDst netip.Addr
			if vip.Is4() {
				ips := p.Layers()
				outer, ok := ips[1].(*layers.IPv4)
				if !ok || outer.Protocol != layers.IPProtocolIPv4 {
					t.Fatalf("outer: %v", p)
				}
				outerDst, _ = netip.AddrFromSlice(outer.DstIP)
				inner := ips[2].(*layers.IPv4)
				innerDst, _ = netip.AddrFromSlice(inner.DstIP)
			} else {
				ips := p.Layers()
				outer, ok := ips[1].(*layers.IPv6)
				if !ok || outer.NextHeader != layers.IPProtocolIPv6 {
					t.Fatalf("outer: %v", p)
				}
				outerDst, _ = netip.AddrFromSlice(outer.DstIP)
				inner := ips[2].(*layers.IPv6)
				innerDst, _ = netip.AddrFromSlice(inner.DstIP)
			}
			if outerDst != backendAddr(vip.Is6(), b) || innerDst != vip {
				t.Fatalf("outer dst %v (backend %d), inner dst %v", outerDst, b, innerDst)
			}
			if string(f.packet()[f.Len-len(pkt)+14:]) != string(pkt[14:]) {
				t.Fatal("inner packet changed")
			}
		})
	}
}

func TestEngineNAT(t *testing.T) {
	e := newEngine(t)
	sp := spec(t, "web", 0, vip4, 80, MethodNAT, 2)
	for i := range sp.Targets { // backends on the second interface
		sp.Targets[i].Port = 8080
		sp.Targets[i].Hop.IfIndex, sp.Targets[i].Hop.SrcMAC = ifLB2, macLB2
	}
	routes := []Route{{Prefix: netip.MustParsePrefix("198.18.0.0/24"),
		Hop: NextHop{IfIndex: ifLB, SrcMAC: macLB, DstMAC: macClient, MTU: 1500}}}
	s := mustSnapshot(t, routes, sp)

	req := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 5555, dport: 80, flags: encap.TCPFlagSYN, payload: 20}))
	run(e, s, &req)
	if req.Out != ifLB2 {
		t.Fatalf("request out %d", req.Out)
	}
	b := backendOf(t, &req)
	checksumsOK(t, req.packet())
	ip := decode(req.packet()).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp := decode(req.packet()).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if dst, _ := netip.AddrFromSlice(ip.DstIP); dst != backendAddr(false, b) || tcp.DstPort != 8080 {
		t.Fatalf("request to %v:%d", dst, tcp.DstPort)
	}

	// The backend's reply comes in on the backend side and leaves towards the client, from
	// the VIP.
	rep := frameOf(craft(t, pktOpts{src: backendAddr(false, b), dst: client4, sport: 8080, dport: 5555,
		payload: 30, srcMAC: backendMAC(b), dstMAC: macLB2}))
	rep.In = ifLB2
	run(e, s, &rep)
	if rep.Out != ifLB {
		t.Fatalf("reply out %d, counters %+v", rep.Out, e.Counters())
	}
	checksumsOK(t, rep.packet())
	p := rep.packet()
	if [6]byte(p[0:6]) != macClient || [6]byte(p[6:12]) != macLB {
		t.Fatalf("reply MACs %x %x", p[0:6], p[6:12])
	}
	ip = decode(p).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp = decode(p).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if src, _ := netip.AddrFromSlice(ip.SrcIP); src != vip4 || tcp.SrcPort != 80 {
		t.Fatalf("reply from %v:%d", src, tcp.SrcPort)
	}
	if c := e.Counters(); c.NATReturns != 1 {
		t.Errorf("nat returns %d", c.NATReturns)
	}
	// ipvsadm's OutPkts/OutBytes: the reply counts for the service and for the backend
	// that sent it, and for no other.
	outOf := func(want uint64, wantBytes uint64) {
		t.Helper()
		fs := e.FlowStats()
		if len(fs) != 1 || fs[0].OutPackets != want || fs[0].OutBytes != wantBytes {
			t.Fatalf("service out %+v, want %d packets, %d bytes", fs, want, wantBytes)
		}
		for i, be := range fs[0].Backends {
			if w := map[bool]uint64{true: want}[i == b]; be.OutPackets != w {
				t.Errorf("backend %d: out packets %d, want %d", i, be.OutPackets, w)
			}
		}
	}
	repBytes := uint64(rep.Len)
	outOf(1, repBytes)

	// A reply towards a client without a route is translated and handed to the kernel
	// as an IP packet.
	s2 := mustSnapshot(t, nil, sp)
	rep = frameOf(craft(t, pktOpts{src: backendAddr(false, b), dst: client4, sport: 8080, dport: 5555, payload: 9}))
	run(e, s2, &rep)
	if c := e.Counters(); rep.Out != OutKernel || c.ToKernel != 1 || c.NATReturns != 2 || c.Dropped() != 0 {
		t.Fatalf("no route: out %d counters %+v", rep.Out, c)
	}
	outOf(2, repBytes+uint64(len(craft(t, pktOpts{src: backendAddr(false, b), dst: client4, sport: 8080, dport: 5555, payload: 9}))))
	ipk := gopacket.NewPacket(rep.packet(), layers.LayerTypeIPv4, gopacket.Default)
	ip, _ = ipk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ = ipk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil || int(ip.Length) != rep.Len {
		t.Fatalf("not an IP packet of %d bytes: %v", rep.Len, ipk)
	}
	if src, _ := netip.AddrFromSlice(ip.SrcIP); src != vip4 || tcp.SrcPort != 80 || len(tcp.Payload) != 9 {
		t.Fatalf("kernel-routed reply from %v:%d payload %d", src, tcp.SrcPort, len(tcp.Payload))
	}
}

func TestEngineTooBig(t *testing.T) {
	e := newEngine(t)
	sp := spec(t, "web", 0, vip4, 80, MethodDR, 1)
	sp.Targets[0].Hop.MTU = 1000
	s := mustSnapshot(t, nil, sp)
	f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80, payload: 1200}))
	run(e, s, &f)
	if f.Out != ifLB || e.Counters().ICMPReplies != 1 {
		t.Fatalf("out %d counters %+v", f.Out, e.Counters())
	}
	p := decode(f.packet())
	icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ok || icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) {
		t.Fatalf("not a frag-needed reply: %v", p)
	}
	if [6]byte(f.packet()[0:6]) != macClient {
		t.Fatal("reply not addressed to the client")
	}
	// Without DF: dropped, counted as too big.
	f = frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80, payload: 1200, noDF: true}))
	run(e, s, &f)
	if f.Out != 0 || e.Counters().Reasons[encap.TooBig] != 1 {
		t.Fatalf("no DF: out %d reasons %v", f.Out, e.Counters().Reasons)
	}
}

func TestEngineDrops(t *testing.T) {
	e := newEngine(t)
	sp := spec(t, "web", 0, vip4, 80, MethodDR, 2)
	sp.Targets[0].Hop = NextHop{} // unresolved
	sp.Targets[1].Hop = NextHop{}
	down := spec(t, "down", 1, vip4, 81, MethodDR, 1)
	bs := []sched.Backend{{ID: 1, Name: "b0", Weight: 1, Up: false}}
	down.Sched, _ = sched.NewService(sched.ServiceConfig{Index: 1}, bs)
	s := mustSnapshot(t, nil, sp, down)

	good := craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80})
	cases := []struct {
		frame Frame
		check func(c Counters) bool
	}{
		{frameOf(good[:20]), func(c Counters) bool { return c.Reasons[encap.Truncated] == 1 }},
		{frameOf(good), func(c Counters) bool { return c.Drops[DropNoRoute] == 1 }},
		{frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 81})),
			func(c Counters) bool { return c.Drops[DropNoBackend] == 1 }},
		{frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 82})),
			func(c Counters) bool { return c.Drops[DropNoService] == 1 }},
		{Frame{Buf: make([]byte, 100), Off: 90, Len: 20}, func(c Counters) bool { return c.Reasons[encap.Truncated] == 2 }},
	}
	for i, c := range cases {
		f := c.frame
		run(e, s, &f)
		if f.Out != 0 || !c.check(e.Counters()) {
			t.Errorf("case %d: out %d counters %+v", i, f.Out, e.Counters())
		}
	}
	if got := e.Counters().Dropped(); got != uint64(len(cases)) {
		t.Errorf("dropped %d, want %d", got, len(cases))
	}
	// A nil snapshot (nothing published yet) drops without panicking.
	f := frameOf(good)
	run(e, nil, &f)
	if f.Out != 0 {
		t.Error("forwarded without a snapshot")
	}
}

// A flow keeps its backend when the backend set changes around it (a new snapshot with one
// backend more and one of the others gone).
func TestEngineFlowSurvivesBackendChange(t *testing.T) {
	e := newEngine(t)
	sp := spec(t, "web", 0, vip4, 80, MethodDR, 3)
	s1 := mustSnapshot(t, nil, sp)
	flows := map[uint16]int{}
	for port := uint16(100); port < 200; port++ {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80, flags: encap.TCPFlagSYN}))
		run(e, s1, &f)
		flows[port] = backendOf(t, &f)
	}
	// New set: backend 2 removed, backend 3 added (IDs stay stable: 1, 2 and the new 4).
	bs := []sched.Backend{
		{ID: 1, Name: "b0", Weight: 1, Up: true},
		{ID: 2, Name: "b1", Weight: 1, Up: true},
		{ID: 4, Name: "b3", Weight: 1, Up: true},
	}
	sv, err := sched.NewService(sched.ServiceConfig{Index: 0}, bs)
	if err != nil {
		t.Fatal(err)
	}
	sp2 := sp
	sp2.Sched = sv
	sp2.Targets = []Target{sp.Targets[0], sp.Targets[1],
		{Addr: backendAddr(false, 3), Hop: NextHop{IfIndex: ifLB, SrcMAC: macLB, DstMAC: backendMAC(3), MTU: 1500}}}
	s2 := mustSnapshot(t, nil, sp2)
	moved := 0
	for port, b := range flows {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80}))
		run(e, s2, &f)
		got := backendOf(t, &f)
		switch {
		case b != 2 && got != b:
			t.Fatalf("flow %d moved from backend %d to %d", port, b, got)
		case b == 2:
			moved++
			if got == 2 {
				t.Fatalf("flow %d still on the removed backend", port)
			}
		}
	}
	if moved == 0 {
		t.Fatal("no flow was on the removed backend: the test proves nothing")
	}
}

// Every fragment of a datagram (ports 0 in its key) goes to the same backend of the VIP's
// only service of that protocol.
func TestEngineFragments(t *testing.T) {
	e := newEngine(t)
	s := mustSnapshot(t, nil, spec(t, "web", 0, vip4, 80, MethodDR, 3))
	want := -1
	for i, fo := range []uint16{0x2000, 0x2000 | 185, 370} { // first, middle, last
		pkt := craft(t, pktOpts{src: client4, dst: vip4, sport: 1234, dport: 80, payload: 100, noDF: true})
		pkt[14+6], pkt[14+7] = byte(fo>>8), byte(fo)
		f := frameOf(pkt)
		run(e, s, &f)
		if f.Out != ifLB {
			t.Fatalf("fragment %d dropped: %+v", i, e.Counters())
		}
		if b := backendOf(t, &f); want < 0 {
			want = b
		} else if b != want {
			t.Fatalf("fragment %d went to backend %d, the first to %d", i, b, want)
		}
	}
}

// The engine remembers its last service hit; a new snapshot without the service must not
// reuse it, and a portless packet (fragment) is looked up apart from one with ports.
func TestEngineServiceHitCache(t *testing.T) {
	e := newEngine(t)
	s1 := mustSnapshot(t, nil, spec(t, "web", 0, vip4, 80, MethodDR, 2))
	s2 := mustSnapshot(t, nil, spec(t, "other", 1, vip4, 81, MethodDR, 2))
	pkt := craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80})
	f := frameOf(pkt)
	run(e, s1, &f)
	if f.Out != ifLB {
		t.Fatal("not forwarded under s1")
	}
	f = frameOf(pkt)
	run(e, s2, &f)
	if f.Out != 0 || e.Counters().Drops[DropNoService] != 1 {
		t.Fatalf("forwarded under a snapshot without the service: %+v", e.Counters())
	}
}
