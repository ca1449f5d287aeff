package xsk

import (
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/internal/xdpbase"
	"golang.org/x/sys/unix"
)

// Placement of the veth benchmarks (2 CPUs): the generator's thread is pinned
// to placement.gen; veth runs the receiving side's XDP program in the
// sender's softirq, so xa's XDP (redirect and copy into the UMEM, or the
// baseline program) runs on that CPU too. The loop under test is pinned to
// placement.dut, and so is the copy-mode transmit it triggers (sendto runs
// the driver in the caller's context), including xb's XDP_DROP of the
// returned frames. "split" puts them on two CPUs, "same" on one.
type placement struct {
	name     string
	gen, dut int
}

var placements = []placement{{"split", 0, 1}, {"same", 0, 0}}

const (
	flows  = 1024
	batchN = 64
)

// pin locks the goroutine to its thread for good (the thread is dropped when
// the goroutine ends), moves the thread into ns and onto cpu, and gives the
// thread nice -10: the machine is shared, and at nice 0 the other tenants'
// processes decide the figures (the runs are short).
func pin(tb testing.TB, ns netns.NsHandle, cpu int) {
	runtime.LockOSThread()
	if err := netns.Set(ns); err != nil {
		tb.Errorf("enter netns: %v", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		tb.Errorf("pin to cpu %d: %v", cpu, err)
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -10); err != nil {
		tb.Errorf("nice -10: %v", err)
	}
}

// generator sends 60-byte UDP frames of 1024 flows from xb to xa through its
// own AF_XDP socket (copy mode) as fast as it can, until stop.
type generator struct {
	stop atomic.Bool
	sent atomic.Uint64
	cpu  atomic.Int64 // ns of CPU its thread used (user + system, softirqs it ran included)
	wg   sync.WaitGroup
}

func threadCPU() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func startGenerator(b *testing.B, ns netns.NsHandle, cpu int, xa, xb netlink.Link) *generator {
	g := new(generator)
	ready := make(chan error, 1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		pin(b, ns, cpu)
		u, err := NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: 4096})
		if err != nil {
			ready <- err
			return
		}
		defer u.Close()
		s, err := Open(u, Config{Ifindex: xb.Attrs().Index, TxBudget: 64, RxSize: 64, FillSize: 64})
		if err != nil {
			ready <- err
			return
		}
		defer s.Close()
		for i := range u.FrameCount() {
			addr := uint64(i) * uint64(u.FrameSize())
			f := udpFrame(b, xb.Attrs().HardwareAddr, xa.Attrs().HardwareAddr,
				"198.18.0.2", "198.18.0.1", uint16(10000+i%flows), 9000, make([]byte, 18))
			copy(u.Frame(addr), f)
		}
		ready <- nil
		var descs [batchN]Desc
		for i := 0; !g.stop.Load(); i++ {
			if i&63 == 0 {
				g.cpu.Store(threadCPU())
			}
			s.Complete()
			n := 0
			for ; n < batchN; n++ {
				a, ok := u.Alloc()
				if !ok {
					break
				}
				descs[n] = Desc{Addr: a, Len: 60}
			}
			sent := s.Transmit(descs[:n])
			for _, d := range descs[sent:n] {
				u.Free(d.Addr)
			}
			if sent == 0 {
				s.Kick()
			}
			g.sent.Add(uint64(sent))
		}
		for deadline := time.Now().Add(time.Second); s.InFlight() > 0 && time.Now().Before(deadline); {
			s.Kick()
			s.Complete()
		}
	}()
	if err := <-ready; err != nil {
		b.Fatalf("start generator: %v", err)
	}
	return g
}

func (g *generator) halt() {
	g.stop.Store(true)
	g.wg.Wait()
}

// report adds the packet rate of n packets over the timed part, and the CPU
// time per packet of the generator's thread (its sends and, in its softirq,
// the receiving side's XDP work) and of the loop under test (0 for the
// in-kernel baselines).
func report(b *testing.B, n, offered uint64, genCPU, dutCPU int64) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(genCPU)/float64(max(offered, 1)), "gen-cpu-ns/pkt")
	b.ReportMetric(float64(dutCPU)/float64(max(n, 1)), "dut-cpu-ns/pkt")
	if n == 0 || sec == 0 {
		b.Fatalf("no packets in %v", b.Elapsed())
	}
	b.ReportMetric(float64(n)/sec/1e6, "Mpps")
	b.ReportMetric(sec*1e9/float64(n), "wall-ns/pkt")
	b.ReportMetric(float64(offered)/sec/1e6, "offered-Mpps")
	var load [3]float64
	if si := new(unix.Sysinfo_t); unix.Sysinfo(si) == nil {
		load[0] = float64(si.Loads[0]) / 65536
	}
	b.ReportMetric(load[0], "loadavg")
}

