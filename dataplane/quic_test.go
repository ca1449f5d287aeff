package dataplane

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

const quicKey = "8f95f09245765f80256934e50c66207f"

// quicLB returns a QUIC-LB codec: 2-byte server IDs, 8-byte connection IDs (three-pass
// decoding when encrypted), or 16-byte plaintext blocks (single pass) when single is set.
func quicLB(t testing.TB, encrypted, single bool) *encap.QUICLB {
	t.Helper()
	c := encap.QUICLBConfig{ConfigID: 1, ServerIDLen: 2, NonceLen: 5}
	if single {
		c.NonceLen = 14
	}
	if encrypted {
		c.Key, _ = hex.DecodeString(quicKey)
	}
	q, err := encap.NewQUICLB(c)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func serverID(i int) []byte { return []byte{0x0a, byte(i + 1)} }

// quicSpec is a UDP service on the IPv4 VIP's port 443 whose backend i has server ID
// serverID(i).
func quicSpec(t testing.TB, q *encap.QUICLB, m Method, n int, up ...bool) ServiceSpec {
	t.Helper()
	return quicSpecOn(t, vip4, q, m, n, up...)
}

// quicSpecOn is quicSpec on the given VIP.
func quicSpecOn(t testing.TB, vip netip.Addr, q *encap.QUICLB, m Method, n int, up ...bool) ServiceSpec {
	t.Helper()
	sp := spec(t, "quic", 0, vip, 443, m, n)
	sp.Proto, sp.QUIC = encap.ProtoUDP, q
	if len(up) > 0 {
		bs := make([]sched.Backend, n)
		for i := range bs {
			bs[i] = sched.Backend{ID: uint32(i + 1), Name: fmt.Sprintf("b%d", i), Weight: 1, Up: up[i]}
		}
		var err error
		if sp.Sched, err = sched.NewService(sched.ServiceConfig{Strategy: sched.Maglev}, bs); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sp.Targets {
		sp.Targets[i].ServerID = serverID(i)
	}
	return sp
}

// connID encodes backend i's server ID with a nonce that varies with seq.
func connID(t testing.TB, q *encap.QUICLB, i, seq int) []byte {
	t.Helper()
	nonce := make([]byte, q.ConnIDLen()-1-q.ServerIDLen())
	nonce[0], nonce[1] = byte(seq), byte(seq>>8)
	cid, err := q.Encode(make([]byte, 20), serverID(i), nonce)
	if err != nil {
		t.Fatal(err)
	}
	return cid
}

// shortHeader is a QUIC 1-RTT packet's start: the first byte, the DCID, protected bytes.
func shortHeader(cid []byte) []byte {
	return append(append([]byte{0x41}, cid...), make([]byte, 24)...)
}

// longHeader is a QUIC version 1 Initial's start with the given DCID.
func longHeader(dcid []byte) []byte {
	b := append([]byte{0xc0, 0, 0, 0, 1, byte(len(dcid))}, dcid...)
	return append(append(b, 0), make([]byte, 40)...)
}

// udpPacket is a UDP datagram from src:sport to the VIP of src's family, port 443, with the
// given payload.
func udpPacket(t testing.TB, src netip.Addr, sport uint16, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macClient[:]), DstMAC: net.HardwareAddr(macLB[:]), EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: vip4.AsSlice()}
	if src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: vip6.AsSlice()}
	}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: 443}
	_ = u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestEngineQUICRoutesByConnID: packets whose connection ID names backend i reach backend i
