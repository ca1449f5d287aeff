package encap

import "testing"

// TestZeroAllocsQUICGUE asserts that QUIC-LB decoding and GUE/FOU encapsulation allocate
// nothing per packet.
func TestZeroAllocsQUICGUE(t *testing.T) {
	key := unhex(t, "8f95f09245765f80256934e50c66207f")
	sc := new(QUICScratch)
	v4 := mk(t, tcpSpec(false))
	v6 := mk(t, tcpSpec(true))
	gue := mustUDPTunnel(t, "198.18.0.11", "198.18.0.2/32", EncapGUE, 0)
	fou6 := mustUDPTunnel(t, "2001:db8:2::11", "2001:db8:3::/64", EncapFOU, 0)
	buf := make([]byte, 4096)
	var p Packet
	cases := []struct {
		name string
		f    func()
	}{
		{"gue ipv4", func() {
			copy(buf[headroom:], v4)
			Parse(buf[headroom:headroom+len(v4)], &p)
			gue.Encap(buf, headroom, len(v4), &p)
		}},
		{"fou ipv6", func() {
			copy(buf[headroom:], v6)
			Parse(buf[headroom:headroom+len(v6)], &p)
			fou6.Encap(buf, headroom, len(v6), &p)
		}},
		{"dcid", func() { QUICDestConnID([]byte{0x40, 1, 2, 3, 4, 5, 6, 7, 8}, 8) }},
	}
	for _, c := range []QUICLBConfig{
		{ServerIDLen: 2, NonceLen: 6},
		{ServerIDLen: 2, NonceLen: 6, Key: key},
		{ServerIDLen: 8, NonceLen: 8, Key: key},
		{ServerIDLen: 10, NonceLen: 5, Key: key},
	} {
		q, err := NewQUICLB(c)
		if err != nil {
			t.Fatal(err)
		}
		cid, err := q.Encode(make([]byte, 20), make([]byte, c.ServerIDLen), make([]byte, c.NonceLen))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name string
			f    func()
		}{"quic-lb", func() {
			if _, ok := q.ServerID(cid, sc); !ok {
				t.Fatal("no server ID")
			}
		}})
	}
	for _, tc := range cases {
		if a := testing.AllocsPerRun(200, tc.f); a != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, a)
		}
	}
}
