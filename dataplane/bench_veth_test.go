package dataplane

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/dataplane/internal/xsk"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
	"golang.org/x/sys/unix"
)

// BenchmarkVethForward measures the whole data path (XDP steering, AF_XDP rings, worker,
// engine) forwarding a dr service on a veth pair, next to the in-kernel baselines in the same
// run: kernel-drop (XDP_DROP on the LB side: the offered load) and kernel-swap (MAC swap +
// XDP_TX: the in-kernel limit of one-armed forwarding). An AF_XDP generator on xb sends
// 60-byte UDP frames of 1024 flows to the VIP through xa; the LB on xa sends each back out
// of xa towards a backend MAC, and xb drops what comes back (XDP_DROP). Run with -count to
// interleave the variants.
func BenchmarkVethForward(b *testing.B) {
	testnet.Skip(b)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	if _, err := unix.Setsid(); err == nil { // a session of our own at autogroup nice -10
		_ = os.WriteFile("/proc/self/autogroup", []byte("-10"), 0)
	}
	var id [3]byte
	_, _ = rand.Read(id[:])
	ns, err := lab.NewNS(hex.EncodeToString(id[:]), "dpbench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	xa, xb, err := ns.AddVeth("xa", "xb", 1500, 1)
	if err != nil {
		b.Fatal(err)
	}
	var sink *xdpprog.Baseline
	if err := ns.Do(func() (err error) {
		sink, err = xdpprog.AttachBaseline(xb.Attrs().Index, xdpprog.BaselineDrop)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	for _, pl := range []struct {
		name     string
		gen, dut int
	}{{"split", 0, 1}, {"same", 0, 0}} {
		for _, v := range []string{"kernel-drop", "kernel-swap", "xlb-dr"} {
			b.Run(pl.name+"/"+v, func(b *testing.B) {
				g := &vethGen{ns: ns, cpu: pl.gen, xa: xa, xb: xb}
				var count func() uint64
				if v == "xlb-dr" {
					dp := benchDataplane(b, ns, xa, xb, pl.dut)
					count = func() uint64 { return dp.Total().TxPackets }
				} else {
					name := xdpprog.BaselineDrop
					if v == "kernel-swap" {
						name = xdpprog.BaselineSwap
					}
					var prog *xdpprog.Baseline
					if err := ns.Do(func() (err error) {
						prog, err = xdpprog.AttachBaseline(xa.Attrs().Index, name)
						return err
					}); err != nil {
						b.Fatal(err)
					}
					defer prog.Close()
					count = func() uint64 { n, _ := prog.Packets(); return n }
				}
				g.start(b)
				defer g.halt()
				time.Sleep(20 * time.Millisecond)
				before, sent := count(), g.sent.Load()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					time.Sleep(100 * time.Microsecond)
				}
				b.StopTimer()
				n, offered := count()-before, g.sent.Load()-sent
				sec := b.Elapsed().Seconds()
				if n == 0 || sec == 0 {
					b.Fatalf("no packets forwarded in %v", b.Elapsed())
				}
				b.ReportMetric(float64(n)/sec/1e6, "Mpps")
				b.ReportMetric(float64(offered)/sec/1e6, "offered-Mpps")
			})
		}
	}
}

// benchDataplane runs the data path on xa with a udp dr service whose three backends are
// reached back out of xa (towards xb), its worker pinned to cpu.
func benchDataplane(b *testing.B, ns *lab.NS, xa, xb netlink.Link, cpu int) *Dataplane {
	cfg := Config{FrameCount: 16384, RingSize: 4096, ConnTableSize: 1 << 16,
		Interfaces: []InterfaceConfig{{Name: "xa", Cores: []int{cpu}}}}
	dp := newIn(b, ns, cfg)
	var bs []sched.Backend
	var ts []Target
	for i := range 3 {
		bs = append(bs, sched.Backend{ID: uint32(i + 1), Name: backendAddr(false, i).String(), Weight: 1, Up: true})
		ts = append(ts, Target{Addr: backendAddr(false, i), Hop: NextHop{IfIndex: xa.Attrs().Index,
			SrcMAC: [6]byte(xa.Attrs().HardwareAddr), DstMAC: [6]byte(xb.Attrs().HardwareAddr), MTU: 1500}})
	}
	sv, err := sched.NewService(sched.ServiceConfig{Strategy: sched.Maglev}, bs)
	if err != nil {
		b.Fatal(err)
	}
	s := mustSnapshot(b, nil, ServiceSpec{Name: "udp", VIP: vip4, Port: 9000, Proto: encap.ProtoUDP,
		Method: MethodDR, Sched: sv, Targets: ts})
	if err := dp.Publish(s); err != nil {
		b.Fatal(err)
	}
	if err := dp.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	return dp
}

// vethGen sends prebuilt UDP frames of 1024 flows to the VIP from xb through its own AF_XDP
// socket (copy mode), as fast as it can, on a thread pinned to cpu.
type vethGen struct {
	ns     *lab.NS
	cpu    int
	xa, xb netlink.Link
	stop   atomic.Bool
	sent   atomic.Uint64
	wg     sync.WaitGroup
}

func (g *vethGen) start(b *testing.B) {
	ready := make(chan error, 1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		runtime.LockOSThread() // for good: the thread ends with the goroutine
		if err := netns.Set(g.ns.NsHandle()); err != nil {
			ready <- err
			return
		}
		var set unix.CPUSet
		set.Set(g.cpu)
		_ = unix.SchedSetaffinity(0, &set)
		u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 4096})
		if err != nil {
			ready <- err
			return
		}
		defer u.Close()
		s, err := xsk.Open(u, xsk.Config{Ifindex: g.xb.Attrs().Index, TxBudget: 64, RxSize: 64, FillSize: 64})
		if err != nil {
			ready <- err
			return
		}
		defer s.Close()
		var frameLen uint32
		for i := range u.FrameCount() {
			p := craft(b, pktOpts{src: client4, dst: vip4, sport: uint16(10000 + i%1024), dport: 9000, udp: true,
				payload: 18, srcMAC: [6]byte(g.xb.Attrs().HardwareAddr), dstMAC: [6]byte(g.xa.Attrs().HardwareAddr)})
			copy(u.Frame(uint64(i*u.FrameSize())), p)
			frameLen = uint32(len(p))
		}
		ready <- nil
		var descs [maxBatch]xsk.Desc
		for !g.stop.Load() {
			s.Complete()
			n := 0
			for ; n < maxBatch; n++ {
				a, ok := u.Alloc()
				if !ok {
					break
				}
				descs[n] = xsk.Desc{Addr: a, Len: frameLen}
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
		b.Fatalf("generator: %v", err)
	}
}

func (g *vethGen) halt() {
	g.stop.Store(true)
	g.wg.Wait()
}