// from any address and port (where the 4-tuple path would spread them), in both modes and in
// short and long headers.
func TestEngineQUICRoutesByConnID(t *testing.T) {
	for _, mode := range []struct {
		name              string
		encrypted, single bool
	}{{"plaintext", false, false}, {"encrypted", true, false}, {"encrypted single pass", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			q := quicLB(t, mode.encrypted, mode.single)
			e := newEngine(t)
			sp6 := quicSpecOn(t, vip6, q, MethodDR, 3)
			sp6.Name, sp6.Sched = "quic6", schedService(t, 1, 3, sched.Maglev)
			s := mustSnapshot(t, nil, quicSpec(t, q, MethodDR, 3), sp6)
			n := 0
			for b := range 3 {
				for k := range 20 {
					src := netip.AddrFrom4([4]byte{198, 18, 7, byte(k)})
					if k%3 == 2 {
						src = netip.MustParseAddr(fmt.Sprintf("2001:2::7:%d", k))
					}
					hdr := shortHeader(connID(t, q, b, k))
					if k%2 == 1 {
						hdr = longHeader(connID(t, q, b, k))
					}
					f := frameOf(udpPacket(t, src, uint16(2000+k*7), hdr))
					run(e, s, &f)
					n++
					if f.Out != ifLB || backendOf(t, &f) != b {
						t.Fatalf("backend %d's connection ID from %v went to %d (out %d)", b, src, backendOf(t, &f), f.Out)
					}
				}
			}
			c := e.Counters()
			if c.QUICRouted != uint64(n) || c.QUICFallback != 0 || c.ConnEntries != 0 {
				t.Fatalf("routed %d fallback %d table entries %d, want %d 0 0", c.QUICRouted, c.QUICFallback, c.ConnEntries, n)
			}
		})
	}
}

// TestEngineQUICFallback: an Initial with a client-chosen DCID, a connection ID of another
// configuration, an unknown server ID, a backend that is down and a datagram that is no QUIC
// packet all take the 4-tuple path and keep to it.
func TestEngineQUICFallback(t *testing.T) {
	q := quicLB(t, true, false)
	e := newEngine(t)
	s := mustSnapshot(t, nil, quicSpec(t, q, MethodDR, 3, true, false, true))
	other := quicLB(t, false, false)
	unknown, err := q.Encode(make([]byte, 20), []byte{0x0b, 0x07}, make([]byte, 5))
	if err != nil {
		t.Fatal(err)
	}
	random := []byte{0xff, 1, 2, 3, 4, 5, 6, 7}
	otherCID := connID(t, other, 0, 1)
	otherCID[0] = 0x07 // config 0: not this service's
	for name, payload := range map[string][]byte{
		"client initial": longHeader(random),
		"other config":   shortHeader(otherCID),
		"unknown id":     shortHeader(unknown),
		"backend down":   shortHeader(connID(t, q, 1, 3)),
		"empty":          nil,
		"truncated":      {0x41, 0x20},
	} {
		t.Run(name, func(t *testing.T) {
			before := e.Counters()
			got := -1
			for k := range 3 { // the same 4-tuple three times: the same backend
				f := frameOf(udpPacket(t, client4, 5555, payload))
				run(e, s, &f)
				if f.Out != ifLB {
					t.Fatalf("dropped: %+v", e.Counters())
				}
				b := backendOf(t, &f)
				if b == 1 {
					t.Fatal("sent to the backend that is down")
				}
				if k > 0 && b != got {
					t.Fatalf("the 4-tuple moved from backend %d to %d", got, b)
				}
				got = b
			}
			c := e.Counters()
			if c.QUICFallback-before.QUICFallback != 3 || c.QUICRouted != before.QUICRouted {
				t.Fatalf("fallback +%d routed +%d, want +3 +0", c.QUICFallback-before.QUICFallback, c.QUICRouted-before.QUICRouted)
			}
		})
	}
}

