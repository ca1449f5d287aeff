package dataplane

import (
	"fmt"
	"testing"

	"github.com/xlb-dev/xlb/encap"
)

// quicGUECase is one path of BenchmarkProcessQUICGUE: a UDP service on port 443 and the
// packet every flow of the batch sends.
type quicGUECase struct {
	name    string
	spec    func(testing.TB) ServiceSpec
	payload func(testing.TB) []byte
}

func quicGUECases() []quicGUECase {
	plain := func(m Method, e encap.TunnelEncap) func(testing.TB) ServiceSpec {
		return func(t testing.TB) ServiceSpec {
			sp := spec(t, "udp", 0, vip4, 443, m, 3)
			sp.Proto, sp.Encap = encap.ProtoUDP, e
			return sp
		}
	}
	withQUIC := func(encrypted, single bool) func(testing.TB) ServiceSpec {
		return func(t testing.TB) ServiceSpec { return quicSpec(t, quicLB(t, encrypted, single), MethodDR, 3) }
	}
	cid := func(encrypted, single bool) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return shortHeader(connID(t, quicLB(t, encrypted, single), 1, 1)) }
	}
	initial := func(testing.TB) []byte { return longHeader([]byte{0xff, 1, 2, 3, 4, 5, 6, 7}) }
	return []quicGUECase{
		{"udp-dr", plain(MethodDR, encap.EncapIPIP), cid(false, false)},
		{"quic-plaintext", withQUIC(false, false), cid(false, false)},
		{"quic-3pass", withQUIC(true, false), cid(true, false)},
		{"quic-1pass", withQUIC(true, true), cid(true, true)},
		{"quic-fallback", withQUIC(true, false), initial},
		{"udp-ipip", plain(MethodTunnel, encap.EncapIPIP), cid(false, false)},
		{"udp-gue", plain(MethodTunnel, encap.EncapGUE), cid(false, false)},
		{"udp-fou", plain(MethodTunnel, encap.EncapFOU), cid(false, false)},
	}
}

// BenchmarkProcessQUICGUE is BenchmarkProcess for the QUIC connection-ID routes and the GUE
// and FOU tunnels, each beside its baseline in the same run: udp-dr (the 4-tuple path of a
// UDP service) for the quic-* cases, udp-ipip for udp-gue and udp-fou. The packets are
// UDP datagrams whose payload is a QUIC short header and 24 more bytes (quic-fallback: an
// Initial's long header with a client-chosen connection ID whose codepoint, 7, names no
// configuration: not routable).
func BenchmarkProcessQUICGUE(b *testing.B) {
	for _, flows := range []int{1 << 10, 1 << 16} {
		for _, c := range quicGUECases() {
			b.Run(fmt.Sprintf("%s/flows=%dk", c.name, flows>>10), func(b *testing.B) {
				tmpl := udpPacket(b, client4, 1024, c.payload(b))
				s := mustSnapshot(b, nil, c.spec(b))
				e, fb := warmEngine(b, s, tmpl, flows, false)
				timeBatches(b, e, s, fb, nil)
			})
		}
	}
}

// TestProcessAllocsQUICGUE: the QUIC routes (both modes, routed and fallback) and the GUE and
// FOU tunnels allocate nothing per batch.
func TestProcessAllocsQUICGUE(t *testing.T) {
	for _, c := range quicGUECases() {
		e := newEngine(t)
		s := mustSnapshot(t, nil, c.spec(t))
		fb := newFlowBatch(udpPacket(t, client4, 1024, c.payload(t)), 1<<10, false)
		fb.prep()
		e.Process(s, fb.frames, 1)
		if got := e.Counters(); got.Dropped() != 0 || fb.frames[0].Out != ifLB {
			t.Fatalf("%s: not forwarded: %+v", c.name, got)
		}
		allocs := testing.AllocsPerRun(100, func() {
			fb.prep()
			e.Process(s, fb.frames, 2)
		})
		if allocs != 0 {
			t.Errorf("%s: Process allocates %.1f times per batch", c.name, allocs)
		}
	}
}
