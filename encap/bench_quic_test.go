package encap

import "testing"

// BenchmarkQUICServerID decodes one connection ID per iteration in each QUIC-LB mode.
func BenchmarkQUICServerID(b *testing.B) {
	key := unhex(b, "8f95f09245765f80256934e50c66207f")
	for _, c := range []struct {
		name string
		cfg  QUICLBConfig
	}{
		{"plaintext", QUICLBConfig{ServerIDLen: 2, NonceLen: 6}},
		{"single-pass", QUICLBConfig{ServerIDLen: 2, NonceLen: 14, Key: key}},
		{"three-pass", QUICLBConfig{ServerIDLen: 2, NonceLen: 6, Key: key}},
		{"four-pass", QUICLBConfig{ServerIDLen: 10, NonceLen: 5, Key: key}},
	} {
		b.Run(c.name, func(b *testing.B) {
			q, err := NewQUICLB(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			cid, _ := q.Encode(make([]byte, 20), make([]byte, c.cfg.ServerIDLen), make([]byte, c.cfg.NonceLen))
			sc := new(QUICScratch)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := q.ServerID(cid, sc); !ok {
					b.Fatal("no server ID")
				}
			}
		})
	}
}

// BenchmarkUDPEncap encapsulates a 100-byte-payload TCP packet per iteration, IPIP against
// GUE and FOU (the frame is restored before each run, as the IPIP benchmark does).
func BenchmarkUDPEncap(b *testing.B) {
	pkt := mk(b, tcpSpec(false))
	for _, e := range []TunnelEncap{EncapIPIP, EncapGUE, EncapFOU} {
		b.Run(e.String(), func(b *testing.B) {
			tn := mustUDPTunnel(b, "198.18.0.11", "198.18.0.2/32", e, 0)
			buf := make([]byte, 2048)
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[headroom:], pkt)
				Parse(buf[headroom:headroom+len(pkt)], &p)
				if _, _, r := tn.Encap(buf, headroom, len(pkt), &p); r != OK {
					b.Fatal(r)
				}
			}
		})
	}
}