func TestSnapshotQUICErrors(t *testing.T) {
	q := quicLB(t, false, false)
	long, err := encap.NewQUICLB(encap.QUICLBConfig{ServerIDLen: 9, NonceLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*ServiceSpec){
		"tcp":                func(sp *ServiceSpec) { sp.Proto = encap.ProtoTCP },
		"long server ids":    func(sp *ServiceSpec) { sp.QUIC = long },
		"id length":          func(sp *ServiceSpec) { sp.Targets[1].ServerID = []byte{1, 2, 3} },
		"duplicate id":       func(sp *ServiceSpec) { sp.Targets[2].ServerID = sp.Targets[0].ServerID },
		"id without quic":    func(sp *ServiceSpec) { sp.QUIC = nil },
		"encap on dr":        func(sp *ServiceSpec) { sp.Encap = encap.EncapGUE },
		"encap port on ipip": func(sp *ServiceSpec) { sp.Method, sp.EncapPort = MethodTunnel, 7 },
		"unknown encap":      func(sp *ServiceSpec) { sp.Method, sp.Encap = MethodTunnel, 9 },
	} {
		sp := quicSpec(t, q, MethodDR, 3)
		mod(&sp)
		if sp.Method == MethodTunnel {
			sp.TunnelSource = netip.MustParsePrefix("198.18.0.2/32")
		}
		if _, err := NewSnapshot([]ServiceSpec{sp}, nil); !errors.Is(err, ErrBadService) && !errors.Is(err, ErrBadBackend) {
			t.Errorf("%s: %v", name, err)
		}
	}
	sp := quicSpec(t, q, MethodDR, 3)
	sp.Targets[1].ServerID = nil // a backend without a server ID is fine
	if _, err := NewSnapshot([]ServiceSpec{sp}, nil); err != nil {
		t.Errorf("backend without server ID: %v", err)
	}
}

// TestEngineGUE: the tunnel method with GUE and FOU wraps the packet in UDP to the configured
// port, and the QUIC route and the encapsulation compose.
func TestEngineGUE(t *testing.T) {
	q := quicLB(t, true, false)
	for _, enc := range []encap.TunnelEncap{encap.EncapGUE, encap.EncapFOU} {
		t.Run(enc.String(), func(t *testing.T) {
			sp := quicSpec(t, q, MethodTunnel, 3)
			sp.Encap, sp.EncapPort = enc, 7777
			e := newEngine(t)
			s := mustSnapshot(t, nil, sp)
			pkt := udpPacket(t, client4, 4242, shortHeader(connID(t, q, 2, 9)))
			f := frameOf(pkt)
			run(e, s, &f)
			if f.Out != ifLB || backendOf(t, &f) != 2 {
				t.Fatalf("out %d: %+v", f.Out, e.Counters())
			}
			p := decode(f.packet())
			outer, ok1 := p.Layers()[1].(*layers.IPv4)
			u, ok2 := p.Layers()[2].(*layers.UDP)
			if !ok1 || !ok2 || outer.Protocol != layers.IPProtocolUDP || u.DstPort != 7777 || u.SrcPort < 49152 {
				t.Fatalf("outer headers: %v", p)
			}
			if dst, _ := netip.AddrFromSlice(outer.DstIP); dst != backendAddr(false, 2) {
				t.Fatalf("outer dst %v", dst)
			}
			skip := 0
			if enc == encap.EncapGUE {
				skip = 4
			}
			if string(u.Payload[skip:]) != string(pkt[14:]) {
				t.Fatal("inner packet changed")
			}
			checksumsOK(t, f.packet())
		})
	}
}

// FuzzProcessQUIC feeds arbitrary UDP payloads to a QUIC service (encrypted IDs, GUE tunnel to
// its backends): never a panic; every frame is forwarded, in its buffer, and parses; a frame
// counted as routed by ID went to the backend its connection ID names.
//
//	go test -run '^$' -fuzz FuzzProcessQUIC -fuzztime 30s -fuzzminimizetime 2s ./dataplane/
func FuzzProcessQUIC(f *testing.F) {
	q := quicLB(f, true, false)
	sp := quicSpec(f, q, MethodTunnel, 3)
	sp.Encap = encap.EncapGUE
	s := mustSnapshot(f, nil, sp)
	f.Add(shortHeader(connID(f, q, 1, 1)), uint16(5000))
	f.Add(longHeader(connID(f, q, 2, 1)), uint16(5001))
	f.Add(longHeader([]byte{0xff, 1, 2, 3}), uint16(5002))
	e, err := NewEngine(0, 1<<10)
	if err != nil {
		f.Fatal(err)
	}
	var sc encap.QUICScratch
	f.Fuzz(func(t *testing.T, payload []byte, sport uint16) {
		if len(payload) > 1400 {
			payload = payload[:1400]
		}
		fr := frameOf(udpPacket(t, client4, sport, payload))
		before := e.Counters().QUICRouted
		run(e, s, &fr)
		if fr.Out != ifLB || fr.Off < 0 || fr.Off+fr.Len > len(fr.Buf) {
			t.Fatalf("frame out %d off %d len %d: %+v", fr.Out, fr.Off, fr.Len, e.Counters())
		}
		var p encap.Packet
		if r := encap.Parse(fr.packet(), &p); r != encap.OK || p.L4Proto != encap.ProtoUDP {
			t.Fatalf("sent a frame that does not parse: %v", r)
		}
		if e.Counters().QUICRouted == before {
			return
		}
		h, ok := encap.QUICDestConnID(payload, q.ConnIDLen())
		if !ok {
			t.Fatal("routed by ID without a connection ID")
		}
		sid, ok := q.ServerID(payload[h.DCIDOff:h.DCIDOff+h.DCIDLen], &sc)
		if !ok || len(sid) != 2 || sid[0] != 0x0a || backendOf(t, &fr) != int(sid[1])-1 {
			t.Fatalf("routed to backend %d for server ID %x", backendOf(t, &fr), sid)
		}
	})
}

// TestEngineQUICRotation: during a rotation the service routes the IDs of its current
// configuration and of the previous ones (each with its own codepoint, key and length);
// a codepoint of neither falls back.
func TestEngineQUICRotation(t *testing.T) {
	cur := quicLB(t, true, false) // codepoint 1, 8-byte IDs, encrypted
	prev, err := encap.NewQUICLB(encap.QUICLBConfig{ConfigID: 0, ServerIDLen: 2, NonceLen: 9})
	if err != nil {
		t.Fatal(err)
	}
	other, err := encap.NewQUICLB(encap.QUICLBConfig{ConfigID: 2, ServerIDLen: 2, NonceLen: 5})
	if err != nil {
		t.Fatal(err)
	}
	sp := quicSpec(t, cur, MethodDR, 3)
	sp.QUICPrevious = []*encap.QUICLB{prev}
	s := mustSnapshot(t, nil, sp)
	e := newEngine(t)
	for k := range 12 {
		b := k % 3
		q := []*encap.QUICLB{cur, prev}[k/3%2]
		hdr := shortHeader(connID(t, q, b, k))
		if k >= 6 {
			hdr = longHeader(connID(t, q, b, k))
		}
		f := frameOf(udpPacket(t, netip.AddrFrom4([4]byte{198, 18, 8, byte(k)}), uint16(3000+k), hdr))
		run(e, s, &f)
		if f.Out != ifLB || backendOf(t, &f) != b {
			t.Fatalf("packet %d (config %d): backend %d, want %d", k, q.ConfigID(), backendOf(t, &f), b)
		}
	}
	f := frameOf(udpPacket(t, client4, 3100, shortHeader(connID(t, other, 0, 1))))
	run(e, s, &f)
	if c := e.Counters(); c.QUICRouted != 12 || c.QUICFallback != 1 {
		t.Fatalf("routed %d fallback %d, want 12 1", c.QUICRouted, c.QUICFallback)
	}
	long, err := encap.NewQUICLB(encap.QUICLBConfig{ConfigID: 0, ServerIDLen: 3, NonceLen: 5})
	if err != nil {
		t.Fatal(err)
	}
	for name, prevs := range map[string][]*encap.QUICLB{
		"same codepoint":       {cur},
		"server ID length":     {long},
		"nil previous":         {nil},
		"previous, no current": {prev},
	} {
		sp := quicSpec(t, cur, MethodDR, 3)
		sp.QUICPrevious = prevs
		if name == "previous, no current" {
			sp.QUIC = nil
			for i := range sp.Targets {
				sp.Targets[i].ServerID = nil
			}
		}
		if _, err := NewSnapshot([]ServiceSpec{sp}, nil); !errors.Is(err, ErrBadService) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
