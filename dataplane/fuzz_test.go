package dataplane

import (
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/encap"
)

// FuzzProcess feeds arbitrary frames through the engine under a snapshot with every method
// (dr, tunnel over IPv4 and IPv6, nat both ways): it must never panic, and a forwarded frame
// must lie inside its buffer, leave by a known interface and parse. Run it with a short
// minimization time, or the minimizer spends minutes on the large seeds:
//
//	go test -run '^$' -fuzz FuzzProcess -fuzztime 40s -fuzzminimizetime 2s ./dataplane/
func FuzzProcess(f *testing.F) {
	nat := spec(f, "nat", 1, netip.MustParseAddr("198.18.0.101"), 0, MethodNAT, 2)
	for i := range nat.Targets {
		nat.Targets[i].Addr = netip.AddrFrom4([4]byte{198, 18, 0, byte(50 + i)})
	}
	small := spec(f, "small", 4, vip6, 81, MethodDR, 1)
	small.Targets[0].Hop.MTU = 1280
	s := mustSnapshot(f, []Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"),
		Hop: NextHop{IfIndex: ifLB, SrcMAC: macLB, DstMAC: macClient}}},
		spec(f, "dr", 0, vip4, 80, MethodDR, 3), nat,
		spec(f, "tun6", 2, vip6, 80, MethodTunnel, 2), spec(f, "tun4", 3, vip4, 443, MethodTunnel, 2), small)
	for _, o := range []pktOpts{
		{src: client4, dst: vip4, sport: 1, dport: 80, flags: encap.TCPFlagSYN},
		{src: client4, dst: netip.MustParseAddr("198.18.0.101"), sport: 1, dport: 9, udp: true, payload: 20},
		{src: netip.MustParseAddr("198.18.0.50"), dst: client4, sport: 9, dport: 1, udp: true},
		{src: client6, dst: vip6, sport: 1, dport: 80, payload: 1400},
		{src: client4, dst: vip4, sport: 1, dport: 443, payload: 1480},
		{src: client6, dst: vip6, sport: 1, dport: 81, payload: 1300},
	} {
		f.Add(craft(f, o), uint16(headroom))
	}
	e, err := NewEngine(0, 1<<10)
	if err != nil {
		f.Fatal(err)
	}
	buf := make([]byte, frameSize)
	frames := make([]Frame, 1)
	f.Fuzz(func(t *testing.T, pkt []byte, off uint16) {
		o := int(off) % frameSize
		if o+len(pkt) > frameSize {
			pkt = pkt[:frameSize-o]
		}
		clear(buf)
		copy(buf[o:], pkt)
		frames[0] = Frame{Buf: buf, Off: o, Len: len(pkt), In: ifLB}
		e.Process(s, frames, 1)
		fr := frames[0]
		if fr.Out == 0 {
			return
		}
		if fr.Out != ifLB || fr.Off < 0 || fr.Len < 14 || fr.Off+fr.Len > len(buf) {
			t.Fatalf("forwarded frame out %d off %d len %d", fr.Out, fr.Off, fr.Len)
		}
		var p encap.Packet
		if r := encap.Parse(buf[fr.Off:fr.Off+fr.Len], &p); r != encap.OK {
			t.Fatalf("the engine sent a frame that does not parse: %v", r)
		}
	})
}
