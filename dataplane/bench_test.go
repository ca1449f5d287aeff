package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/encap"
	"golang.org/x/sys/unix"
)

// flowBatch is a batch of in-memory frames whose packets are re-made from a template before
// every Process, each with the flow's source address and port written in.
type flowBatch struct {
	tmpl   []byte
	frames []Frame
	v6     bool
	flows  uint32
	next   uint32
}

func newFlowBatch(tmpl []byte, flows int, v6 bool) *flowBatch {
	b := &flowBatch{tmpl: tmpl, flows: uint32(flows), v6: v6, frames: make([]Frame, maxBatch)}
	for i := range b.frames {
		b.frames[i] = Frame{Buf: make([]byte, frameSize), In: ifLB}
	}
	return b
}

// prep lays out the next 64 flows: flow i of the sequence is (i * 40503) mod flows, a
// permutation when flows is a power of two, so consecutive packets hit unrelated table
// buckets as real traffic does.
func (b *flowBatch) prep() {
	for i := range b.frames {
		f := &b.frames[i]
		copy(f.Buf[headroom:], b.tmpl)
		f.Off, f.Len, f.Out = headroom, len(b.tmpl), 0
		id := (b.next * 40503) & (b.flows - 1)
		b.next++
		p := f.Buf[headroom:]
		if b.v6 {
			binary.BigEndian.PutUint32(p[14+8+12:], id) // low 32 bits of the source
		} else {
			binary.BigEndian.PutUint16(p[14+12+2:], uint16(id)) // 198.18.x.y
			binary.BigEndian.PutUint16(p[14+20:], 1024+uint16(id>>16))
		}
	}
}

func benchSnapshot(b testing.TB, m Method, vip netip.Addr) *Snapshot {
	sp := spec(b, "web", 0, vip, 80, m, 3)
	if m == MethodNAT {
		for i := range sp.Targets {
			sp.Targets[i].Port = 8080
		}
	}
	return mustSnapshot(b, nil, sp)
}

func BenchmarkProcess(b *testing.B) {
	for _, c := range []struct {
		name string
		m    Method
		vip  netip.Addr
	}{
		{"dr", MethodDR, vip4},
		{"tunnel", MethodTunnel, vip4},
		{"nat", MethodNAT, vip4},
		{"dr6", MethodDR, vip6},
	} {
		for _, flows := range []int{1 << 10, 1 << 16, 1 << 20} {
			b.Run(fmt.Sprintf("%s/flows=%dk", c.name, flows>>10), func(b *testing.B) {
				benchProcess(b, c.m, c.vip, flows)
			})
		}
	}
}

// benchProcess runs batches of 64 packets of flows live flows (every one in the connection
// table: the hit path) through an engine, and reports the time per packet and how much of
// the process's memory sits on huge pages.
func benchProcess(b *testing.B, m Method, vip netip.Addr, flows int) {
	src := client4
	if vip.Is6() {
		src = client6
	}
	tmpl := craft(b, pktOpts{src: src, dst: vip, sport: 1024, dport: 80, payload: 6})
	s := benchSnapshot(b, m, vip)
	e, fb := warmEngine(b, s, tmpl, flows, vip.Is6())
	if c := e.Counters(); c.ConnEntries < uint64(flows)*9/10 {
		b.Fatalf("warm-up: %d entries", c.ConnEntries)
	}
	timeBatches(b, e, s, fb, nil)
	b.ReportMetric(float64(anonHugePages())/(1<<20), "hugepage-MiB")
	runtime.KeepAlive(e)
}

// warmEngine returns an engine whose connection table (2*flows entries) has seen every
// flow of a batch made from tmpl once under s (the hit path from then on), and the batch.
// It fails the benchmark if the warm-up dropped a packet.
func warmEngine(b *testing.B, s *Snapshot, tmpl []byte, flows int, v6 bool) (*Engine, *flowBatch) {
	e, err := NewEngine(0, 2*flows)
	if err != nil {
		b.Fatal(err)
	}
	fb := newFlowBatch(tmpl, flows, v6)
	for range flows / maxBatch {
		fb.prep()
		e.Process(s, fb.frames, 1)
	}
	if c := e.Counters(); c.Dropped() != 0 {
		b.Fatalf("warm-up: %d dropped", c.Dropped())
	}
	return e, fb
}

// timeBatches runs b.N batches of fb through e under s, each followed by after (when not
// nil), and reports the wall and CPU time per packet.
func timeBatches(b *testing.B, e *Engine, s *Snapshot, fb *flowBatch, after func()) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUClock()
	for b.Loop() {
		fb.prep()
		e.Process(s, fb.frames, 2)
		if after != nil {
			after()
		}
	}
	cpu.report(b, b.N*maxBatch)
}

