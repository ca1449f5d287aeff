package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/sched"
)

// persistentSpec is an rr service of n backends on vip4 with persistence (IPv4 /32).
func persistentSpec(t testing.TB, n int) ServiceSpec { return persistentSpecOn(t, vip4, n) }

// persistentSpecOn is an rr service of n backends on vip with persistence (/32, /64).
func persistentSpecOn(t testing.TB, vip netip.Addr, n int) ServiceSpec {
	t.Helper()
	sp := rrSpecOn(t, vip, n)
	bs := make([]sched.Backend, n)
	for i := range bs {
		bs[i] = sched.Backend{ID: uint32(i + 1), Name: "b" + string(rune('0'+i)), Weight: 1, Up: true}
	}
	s, err := sched.NewService(sched.ServiceConfig{Strategy: sched.RoundRobin,
		Persistence: sched.Persistence{Timeout: 300 * time.Second, Prefix4: 32}}, bs)
	if err != nil {
		t.Fatal(err)
	}
	sp.Sched = s
	return sp
}

// clientAddr is test client i's address: 198.18.5.i, or 2001:2:0:5i::1 (a /64 of its own)
// when v6; with v6 host bits h set when h is not 0.
func clientAddr(i int, v6 bool, h byte) netip.Addr {
	if !v6 {
		return netip.AddrFrom4([4]byte{198, 18, 5, byte(i)})
	}
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, 0x50 + byte(i), 15: 1 + h})
}

// relay moves the records queued on ring into table, as the Node's sender and the peer's
// receiver would; it returns them.
func relay(ring *connsync.Ring, table *connsync.Table) []connsync.Record {
	recs := make([]connsync.Record, 1024)
	n := ring.Pop(recs)
	for i := range recs[:n] {
		table.Put(&recs[i])
	}
	return recs[:n]
}

// A persistent client's first connection sends its template (a SYN: no connection record);
// on a peer whose own persistence knows nothing, the client's new connections (from other
// addresses of its prefix too, for IPv6's /64) go to the template's backend, where
// round-robin would spread them.
func TestEngineSyncTemplates(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) { engineSyncTemplates(t, vip) })
	}
}

func engineSyncTemplates(t *testing.T, vip netip.Addr) {
	const clients = 12
	v6 := vip.Is6()
	sender := newEngine(t)
	ring := syncNode(t).Ring()
	sender.SetSync(ring, nil, time.Minute, true)
	s := mustSnapshot(t, nil, persistentSpecOn(t, vip, 4))
	syn := func(e *Engine, src netip.Addr, port uint16) int {
		f := frameOf(craft(t, pktOpts{src: src, dst: vip, sport: port, dport: 80, flags: encap.TCPFlagSYN}))
		run(e, s, &f)
		return backendOf(t, &f)
	}
	want := map[netip.Addr]int{}
	for i := range clients {
		c := clientAddr(i, v6, 0)
		want[c] = syn(sender, c, 3000)
		// A second connection of the client: persistence, no second template.
		if syn(sender, c, 3001) != want[c] {
			t.Fatalf("client %d: persistence broken on the sender", i)
		}
	}
	table := connsync.NewTable(1024, sched.Timeouts{})
	recs := relay(ring, table)
	if len(recs) != clients {
		t.Fatalf("%d records for %d new clients, want one template each", len(recs), clients)
	}
	for _, r := range recs {
		c := netip.AddrFrom4([4]byte(r.Key.Src[:4]))
		if v6 {
			c = clientAddr(int(r.Key.Src[7]-0x50), true, 0) // the /64 of client i, host bits zero on the wire
			if r.Key.Src[15] != 0 {
				t.Fatalf("template %+v: host bits not masked", r)
			}
		}
		b, ok := want[c]
		if !ok || r.Kind != connsync.KindTemplate || r.Key.SrcPort != 0 || r.Key.V6 != v6 ||
			r.Key.DstPort != 80 || r.BackendV6 != v6 || !sameAddr(r.Backend, backendAddr(v6, b)) || !sameAddr(r.Key.Dst, vip) {
			t.Fatalf("template %+v, client %v on backend %d", r, c, b)
		}
	}
	peer, _ := NewEngine(1, 1<<12)
	peer.SetSync(nil, table, time.Minute, true)
	plain, _ := NewEngine(1, 1<<12)
	moved := 0
	for i := range clients {
		c := clientAddr(i, v6, 0)
		for port := uint16(4000); port < 4003; port++ {
			src := c
			if v6 {
				src = clientAddr(i, true, byte(port)) // another address of the client's /64
			}
			if got := syn(peer, src, port); got != want[c] {
				t.Errorf("client %d, new connection from %v port %d: backend %d on the peer, want %d", i, src, port, got, want[c])
			}
		}
		if syn(plain, c, 4000) != want[c] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("without the templates no client moved: the test proves nothing")
	}
	t.Logf("without templates %d/%d clients moved", moved, clients)
}

