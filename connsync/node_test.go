package connsync

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

// receiver is a node with what its receive loop hands apply (the sealer of testKey, a
// replay guard and the record buffer), for tests that feed it messages.
type receiver struct {
	*Node
	s    *Sealer
	g    replayGuard
	recs []Record
}

func newReceiver(t testing.TB, cfg Config) *receiver {
	t.Helper()
	s, err := NewSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return &receiver{Node: newNode(t, cfg), s: s, recs: make([]Record, MaxRecords)}
}

// feed hands msg to apply as received at now and returns its verdict (-1: accepted).
func (r *receiver) feed(msg []byte, now time.Time) int {
	return r.apply(r.s, &r.g, msg, r.recs, now)
}

func newNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = testKey
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// seal returns a message of recs from sender at seq, sent at sent, under key.
func seal(t testing.TB, key []byte, sender, seq uint64, sent time.Time, recs ...Record) []byte {
	t.Helper()
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	h := Header{Sender: sender, Seq: seq, Sent: sent.UnixNano(), Oldest: sent.UnixNano()}
	return s.Seal(make([]byte, Size(len(recs))), &h, recs)
}

func backendOf(t *testing.T, tab *Table, k sched.Key) byte {
	t.Helper()
	var r Record
	if !tab.Lookup(&k, &r) {
		return 0
	}
	return r.Backend[3]
}

// Forged, replayed, stale, oversized and malformed messages change nothing; each is
// counted by its reason.
func TestApplyRefuses(t *testing.T) {
	n := newReceiver(t, Config{})
	now := time.Now()
	r := testRecord(1)
	r.Backend[3] = 11
	if d := n.feed(seal(t, testKey, 5, 1, now, r), now); d != -1 {
		t.Fatalf("a good message dropped: %s", DropName(d))
	}
	r2 := r
	r2.Backend[3] = 12
	if d := n.feed(seal(t, testKey, 5, 2, now, r2), now); d != -1 {
		t.Fatalf("a good message dropped: %s", DropName(d))
	}
	if got := backendOf(t, n.Table(), r.Key); got != 12 {
		t.Fatalf("flow on backend .%d, want .12", got)
	}
	before := n.Stats()
	bad := r
	bad.Backend[3] = 66
	badRec := seal(t, testKey, 5, 3, now, bad)
	badRec[HeaderSize+60] = 1 // a malformed record (padding), re-signed
	badRec = n.s.resign(badRec)
	oversized := make([]Record, 30)
	for i := range oversized {
		oversized[i] = bad
	}
	cases := []struct {
		name string
		msg  []byte
		want int
	}{
		{"replayed", seal(t, testKey, 5, 1, now, r), DropReplay},
		{"forged", seal(t, []byte("not the key, but 32 bytes long!!"), 5, 9, now, bad), DropAuth},
		{"tampered", func() []byte { b := seal(t, testKey, 5, 10, now, r2); b[HeaderSize+43] = 66; return b }(), DropAuth},
		{"stale", seal(t, testKey, 5, 11, now.Add(-time.Hour), bad), DropStale},
		{"future", seal(t, testKey, 5, 12, now.Add(time.Hour), bad), DropStale},
		{"malformed record", badRec, DropRecord},
		{"oversized", seal(t, testKey, 5, 13, now, oversized...), DropOversized},
		{"short", []byte("XLBS"), DropShort},
		{"not sync", make([]byte, 100), DropMagic},
	}
	for _, c := range cases {
		if d := n.feed(c.msg, now); d != c.want {
			t.Errorf("%s: dropped as %s, want %s", c.name, DropName(d), DropName(c.want))
		}
	}
	after := n.Stats()
	if after.Applied != before.Applied || after.Table != before.Table {
		t.Errorf("refused messages changed the table: %+v -> %+v", before.Table, after.Table)
	}
	if got := backendOf(t, n.Table(), r.Key); got != 12 {
		t.Errorf("after the refused messages the flow is on .%d, want .12", got)
	}
	for _, c := range cases {
		if after.Dropped[c.want] == 0 {
			t.Errorf("drop reason %s not counted", DropName(c.want))
		}
	}
	// A replay of the newer message is refused too, and a later message still applies.
	if d := n.feed(seal(t, testKey, 5, 2, now, r), now); d != DropReplay {
		t.Errorf("replay of seq 2: %s", DropName(d))
	}
	if d := n.feed(seal(t, testKey, 5, 14, now, r), now); d != -1 || n.Stats().Lost != 11 {
		t.Errorf("seq 14 after 2: drop %s, lost %d (want applied, 11)", DropName(d), n.Stats().Lost)
	}
}