// anonHugePages returns the bytes of the process's anonymous memory on transparent huge
// pages (AnonHugePages in /proc/self/smaps_rollup), 0 when unknown.
func anonHugePages() int64 {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "AnonHugePages:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// cpuClock measures the CPU time of the benchmark's thread (RUSAGE_THREAD), which stays
// meaningful on a machine shared with other work where wall time does not: the benchmark
// reports both, per packet.
type cpuClock struct{ start int64 }

func threadCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func startCPUClock() cpuClock {
	runtime.LockOSThread()
	return cpuClock{start: threadCPU()}
}

func (c cpuClock) report(b *testing.B, packets int) {
	cpu := threadCPU() - c.start
	runtime.UnlockOSThread()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets), "ns/pkt")
	b.ReportMetric(float64(cpu)/float64(packets), "cpu-ns/pkt")
}

// BenchmarkPrep is the baseline the Process figures include: re-making 64 frames from the
// template.
func BenchmarkPrep(b *testing.B) {
	fb := newFlowBatch(craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80, payload: 6}), 1<<16, false)
	b.ReportAllocs()
	cpu := startCPUClock()
	for b.Loop() {
		fb.prep()
	}
	cpu.report(b, b.N*maxBatch)
}

// TestProcessAllocs: the batch loop allocates nothing, on every path: dr, tunnel, nat both
// ways, ICMP replies, new flows and drops.
func TestProcessAllocs(t *testing.T) {
	nat := spec(t, "nat", 1, netip.MustParseAddr("198.18.0.101"), 80, MethodNAT, 2)
	for i := range nat.Targets {
		nat.Targets[i].Addr = netip.AddrFrom4([4]byte{198, 18, 0, byte(50 + i)})
	}
	small := spec(t, "small", 3, vip4, 81, MethodDR, 1)
	small.Targets[0].Hop.MTU = 576
	s := mustSnapshot(t, []Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"),
		Hop: NextHop{IfIndex: ifLB, SrcMAC: macLB, DstMAC: macClient}}},
		spec(t, "dr", 0, vip4, 80, MethodDR, 3), nat, spec(t, "tun", 2, vip6, 80, MethodTunnel, 2), small)
	pkts := [][]byte{
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80}),
		craft(t, pktOpts{src: client4, dst: netip.MustParseAddr("198.18.0.101"), sport: 1, dport: 80}),
		craft(t, pktOpts{src: netip.MustParseAddr("198.18.0.50"), dst: client4, sport: 80, dport: 1}),
		craft(t, pktOpts{src: client6, dst: vip6, sport: 1, dport: 80, udp: false}),
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 81, payload: 1000}), // too big
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 99}),                // no service
		craft(t, pktOpts{src: client4, dst: vip4, sport: 1, dport: 80})[:30],           // truncated
	}
	e := newEngine(t)
	frames := make([]Frame, maxBatch)
	bufs := make([][]byte, maxBatch)
	for i := range frames {
		bufs[i] = make([]byte, frameSize)
	}
	port := uint16(0)
	prep := func() {
		for i := range frames {
			p := pkts[i%len(pkts)]
			copy(bufs[i][headroom:], p)
			frames[i] = Frame{Buf: bufs[i], Off: headroom, Len: len(p), In: ifLB}
			if i%len(pkts) == 0 && len(p) > 40 { // a new flow each time
				port++
				binary.BigEndian.PutUint16(bufs[i][headroom+34:], port)
			}
		}
	}
	prep()
	e.Process(s, frames, 1)
	if got := e.Counters(); got.ICMPReplies == 0 || got.NATReturns == 0 || got.Reasons[encap.Truncated] == 0 {
		t.Fatalf("the batch does not cover every path: %+v", got)
	}
	if fs := e.FlowStats(); fs[0].NewFlows == 0 || fs[0].Backends[0].Packets+fs[0].Backends[1].Packets+fs[0].Backends[2].Packets == 0 {
		t.Fatalf("the batch does not count per service and backend: %+v", fs[0])
	}
	allocs := testing.AllocsPerRun(100, func() {
		prep()
		e.Process(s, frames, 2)
	})
	if allocs != 0 {
		t.Fatalf("Process allocates %.1f times per batch", allocs)
	}
}

// BenchmarkProcessPublish is BenchmarkProcess dr plus what a worker does after every batch:
// publishing the engine's counters and the per-service and per-backend flow statistics for
// other goroutines (worker.publish, without the sockets' counters).
func BenchmarkProcessPublish(b *testing.B) {
	for _, flows := range []int{1 << 10, 1 << 16} {
		b.Run(fmt.Sprintf("dr/flows=%dk", flows>>10), func(b *testing.B) {
			tmpl := craft(b, pktOpts{src: client4, dst: vip4, sport: 1024, dport: 80, payload: 6})
			s := benchSnapshot(b, MethodDR, vip4)
			e, fb := warmEngine(b, s, tmpl, flows, false)
			var pub counters
			timeBatches(b, e, s, fb, func() {
				e.c.publish(&pub)
				e.fl.publish()
			})
			if fs := e.FlowStats(); fs[0].Packets == 0 {
				b.Fatal("nothing published")
			}
		})
	}
}
