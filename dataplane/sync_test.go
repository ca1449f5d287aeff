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

func syncNode(t testing.TB) *connsync.Node {
	t.Helper()
	n, err := connsync.New(connsync.Config{Key: []byte("0123456789abcdef"), RingSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func rrSpec(t testing.TB, n int) ServiceSpec { return rrSpecOn(t, vip4, n) }

func rrSpecOn(t testing.TB, vip netip.Addr, n int) ServiceSpec {
	sp := spec(t, "web", 0, vip, 80, MethodDR, n)
	sp.Sched = schedService(t, 0, n, sched.RoundRobin)
	return sp
}

// A flow that reached another host's table goes, on this host, to the backend it had
// there: for a mid-flow packet, on a table miss, while that backend is up; a SYN is a new
// connection and goes where the strategy says.
func TestEngineSyncedFlows(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) { engineSyncedFlows(t, vip) })
	}
}

func engineSyncedFlows(t *testing.T, vip netip.Addr) {
	client := client4
	if vip.Is6() {
		client = client6
	}
	sender := newEngine(t)
	node := syncNode(t)
	ring := node.Ring()
	sender.SetSync(ring, nil, time.Minute, true)
	s := mustSnapshot(t, nil, rrSpecOn(t, vip, 3))
	const flows = 60
	backend := map[uint16]int{}
	for port := uint16(2000); port < 2000+flows; port++ {
		syn := frameOf(craft(t, pktOpts{src: client, dst: vip, sport: port, dport: 80, flags: encap.TCPFlagSYN}))
		run(sender, s, &syn)
		backend[port] = backendOf(t, &syn)
		if n := ring.Pushed(); n != uint64(port-2000) {
			t.Fatalf("a SYN (half-open connection) was queued: %d records after %d flows", n, port-2000)
		}
		ack := frameOf(craft(t, pktOpts{src: client, dst: vip, sport: port, dport: 80}))
		run(sender, s, &ack)
		if got := backendOf(t, &ack); got != backend[port] {
			t.Fatalf("flow %d: ack to %d, syn to %d", port, got, backend[port])
		}
	}
	recs := make([]connsync.Record, 2*flows)
	n := ring.Pop(recs)
	if n != flows {
		t.Fatalf("%d records queued for %d established flows, want one each", n, flows)
	}
	table := connsync.NewTable(1024, sched.Timeouts{})
	for i := range recs[:n] {
		r := &recs[i]
		if r.State != sched.ConnEstablished || r.Key.SrcPort < 2000 || r.BackendPort != 0 {
			t.Fatalf("record %+v", r)
		}
		if want := backendAddr(vip.Is6(), backend[r.Key.SrcPort]); r.BackendV6 != vip.Is6() || r.Key.V6 != vip.Is6() ||
			(vip.Is6() && r.Backend != want.As16()) || (vip.Is4() && [4]byte(r.Backend[:4]) != want.As4()) {
			t.Fatalf("record of flow %d names %v, the flow is on backend %d", r.Key.SrcPort, r.Backend[:4], backend[r.Key.SrcPort])
		}
		table.Put(r)
	}

	// Another host (worker id 1, so its round-robin starts elsewhere): with the table and
	// without it.
	peer, err := NewEngine(1, 1<<12)
	if err != nil {
		t.Fatal(err)
	}
	peer.SetSync(nil, table, time.Minute, true)
	plain, err := NewEngine(1, 1<<12)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for port, b := range backend {
		f := frameOf(craft(t, pktOpts{src: client, dst: vip, sport: port, dport: 80}))
		run(peer, s, &f)
		if got := backendOf(t, &f); got != b {
			t.Errorf("flow %d: synced host sent it to %d, want %d", port, got, b)
		}
		g := frameOf(craft(t, pktOpts{src: client, dst: vip, sport: port, dport: 80}))
		run(plain, s, &g)
		if backendOf(t, &g) != b {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("without sync no flow moved: the test proves nothing")
	}
	t.Logf("without sync %d/%d flows moved", moved, flows)

	// A SYN for a tuple the table holds starts a new connection: the strategy decides
	// (round-robin on a fresh engine: backends 2, 0, 1, ... for worker id 2).
	fresh, _ := NewEngine(2, 1<<12)
	fresh.SetSync(nil, table, time.Minute, true)
	for port := uint16(2000); port < 2006; port++ {
		f := frameOf(craft(t, pktOpts{src: client, dst: vip, sport: port, dport: 80, flags: encap.TCPFlagSYN}))
		run(fresh, s, &f)
		if got, want := backendOf(t, &f), int(2+port-2000)%3; got != want {
			t.Errorf("SYN of flow %d: backend %d, want the strategy's %d", port, got, want)
		}
	}

	// A synced backend that is down is not used.
	down := rrSpecOn(t, vip, 3)
	bs := []sched.Backend{{ID: 1, Name: "b0", Weight: 1, Up: true}, {ID: 2, Name: "b1", Weight: 1, Up: false},
		{ID: 3, Name: "b2", Weight: 1, Up: true}}
	down.Sched, _ = sched.NewService(sched.ServiceConfig{Strategy: sched.RoundRobin}, bs)
	sd := mustSnapshot(t, nil, down)
	other, _ := NewEngine(3, 1<<12)
	other.SetSync(nil, table, time.Minute, true)
	onDown := 0
	for port, b := range backend {
		f := frameOf(craft(t, pktOpts{src: client, dst: vip, sport: port, dport: 80}))
		run(other, sd, &f)
		got := backendOf(t, &f)
		if got == 1 {
			t.Fatalf("flow %d sent to the down backend", port)
		}
		if b == 1 {
			onDown++
		} else if got != b {
			t.Errorf("flow %d: %d, want its synced %d", port, got, b)
		}
	}
	if onDown == 0 {
		t.Fatal("no flow was on backend 1: the test proves nothing")
	}
}

// A flow whose state changes is queued again; a flow seen again past the refresh period
// too, and not before.
func TestEngineSyncRefreshAndStateChange(t *testing.T) {
	e := newEngine(t)
	ring := syncNode(t).Ring()
	e.SetSync(ring, nil, 2*time.Second, true)
	s := mustSnapshot(t, nil, rrSpec(t, 2))
	at := func(now time.Duration, o pktOpts) {
		f := frameOf(craft(t, o))
		if o.flags == encap.TCPFlagFIN {
			f.Buf[headroom+14+20+13] = 0x11 // FIN|ACK (craft writes SYN or ACK)
		}
		e.Process(s, []Frame{f}, int64(now))
	}
	o := pktOpts{src: client4, dst: vip4, sport: 7, dport: 80}
	at(time.Second, o) // a mid-flow packet: established at once
	at(time.Second+time.Millisecond, o)
	if n := ring.Pushed(); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
	at(2*time.Second, o)
	if n := ring.Pushed(); n != 1 {
		t.Fatalf("%d records within the refresh period, want 1", n)
	}
	at(5*time.Second, o)
	if n := ring.Pushed(); n != 2 {
		t.Fatalf("%d records after the refresh period, want 2", n)
	}
	o.flags = encap.TCPFlagFIN
	at(5*time.Second+time.Millisecond, o)
	if n := ring.Pushed(); n != 3 {
		t.Fatalf("%d records after a FIN, want 3", n)
	}
}

// The sync path (a new flow queued, a miss asking the table) allocates nothing.
func TestEngineSyncAllocs(t *testing.T) {
	e := newEngine(t)
	node := syncNode(t)
	ring := node.Ring()
	table := connsync.NewTable(1024, sched.Timeouts{})
	e.SetSync(ring, table, time.Minute, true)
	s := mustSnapshot(t, nil, rrSpec(t, 3))
	f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80}))
	batch := []Frame{f}
	port := uint16(1)
	recs := make([]connsync.Record, 8)
	allocs := testing.AllocsPerRun(200, func() {
		port++
		binary.BigEndian.PutUint16(f.Buf[headroom+14+20:], port) // a new flow each run
		batch[0] = f
		e.Process(s, batch, int64(port))
		ring.Pop(recs)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per new synced flow, want 0", allocs)
	}
	if ring.Pushed() < 200 {
		t.Fatalf("%d records queued, want one per flow", ring.Pushed())
	}
}