// sameAddr reports whether a record's 16-byte address field holds a.
func sameAddr(b [16]byte, a netip.Addr) bool {
	if a.Is4() {
		return [4]byte(b[:4]) == a.As4() && [12]byte(b[4:]) == [12]byte{}
	}
	return b == a.As16()
}

// The peer's copy of a live connection the sender evicted is removed: after every record
// is applied, the peer holds exactly the flows the sender's table still holds.
func TestEngineSyncRemovals(t *testing.T) {
	sender, err := NewEngine(0, 64)
	if err != nil {
		t.Fatal(err)
	}
	ring := syncNode(t).Ring()
	sender.SetSync(ring, nil, time.Minute, true)
	s := mustSnapshot(t, nil, rrSpec(t, 3))
	const flows = 300
	table := connsync.NewTable(1024, sched.Timeouts{})
	removals := 0
	for port := uint16(1); port <= flows; port++ {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80}))
		run(sender, s, &f)
		for _, r := range relay(ring, table) {
			if r.Kind == connsync.KindRemove {
				removals++
			}
		}
	}
	held := 0
	for port := uint16(1); port <= flows; port++ {
		k := sched.Key{SrcPort: port, DstPort: 80, Proto: 6}
		copy(k.Src[:4], client4.AsSlice())
		copy(k.Dst[:4], vip4.AsSlice())
		var r connsync.Record
		if table.Lookup(&k, &r) {
			held++
		}
	}
	if removals != flows-sender.core.Capacity() || held != sender.core.Len() {
		t.Fatalf("%d removals, the peer holds %d flows; the sender evicted %d and holds %d", removals, held,
			flows-sender.core.Capacity(), sender.core.Len())
	}
}

// The sync path of persistent services and of a full table (a template queued, a peer's
// template asked, a removal queued) allocates nothing.
func TestEngineSyncKindsAllocs(t *testing.T) {
	e, _ := NewEngine(0, 64) // full after 64 flows: every new flow evicts one (a removal)
	ring := syncNode(t).Ring()
	table := connsync.NewTable(1024, sched.Timeouts{})
	tp := connsync.Record{Kind: connsync.KindTemplate, Key: sched.Key{Src: [16]byte{198, 18}, Proto: 6}}
	table.Put(&tp) // a template of another client: every new client asks the table
	e.SetSync(ring, table, time.Minute, true)
	s := mustSnapshot(t, nil, persistentSpec(t, 3))
	f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80}))
	batch := []Frame{f}
	n := uint32(0)
	recs := make([]connsync.Record, 8)
	step := func() {
		n++
		binary.BigEndian.PutUint32(f.Buf[headroom+14+12:], 198<<24|18<<16|n) // a new client each time
		binary.BigEndian.PutUint16(f.Buf[headroom+14+20:], uint16(n))
		batch[0] = f
		e.Process(s, batch, int64(n))
		ring.Pop(recs)
	}
	for range 200 {
		step()
	}
	pushed := ring.Pushed()
	if allocs := testing.AllocsPerRun(200, step); allocs != 0 {
		t.Fatalf("%v allocations per new persistent client on a full table, want 0", allocs)
	}
	// Per new client: its connection, its template, an evicted connection's removal.
	if got := ring.Pushed() - pushed; got < 3*200 {
		t.Fatalf("%d records queued in 201 runs, want 3 each", got)
	}
}

// BenchmarkEngineNewClientSync is the data path's cost of persistence templates: batches
// of 64 packets of new clients (a new source address each, far more than the persistence
// table's 65536 slots, so each one makes a template) of a persistent round-robin service,
// on a full connection table (each new flow evicts one), sync off, on without templates
// and on with them, per packet. With templates each packet queues three records: its
// connection, its client's template, the evicted connection's removal.
func BenchmarkEngineNewClientSync(b *testing.B) {
	for _, mode := range []string{"off", "out-notpl", "out"} {
		b.Run("sync="+mode, func(b *testing.B) {
			tmpl := craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80, payload: 6})
			e, err := NewEngine(0, 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			ring := syncNode(b).Ring()
			if mode != "off" {
				e.SetSync(ring, nil, time.Minute, mode == "out")
			}
			s := mustSnapshot(b, nil, persistentSpec(b, 3))
			fb := newFlowBatch(tmpl, 1<<22, false)
			client := uint32(0)
			prep := func() {
				fb.prep()
				for i := range fb.frames {
					client++
					p := fb.frames[i].Buf[headroom+14+12:]
					p[1], p[2], p[3] = byte(client>>16), byte(client>>8), byte(client) // 198.x.y.z
				}
			}
			recs := make([]connsync.Record, 4*maxBatch)
			for range 2000 { // fill the connection and persistence tables
				prep()
				e.Process(s, fb.frames, 1)
				ring.Pop(recs)
			}
			b.ReportAllocs()
			for b.Loop() {
				prep()
				e.Process(s, fb.frames, 2)
				ring.Pop(recs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*maxBatch), "ns/pkt")
			if mode == "out" && ring.Pushed() < uint64(b.N*maxBatch)*3*9/10 {
				b.Fatalf("%d records for %d new clients", ring.Pushed(), b.N*maxBatch)
			}
		})
	}
}