// BenchmarkVeth measures, in one run, a veth pair driven by an AF_XDP
// generator: the in-kernel baselines (XDP_DROP, and XDP_TX after a MAC swap)
// and the same two jobs done in Go on this package's rings (rxdrop, l2fwd)
// behind the xlb steering program. Run with -count to interleave them.
func BenchmarkVeth(b *testing.B) {
	// Two busy loops locked to their threads each hold a P: give the rest
	// of the program (the benchmark harness, the GC) Ps of its own, or the
	// generator waits for a P instead of running.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	// With sched_autogroup, CPU time is shared between sessions and a
	// thread's nice value only counts inside its own: put the benchmark in
	// a session of its own (it ends with the process) at autogroup nice -10.
	if _, err := unix.Setsid(); err == nil {
		if err := os.WriteFile("/proc/self/autogroup", []byte("-10"), 0); err != nil {
			b.Logf("autogroup nice: %v", err)
		}
	}
	links := vethNS(b, [2]string{"xa", "xb"})
	xa, xb := links["xa"], links["xb"]
	ns, err := netns.Get()
	if err != nil {
		b.Fatalf("netns: %v", err)
	}
	defer ns.Close()
	// xb drops what comes back (and veth needs an XDP program on the peer
	// for XDP_TX).
	sink, err := xdpbase.Attach(xb.Attrs().Index, xdpbase.Drop)
	if err != nil {
		b.Fatalf("attach drop on xb: %v", err)
	}
	defer sink.Close()

	for _, pl := range placements {
		benchPlacement(b, pl, ns, xa, xb)
	}
}

func benchPlacement(b *testing.B, pl placement, ns netns.NsHandle, xa, xb netlink.Link) {
	for _, name := range []string{xdpbase.Drop, xdpbase.Swap} {
		b.Run(pl.name+"/kernel-"+name, func(b *testing.B) {
			pin(b, ns, pl.dut)
			prog, err := xdpbase.Attach(xa.Attrs().Index, name)
			if err != nil {
				b.Fatalf("attach %s: %v", name, err)
			}
			defer prog.Close()
			g := startGenerator(b, ns, pl.gen, xa, xb)
			defer g.halt()
			time.Sleep(20 * time.Millisecond)
			b.ReportAllocs()
			before, _ := prog.Packets()
			sent, gcpu := g.sent.Load(), g.cpu.Load()
			b.ResetTimer()
			for b.Loop() {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			after, err := prog.Packets()
			if err != nil {
				b.Fatal(err)
			}
			report(b, after-before, g.sent.Load()-sent, g.cpu.Load()-gcpu, 0)
		})
	}
	for _, v := range []struct {
		fwd, poll bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		name := "xsk-rxdrop"
		if v.fwd {
			name = "xsk-l2fwd"
		}
		if v.poll {
			name += "-poll"
		}
		fwd := v.fwd
		b.Run(pl.name+"/"+name, func(b *testing.B) {
			pin(b, ns, pl.dut)
			// Rings of 8192 absorb the gaps when the loop's thread is
			// not scheduled (the machine is shared).
			u, err := NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: 16384})
			if err != nil {
				b.Fatal(err)
			}
			defer u.Close()
			s, err := Open(u, Config{Ifindex: xa.Attrs().Index, TxBudget: 64, RxSize: 8192, FillSize: 8192})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			prog, err := xdpprog.Attach(xa.Attrs().Index, xdpprog.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer prog.Close()
			if err := prog.AddService(xdpprog.Key{Addr: netip.MustParseAddr("198.18.0.1"), Port: 9000, Proto: unix.IPPROTO_UDP}); err != nil {
				b.Fatal(err)
			}
			if err := prog.RegisterSocket(0, s.FD()); err != nil {
				b.Fatal(err)
			}
			s.Fill(-1)
			g := startGenerator(b, ns, pl.gen, xa, xb)
			defer g.halt()
			var descs [batchN]Desc
			var pkts uint64
			amac, bmac := xa.Attrs().HardwareAddr, xb.Attrs().HardwareAddr
			idle := 0
			step := func() {
				n := s.Receive(descs[:])
				pkts += uint64(n)
				if n == 0 && v.poll {
					// Sleep in poll(2) after a few empty rounds,
					// leaving the CPU to the rest of the machine.
					if idle++; idle >= 8 {
						s.Kick()
						s.Poll(time.Millisecond)
						idle = 0
					}
				}
				if fwd {
					for _, d := range descs[:n] {
						f := u.Frame(d.Addr)[u.Offset(d.Addr):]
						copy(f[0:6], bmac)
						copy(f[6:12], amac)
					}
					sent := s.Transmit(descs[:n])
					for _, d := range descs[sent:n] {
						u.Free(d.Addr)
					}
					s.Complete()
				} else {
					for _, d := range descs[:n] {
						u.Free(d.Addr)
					}
				}
				s.Fill(-1)
			}
			for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
				step()
			}
			st0, _ := s.Stats()
			pkts = 0
			sent, gcpu, dcpu := g.sent.Load(), g.cpu.Load(), threadCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.StopTimer()
			offered := g.sent.Load() - sent
			st1, _ := s.Stats()
			report(b, pkts, offered, g.cpu.Load()-gcpu, threadCPU()-dcpu)
			b.ReportMetric(float64(st1.RxRingFull-st0.RxRingFull+st1.FillRingEmpty-st0.FillRingEmpty)/float64(max(offered, 1))*100, "%rx-lost")
			b.Logf("zero copy %v, xdp %v, tx budget %d; kernel stats %+v; %+v",
				s.ZeroCopyOn(), prog.Mode(), s.TxBudget(), st1, s.Counters())
			if err := prog.UnregisterSocket(0); err != nil {
				b.Fatal(err)
			}
		})
	}
}