// BenchmarkEngineNewFlowSync is the data path's cost of connection sync: batches of 64
// packets of flows the table does not hold (each is scheduled, recorded and, with sync,
// queued on the worker's ring, which the loop drains as the Node's sender would), sync off
// and on, per packet. ACK packets: a mid-flow packet makes an established entry at once,
// the state whose record is sent.
func BenchmarkEngineNewFlowSync(b *testing.B) {
	for _, mode := range []string{"off", "out", "out+in"} {
		// out+in: the peers' table holds entries (none of these flows), so every miss
		// looks it up; an empty table is skipped at the cost of one load.
		b.Run("sync="+mode, func(b *testing.B) {
			tmpl := craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80, payload: 6})
			e, err := NewEngine(0, 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			node := syncNode(b)
			ring := node.Ring()
			switch mode {
			case "out":
				e.SetSync(ring, nil, time.Minute, true)
			case "out+in":
				e.SetSync(ring, node.Table(), time.Minute, true)
				for i := range 1 << 16 {
					r := connsync.Record{Key: sched.Key{Src: [16]byte{10, byte(i >> 8), byte(i)}, Proto: 6}}
					node.Table().Put(&r)
				}
			}
			s := benchSnapshot(b, MethodDR, vip4)
			fb := newFlowBatch(tmpl, 1<<22, false) // far more flows than the table holds: every packet is new
			recs := make([]connsync.Record, maxBatch)
			for range 2000 { // fill the connection table; fault the peer table's pages in
				fb.prep()
				e.Process(s, fb.frames, 1)
				ring.Pop(recs)
			}
			b.ReportAllocs()
			for b.Loop() {
				fb.prep()
				e.Process(s, fb.frames, 2)
				ring.Pop(recs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*maxBatch), "ns/pkt")
			if mode != "off" && ring.Pushed() < uint64(b.N*maxBatch)*9/10+2000*maxBatch {
				b.Fatalf("%d records for %d new flows", ring.Pushed(), b.N*maxBatch)
			}
		})
	}
}