// BenchmarkEngineSyncFlood counts what a flood of short flows into a full connection table
// (64k entries, 2^22 flows) costs the sync, per flow: records queued (removals apart),
// and the entries the table dropped (evicted or expired), which is what sending a removal
// for every dropped entry would cost. syn: a SYN flood (half-open entries); short:
// complete short connections (SYN, ACK, FIN|ACK); ack: mid-flow packets of unknown flows
// (each an established entry).
func BenchmarkEngineSyncFlood(b *testing.B) {
	for _, mode := range []string{"syn", "short", "ack"} {
		b.Run(mode, func(b *testing.B) {
			flags, per := []byte{0x02}, 1
			switch mode {
			case "short":
				flags, per = []byte{0x02, 0x10, 0x11}, 3
			case "ack":
				flags = []byte{0x10}
			}
			tmpl := craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80})
			e, err := NewEngine(0, 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			ring := syncNode(b).Ring()
			e.SetSync(ring, nil, time.Minute, true)
			s := benchSnapshot(b, MethodDR, vip4)
			fb := newFlowBatch(tmpl, 1<<22, false)
			frames := fb.frames[:maxBatch/per*per]
			flow := uint32(0)
			prep := func() {
				for i := range frames {
					f := &frames[i]
					copy(f.Buf[headroom:], tmpl)
					f.Off, f.Len, f.Out = headroom, len(tmpl), 0
					id := flow + uint32(i/per)
					p := f.Buf[headroom:]
					binary.BigEndian.PutUint16(p[14+12+2:], uint16(id))
					binary.BigEndian.PutUint16(p[14+20:], 1024+uint16(id>>16&0x3f))
					p[14+20+13] = flags[i%per]
				}
				flow += uint32(len(frames) / per)
			}
			recs := make([]connsync.Record, 4*maxBatch)
			var removals uint64
			batch := func(now int64) {
				prep()
				e.Process(s, frames, now)
				e.core.Maintain(now)
				for _, r := range recs[:ring.Pop(recs)] {
					if r.Kind == connsync.KindRemove {
						removals++
					}
				}
			}
			for i := range 3000 { // fill the table
				batch(int64(i) * 1000)
			}
			st0, pushed0, rem0, flow0 := e.core.Stats(), ring.Pushed(), removals, flow
			b.ReportAllocs()
			i := int64(3000)
			for b.Loop() {
				batch(i * 1000)
				i++
			}
			st, flows := e.core.Stats(), float64(flow-flow0)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(flows*float64(per)), "ns/pkt")
			b.ReportMetric(float64(ring.Pushed()-pushed0-(removals-rem0))/flows, "records/flow")
			b.ReportMetric(float64(removals-rem0)/flows, "removals/flow")
			b.ReportMetric(float64(st.Evictions+st.Expirations-st0.Evictions-st0.Expirations)/flows, "dropped/flow")
		})
	}
}

// A template's key is the client's address masked to the persistence prefix, as
// netip.Prefix masks it, at every prefix length of both families.
func TestTemplateKeyMask(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		s := mustSnapshot(t, nil, rrSpecOn(t, vip, 2))
		sv := &s.services[0]
		bits := 32
		if vip.Is6() {
			bits = 128
		}
		for n := 1; n <= bits; n++ {
			var src [16]byte
			for i := range src {
				src[i] = byte(0xa5 ^ i*37 ^ n)
			}
			k := sched.Key{Src: src, Dst: vip.As16(), SrcPort: 999, DstPort: 80, Proto: 6, V6: vip.Is6()}
			a := netip.AddrFrom16(src)
			if !vip.Is6() {
				clear(k.Src[4:])
				a = netip.AddrFrom4([4]byte(src[:4]))
			}
			tk := sv.templateKey(sched.Persistence{Prefix4: n, Prefix6: n}, &k)
			want := netip.PrefixFrom(a, n).Masked().Addr()
			got := netip.AddrFrom16(tk.Src)
			if !vip.Is6() {
				got = netip.AddrFrom4([4]byte(tk.Src[:4]))
			}
			if got != want || tk.SrcPort != 0 || tk.DstPort != 80 || tk.Dst != sv.vip || tk.V6 != k.V6 {
				t.Fatalf("/%d of %v: template key %v %+v, want source %v", n, a, got, tk, want)
			}
		}
	}
}
