package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/xlb-dev/xlb/encap"
)

// testCapture arms a capture on a Dataplane that has one worker and no sockets: process is
// then driven by the test with in-memory frames.
func testCapture(t testing.TB, s *Snapshot, opts CaptureOptions) (*Dataplane, *Capture) {
	t.Helper()
	d := &Dataplane{cfg: Config{FrameSize: frameSize}, workers: []*worker{{start: time.Now()}}}
	d.snap.Store(s)
	c, err := d.StartCapture(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return d, c
}

// captureSnapshot: dr on vip4:80, tunnel on vip4:443, nat on .101 (backends .50, .51), all
// with backends b0.. on the client-side interface.
func captureSnapshot(t testing.TB) *Snapshot {
	nat := spec(t, "nat", 2, netip.MustParseAddr("198.18.0.101"), 80, MethodNAT, 2)
	for i := range nat.Targets {
		nat.Targets[i].Addr = netip.AddrFrom4([4]byte{198, 18, 0, byte(50 + i)})
	}
	return mustSnapshot(t, []Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"),
		Hop: NextHop{IfIndex: ifLB, SrcMAC: macLB, DstMAC: macClient}}},
		spec(t, "web", 0, vip4, 80, MethodDR, 3), spec(t, "tun", 1, vip4, 443, MethodTunnel, 2), nat)
}

type capLine struct {
	dir    CaptureDir
	reason string
	pkt    []byte
	ifidx  int
}

func (l capLine) String() string {
	p := peeked{}
	peek(l.pkt, &p)
	a := func(b [16]byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }
	return fmt.Sprintf("%s %v:%d>%v:%d %s", l.dir, a(p.src), p.sport, a(p.dst), p.dport, l.reason)
}

func readAll(c *Capture) []capLine {
	var out []capLine
	c.Read(func(r *CaptureRecord) {
		out = append(out, capLine{r.Dir, r.Reason, slices.Clone(r.Data), r.Ifindex})
	})
	return out
}

func capFrames(t testing.TB, pkts ...[]byte) []Frame {
	fs := make([]Frame, len(pkts))
	for i, p := range pkts {
		fs[i] = frameOf(p)
	}
	return fs
}

func TestCaptureFilters(t *testing.T) {
	s := captureSnapshot(t)
	other := netip.MustParseAddr("198.19.9.9")
	pkts := [][]byte{
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1000, dport: 80, flags: encap.TCPFlagSYN}),       // dr
		craft(t, pktOpts{src: other, dst: vip4, sport: 1001, dport: 443, flags: encap.TCPFlagSYN}),        // tunnel
		craft(t, pktOpts{src: client4, dst: netip.MustParseAddr("198.18.0.101"), sport: 1002, dport: 80}), // nat
		craft(t, pktOpts{src: netip.MustParseAddr("198.18.0.50"), dst: client4, sport: 80, dport: 1002}),  // nat reply
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1003, dport: 99}),                                // no service
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1004, dport: 80})[:30],                           // truncated
	}
	for _, tc := range []struct {
		name   string
		filter CaptureFilter
		want   []string // "dir port reason" per record
	}{
		{"all", CaptureFilter{}, []string{
			"received 1000", "sent 1000", "received 1001", "sent 1001", "received 1002", "sent 1002",
			"received 80", "sent 80", "received 1003", "dropped 1003 no_service", "received 0", "dropped 0 truncated"}},
		{"service", CaptureFilter{Service: "tun"}, []string{"received 1001", "sent 1001"}},
		{"nat service", CaptureFilter{Service: "nat"}, []string{"received 1002", "sent 1002", "received 80", "sent 80"}},
		{"client", CaptureFilter{Client: netip.MustParsePrefix("198.19.0.0/16")}, []string{"received 1001", "sent 1001"}},
		{"client and service", CaptureFilter{Client: netip.MustParsePrefix("198.18.0.0/24"), Service: "web"},
			[]string{"received 1000", "sent 1000"}},
		{"drops of a client", CaptureFilter{Client: netip.MustParsePrefix("198.18.0.1/32")}, []string{
			"received 1000", "sent 1000", "received 1002", "sent 1002", "received 80", "sent 80",
			"received 1003", "dropped 1003 no_service"}},
		{"nothing", CaptureFilter{Client: netip.MustParsePrefix("198.19.255.0/24")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, c := testCapture(t, s, CaptureOptions{Filter: tc.filter})
			e := newEngine(t)
			fs := capFrames(t, pkts...)
			d.capt.Load().process(0, e, s, fs, 5)
			var got []string
			for _, l := range readAll(c) {
				p := peeked{}
				peek(l.pkt, &p)
				port := p.sport
				if l.dir == CaptureSent && len(l.pkt) > 34 && l.pkt[23] == encap.ProtoIPIP {
					inner := append(slices.Clone(l.pkt[:14]), l.pkt[34:]...) // behind the outer header
					peek(inner, &p)
					port = p.sport
				}
				got = append(got, strings.TrimSpace(fmt.Sprintf("%s %d %s", l.dir, port, l.reason)))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("records:\n got %q\nwant %q", got, tc.want)
			}
			if st := c.Stats(); st.Lost != 0 || st.Read != uint64(len(got)) {
				t.Errorf("stats %+v, want %d read, 0 lost", st, len(got))
			}
		})
	}
}