// A nat service's records carry the backend's port; the peer matches address and port.
func TestEngineSyncNATPort(t *testing.T) {
	sp := rrSpec(t, 3)
	sp.Method = MethodNAT
	for i := range sp.Targets {
		sp.Targets[i].Addr = backendAddr(false, 0) // one address, three ports
		sp.Targets[i].Port = uint16(8080 + i)
	}
	s := mustSnapshot(t, nil, sp)
	sender := newEngine(t)
	ring := syncNode(t).Ring()
	sender.SetSync(ring, nil, time.Minute, true)
	ports := map[uint16]uint16{}
	for port := uint16(3000); port < 3030; port++ {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80}))
		run(sender, s, &f)
		ports[port] = binary.BigEndian.Uint16(f.packet()[14+20+2:])
	}
	recs := make([]connsync.Record, 64)
	n := ring.Pop(recs)
	table := connsync.NewTable(1024, sched.Timeouts{})
	for i := range recs[:n] {
		if recs[i].BackendPort != ports[recs[i].Key.SrcPort] {
			t.Fatalf("record %+v: the flow went to port %d", recs[i], ports[recs[i].Key.SrcPort])
		}
		table.Put(&recs[i])
	}
	peer, _ := NewEngine(1, 1<<12)
	peer.SetSync(nil, table, time.Minute, true)
	for port, want := range ports {
		f := frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: port, dport: 80}))
		run(peer, s, &f)
		if got := binary.BigEndian.Uint16(f.packet()[14+20+2:]); got != want {
			t.Errorf("flow %d: peer sent it to port %d, want %d", port, got, want)
		}
	}
}

// TestEngineSyncBatch: in a batch of many packets, each packet whose flow the core notes for
// sync gets its own record, with its own key and backend (the core's note is about the
// packet it last scheduled, so the engine must read it before scheduling the next one).
func TestEngineSyncBatch(t *testing.T) {
	e := newEngine(t)
	ring := syncNode(t).Ring()
	e.SetSync(ring, nil, time.Minute, true)
	s := mustSnapshot(t, nil, rrSpec(t, 3))
	const n = 40
	frames := make([]Frame, n)
	for i := range frames {
		// Mid-flow packets: each an established flow new to this host, noted for sync.
		frames[i] = frameOf(craft(t, pktOpts{src: client4, dst: vip4, sport: uint16(3000 + i), dport: 80}))
	}
	e.Process(s, frames, int64(time.Second))
	if got := ring.Pushed(); got != n {
		t.Fatalf("%d sync records for a batch of %d new established flows, want %d", got, n, n)
	}
	recs := make([]connsync.Record, n)
	if got := ring.Pop(recs); got != n {
		t.Fatalf("popped %d records", got)
	}
	sv := &s.services[0]
	for i, r := range recs {
		if r.Kind != connsync.KindConn || r.Key.SrcPort != uint16(3000+i) {
			t.Fatalf("record %d: kind %v, source port %d; want a connection of port %d", i, r.Kind, r.Key.SrcPort, 3000+i)
		}
		b := backendOf(t, &frames[i])
		if want := sv.targets[b].addr; r.Backend != want {
			t.Fatalf("record %d (port %d): backend %v, but the packet went to %v", i, r.Key.SrcPort, r.Backend, want)
		}
	}
}