// The table holds at most its capacity, whatever the flood (connections, templates and
// removals mixed): its memory is allocated once, and a full bucket evicts its oldest entry.
func TestTableFloodMemoryFlat(t *testing.T) {
	const capacity = 1 << 14
	n := newReceiver(t, Config{Capacity: capacity})
	batch := make([]Record, 21)
	seq := uint64(0)
	flood := func(flows int) {
		now := time.Now()
		for i := 0; i < flows; i += len(batch) {
			for j := range batch {
				batch[j] = testRecord(0)
				batch[j].Key.Src = v4(198, 18, byte(seq>>8), byte(seq))
				batch[j].Key.SrcPort = uint16(i + j)
				switch j % 7 {
				case 3: // a client's template
					batch[j].Kind, batch[j].State, batch[j].Key.SrcPort = KindTemplate, 0, 0
					batch[j].Key.Src = v4(byte(100+j), 18, byte(seq>>8), byte(seq))
				case 6: // the previous connection removed
					batch[j] = batch[j-1]
					batch[j].Kind = KindRemove
				}
			}
			seq++
			if d := n.feed(seal(t, testKey, 1, seq, now, batch...), now); d != -1 {
				t.Fatalf("dropped: %s", DropName(d))
			}
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	flood(2 * capacity)
	h0 := heap()
	flood(20 * capacity)
	h1 := heap()
	st := n.Stats()
	t.Logf("heap %d -> %d bytes after %d more flows; table %+v", h0, h1, 20*capacity, st.Table)
	if h1 > h0+1<<20 {
		t.Errorf("heap grew %d bytes under the flood", h1-h0)
	}
	if st.Table.Entries > capacity || st.Table.Evictions == 0 || st.Table.Templates == 0 || st.Table.Removed == 0 {
		t.Errorf("table %+v: want at most %d entries, evictions, templates and removals", st.Table, capacity)
	}
	// The newest entries are there, the removed one is not.
	var r Record
	k, tk, gone := batch[len(batch)-3].Key, batch[len(batch)-4].Key, batch[len(batch)-1].Key // 18, 17, 20 (19 removed)
	if !n.Table().Lookup(&k, &r) || !n.Table().LookupTemplate(&tk, time.Minute, &r) {
		t.Error("the newest flow or template was evicted")
	}
	if n.Table().Lookup(&gone, &r) {
		t.Error("a removed flow is still there")
	}
}

// Two nodes in two namespaces: records pushed on one reach the other's table over UDP.
func TestNodeOverUDP(t *testing.T) {
	tn := testnet.New(t, lab.Config{LBs: 2, Backends: 1, NoHTTP: true, DisableIPv6: true})
	a0, a1 := tn.LBs[0].Addr(), tn.LBs[1].Addr()
	na := newNode(t, Config{Listen: netip.AddrPortFrom(a0, DefaultPort), Peers: []netip.AddrPort{netip.AddrPortFrom(a1, DefaultPort)}})
	nb := newNode(t, Config{Listen: netip.AddrPortFrom(a1, DefaultPort), Peers: []netip.AddrPort{netip.AddrPortFrom(a0, DefaultPort)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for i, n := range []*Node{na, nb} {
		var pc *net.UDPConn
		if err := tn.LBs[i].Do(func() (err error) { pc, err = n.Listen(); return err }); err != nil {
			t.Fatal(err)
		}
		go func() { n.Serve(ctx, pc); done <- struct{}{} }()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })
	q := na.Ring()
	const flows = 1000
	for i := range flows {
		r := testRecord(i)
		for !q.Push(&r) {
			time.Sleep(time.Millisecond) // the sender drains every 10ms
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for nb.Stats().Applied < flows && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sa, sb := na.Stats(), nb.Stats()
	t.Logf("sender %d messages, %d records, %d bytes; receiver applied %d, lag %v (max %v)",
		sa.SentMessages, sa.SentRecords, sa.SentBytes, sb.Applied, sb.LagLast, sb.LagMax)
	if sb.Applied != flows || sa.SentRecords != flows || sb.Lost != 0 {
		t.Fatalf("sent %d, applied %d, lost %d; want %d, %d, 0", sa.SentRecords, sb.Applied, sb.Lost, flows, flows)
	}
	for i := range flows {
		want := testRecord(i)
		var r Record
		if !nb.Table().Lookup(&want.Key, &r) || r != want {
			t.Fatalf("flow %d: %+v, want %+v", i, r, want)
		}
	}
	if sa.Applied != 0 || sb.SentRecords != 0 {
		t.Errorf("the idle side sent or the sender applied: %+v %+v", sa, sb)
	}
}

// Two nodes in two namespaces on one bridge, peers through a multicast group only.
func TestNodeMulticast(t *testing.T) {
	tn := testnet.New(t, lab.Config{LBs: 2, Backends: 1, NoHTTP: true, DisableIPv6: true})
	group := netip.MustParseAddr("239.255.0.42")
	nodes := make([]*Node, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for i := range nodes {
		nodes[i] = newNode(t, Config{Listen: netip.AddrPortFrom(tn.LBs[i].Addr(), DefaultPort), Group: group, Interface: "eth0"})
		var pc *net.UDPConn
		if err := tn.LBs[i].Do(func() (err error) { pc, err = nodes[i].Listen(); return err }); err != nil {
			t.Fatal(err)
		}
		go func() { nodes[i].Serve(ctx, pc); done <- struct{}{} }()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })
	q := nodes[0].Ring()
	const flows = 100
	for i := range flows {
		r := testRecord(i)
		q.Push(&r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for nodes[1].Stats().Applied < flows && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	a, b := nodes[0].Stats(), nodes[1].Stats()
	if b.Applied != flows || a.Applied != 0 {
		t.Fatalf("over multicast: receiver applied %d (want %d), sender applied %d (want 0); peers %v", b.Applied, flows, a.Applied, a.Peers)
	}
	var r Record
	if want := testRecord(7); !nodes[1].Table().Lookup(&want.Key, &r) || r != want {
		t.Fatalf("flow 7: %+v", r)
	}
}