// TestCaptureSides: the received record is the frame as it arrived, the sent one as it
// left: dr with the backend's MAC, tunnel behind an outer IPv4 header (IPIP).
func TestCaptureSides(t *testing.T) {
	s := captureSnapshot(t)
	_, c := testCapture(t, s, CaptureOptions{})
	e := newEngine(t)
	dr := craft(t, pktOpts{src: client4, dst: vip4, sport: 1000, dport: 80, flags: encap.TCPFlagSYN})
	tun := craft(t, pktOpts{src: client4, dst: vip4, sport: 1001, dport: 443, flags: encap.TCPFlagSYN})
	fs := capFrames(t, dr, tun)
	c.process(0, e, s, fs, 5)
	recs := readAll(c)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4: %v", len(recs), recs)
	}
	if string(recs[0].pkt) != string(dr) || string(recs[2].pkt) != string(tun) {
		t.Error("a received record differs from the frame as received")
	}
	if string(recs[1].pkt) != string(fs[0].packet()) || recs[1].ifidx != ifLB || [6]byte(recs[1].pkt[:6]) == macLB {
		t.Errorf("dr sent record %x, want the rewritten frame %x", recs[1].pkt, fs[0].packet())
	}
	p := decode(recs[3].pkt)
	ips := p.Layers()
	if len(ips) < 3 || ips[1].LayerType() != layers.LayerTypeIPv4 || ips[2].LayerType() != layers.LayerTypeIPv4 {
		t.Fatalf("tunnel sent record is not IPv4 in IPv4: %v", p)
	}
	outer := ips[1].(*layers.IPv4)
	if outer.Protocol != layers.IPProtocolIPv4 || outer.SrcIP.String() != "198.18.0.2" {
		t.Errorf("outer header %v > %v proto %v", outer.SrcIP, outer.DstIP, outer.Protocol)
	}
}

// TestCaptureBackend: a backend filter keeps the frames sent to that backend (with their
// received copies), the drops of its service, and its nat replies.
func TestCaptureBackend(t *testing.T) {
	s := captureSnapshot(t)
	for _, be := range []string{"b1", "2", "198.18.0.12"} { // name, ID, address
		t.Run(be, func(t *testing.T) {
			_, c := testCapture(t, s, CaptureOptions{Filter: CaptureFilter{Service: "web", Backend: be}})
			e := newEngine(t)
			var pkts [][]byte
			for i := range 30 {
				pkts = append(pkts, craft(t, pktOpts{src: client4, dst: vip4, sport: uint16(2000 + i), dport: 80, flags: encap.TCPFlagSYN}))
			}
			fs := capFrames(t, pkts...)
			c.process(0, e, s, fs, 5)
			want := 0
			for i := range fs {
				if [6]byte(fs[i].packet()[:6]) == backendMAC(1) {
					want += 2
				}
			}
			recs := readAll(c)
			if want == 0 || len(recs) != want {
				t.Fatalf("%d records, want %d (two per frame sent to b1)", len(recs), want)
			}
			for _, r := range recs {
				if r.dir == CaptureSent && [6]byte(r.pkt[:6]) != backendMAC(1) {
					t.Errorf("sent to %x, not b1", r.pkt[:6])
				}
			}
		})
	}
	d := &Dataplane{cfg: Config{FrameSize: frameSize}, workers: []*worker{{}}}
	d.snap.Store(s)
	for _, f := range []CaptureFilter{{Service: "nope"}, {Backend: "b9"}, {Service: "tun", Backend: "b2"}} {
		if _, err := d.StartCapture(CaptureOptions{Filter: f}); err == nil || !strings.Contains(err.Error(), "bad capture filter") {
			t.Errorf("filter %+v: %v, want ErrCaptureFilter", f, err)
		}
	}
	c, err := d.StartCapture(CaptureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartCapture(CaptureOptions{}); err != ErrCaptureBusy {
		t.Errorf("second capture: %v, want ErrCaptureBusy", err)
	}
	c.Close()
	if d.capt.Load() != nil {
		t.Error("Close left the capture armed")
	}
}

// TestCaptureRingFull: a ring of 16 records under 64 frames keeps the first 16 records and
// counts the other 112 lost; once read, it takes records again.
func TestCaptureRingFull(t *testing.T) {
	s := captureSnapshot(t)
	_, c := testCapture(t, s, CaptureOptions{Ring: 16})
	e := newEngine(t)
	pkts := make([][]byte, maxBatch)
	for i := range pkts {
		pkts[i] = craft(t, pktOpts{src: client4, dst: vip4, sport: uint16(3000 + i), dport: 80})
	}
	c.process(0, e, s, capFrames(t, pkts...), 5)
	recs := readAll(c)
	if st := c.Stats(); len(recs) != 16 || st.Lost != 2*maxBatch-16 {
		t.Fatalf("%d records read, stats %+v; want 16 read, %d lost", len(recs), st, 2*maxBatch-16)
	}
	if recs[0].dir != CaptureReceived || recs[1].dir != CaptureSent {
		t.Errorf("first records %v %v", recs[0], recs[1])
	}
	c.process(0, e, s, capFrames(t, pkts[:4]...), 6)
	if n := len(readAll(c)); n != 8 {
		t.Errorf("after reading, %d records, want 8", n)
	}
}

// TestCaptureAllocs: a capture allocates nothing per batch, matching or not.
func TestCaptureAllocs(t *testing.T) {
	s := captureSnapshot(t)
	for _, f := range []CaptureFilter{{}, {Client: netip.MustParsePrefix("198.19.255.0/24")}, {Service: "web", Backend: "b1"}} {
		_, c := testCapture(t, s, CaptureOptions{Ring: 1 << 12})
		c.filter = f
		e := newEngine(t)
		pkt := craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80})
		fs := capFrames(t, slices.Repeat([][]byte{pkt}, maxBatch)...)
		c.process(0, e, s, fs, 1)
		allocs := testing.AllocsPerRun(50, func() {
			for i := range fs {
				copy(fs[i].Buf[headroom:], pkt)
				fs[i].Off, fs[i].Len = headroom, len(pkt)
			}
			c.process(0, e, s, fs, 2)
			c.Read(func(*CaptureRecord) {})
		})
		if allocs != 0 {
			t.Errorf("filter %+v: %.1f allocations per batch", f, allocs)
		}
		c.Close()
	}
}

// FuzzPeek cross-checks the capture filter's peek with encap.Parse: where both read a frame,
// they agree on the addresses, the protocol and (for an unfragmented TCP or UDP packet
// without IPv6 extension headers) the ports.
func FuzzPeek(f *testing.F) {
	f.Add(craft(f, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80}))
	f.Add(craft(f, pktOpts{src: client6, dst: vip6, sport: 1, dport: 80, udp: true}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p peeked
		ok := peek(b, &p)
		var q encap.Packet
		if !ok || encap.Parse(b, &q) != encap.OK || q.L4Proto != q.Key.Proto {
			return
		}
		k := q.Key
		if p.src != k.Src || p.dst != k.Dst || p.v6 != k.V6 || (p.proto != k.Proto && !p.extHdr) {
			t.Fatalf("peek %+v, parse %+v", p, k)
		}
		if p.portsKnown && (p.sport != k.SrcPort || p.dport != k.DstPort) {
			t.Fatalf("ports: peek %d>%d, parse %d>%d", p.sport, p.dport, k.SrcPort, k.DstPort)
		}
	})
}

// BenchmarkCapture is BenchmarkProcess's dr case at 1k flows with a capture off (the same
// loop as BenchmarkProcess), armed with a filter that matches nothing (a client prefix, and a
// service with a backend), and armed keeping every frame (read after every batch).
func BenchmarkCapture(b *testing.B) {
	for _, c := range []struct {
		name   string
		filter *CaptureFilter
	}{
		{"off", nil},
		{"nomatch-client", &CaptureFilter{Client: netip.MustParsePrefix("198.19.255.0/24")}},
		{"nomatch-service", &CaptureFilter{Service: "other", Backend: "b0"}},
		{"all", &CaptureFilter{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			const flows = 1 << 10
			tmpl := craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80, payload: 6})
			e, err := NewEngine(0, 2*flows)
			if err != nil {
				b.Fatal(err)
			}
			s := mustSnapshot(b, nil, spec(b, "web", 0, vip4, 80, MethodDR, 3),
				spec(b, "other", 1, netip.MustParseAddr("198.18.0.101"), 80, MethodDR, 2))
			fb := newFlowBatch(tmpl, flows, false)
			for range flows / maxBatch {
				fb.prep()
				e.Process(s, fb.frames, 1)
			}
			var capt *Capture
			if c.filter != nil {
				_, capt = testCapture(b, s, CaptureOptions{Filter: *c.filter, Snaplen: 128, Ring: 1 << 10})
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPUClock()
			for b.Loop() {
				fb.prep()
				if capt != nil {
					capt.process(0, e, s, fb.frames, 2)
					capt.Read(func(*CaptureRecord) {})
				} else {
					e.Process(s, fb.frames, 2)
				}
			}
			cpu.report(b, b.N*maxBatch)
			if capt != nil && c.name != "all" && capt.Stats().Read != 0 {
				b.Fatalf("a filter that matches nothing kept %d records", capt.Stats().Read)
			}
		})
	}
}
