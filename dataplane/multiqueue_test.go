package dataplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/dataplane/internal/xsk"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

// One worker per queue: on a veth with two queues, New finds both (queue count auto), each
// worker gets its queue's frames (a sender's queue q lands on the peer's queue q) and
// forwards them, pinned to the CPUs the config lists.
func TestE2EMultiQueue(t *testing.T) {
	ns, xa, xb := vethPair(t, 2)
	cfg := Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 12,
		Interfaces: []InterfaceConfig{{Name: "xa", Cores: []int{1, 0}}}}
	dp := newIn(t, ns, cfg)
	if q := dp.Interfaces()[0].Queues; q != 2 {
		t.Fatalf("%d queues found, want 2", q)
	}
	s := udpSnapshot(t, xa, xb)
	publishAndStart(t, dp, s)

	const perQueue = 500
	for q := range 2 {
		if err := ns.Do(func() error { return sendOn(t, xa, xb, q, perQueue) }); err != nil {
			t.Fatalf("send on queue %d: %v", q, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := dp.Stats()
		done := len(st) == 2
		for _, ws := range st {
			done = done && ws.TxPackets == perQueue
		}
		if done {
			if st[0].CPU != 1 || st[1].CPU != 0 {
				t.Errorf("workers on cpus %d and %d, config says 1 and 0", st[0].CPU, st[1].CPU)
			}
			break
		}
		if time.Now().After(deadline) {
			for _, ws := range st {
				t.Logf("queue %d: %+v", ws.Queue, ws.Counters)
			}
			t.Fatalf("not every worker forwarded its queue's %d frames", perQueue)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if errs := dp.WorkerErrors(); len(errs) != 0 {
		t.Errorf("workers: %v", errs)
	}
}

// vethPair makes a namespace with a veth pair xa/xb of the given queue count, both up, and
// an XDP_DROP program on xb (what the LB sends back is counted and dropped there).
func vethPair(t *testing.T, queues int) (*lab.NS, netlink.Link, netlink.Link) {
	t.Helper()
	testnet.Skip(t)
	var id [3]byte
	_, _ = rand.Read(id[:])
	ns, err := lab.NewNS(hex.EncodeToString(id[:]), "veth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	xa, xb, err := ns.AddVeth("xa", "xb", 1500, queues)
	if err != nil {
		t.Fatal(err)
	}
	var sink *xdpprog.Baseline
	if err := ns.Do(func() (err error) {
		sink, err = xdpprog.AttachBaseline(xb.Attrs().Index, xdpprog.BaselineDrop)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return ns, xa, xb
}

// udpSnapshot is a dr service on the VIP's port 9000/udp whose backend is reached back out
// of xa, towards xb.
func udpSnapshot(t *testing.T, xa, xb netlink.Link) *Snapshot {
	t.Helper()
	bs := []sched.Backend{{ID: 1, Name: "b0", Weight: 1, Up: true}}
	sv, err := sched.NewService(sched.ServiceConfig{}, bs)
	if err != nil {
		t.Fatal(err)
	}
	hop := NextHop{IfIndex: xa.Attrs().Index, SrcMAC: [6]byte(xa.Attrs().HardwareAddr),
		DstMAC: [6]byte(xb.Attrs().HardwareAddr), MTU: 1500}
	return mustSnapshot(t, nil, ServiceSpec{Name: "udp", VIP: vip4, Port: 9000, Proto: encap.ProtoUDP,
		Method: MethodDR, Sched: sv, Targets: []Target{{Addr: backendAddr(false, 0), Hop: hop}}})
}

// The worker's whole batch path (rx ring, engine, tx ring, completions, fill ring) allocates
// nothing: the worker is driven by hand, without its goroutine, on frames already queued.
func TestWorkerStepAllocs(t *testing.T) {
	ns, xa, xb := vethPair(t, 1)
	cfg := Config{FrameCount: 2048, RingSize: 512, ConnTableSize: 1 << 12,
		Interfaces: []InterfaceConfig{{Name: "xa"}}}
	dp := newIn(t, ns, cfg)
	if err := dp.Publish(udpSnapshot(t, xa, xb)); err != nil {
		t.Fatal(err)
	}
	w := dp.workers[0]
	if err := dp.ifaces[0].prog.RegisterSocket(0, w.socks[0].s.FD()); err != nil {
		t.Fatal(err)
	}
	const n = 400 // fits the 512-entry rings
	if err := ns.Do(func() error { return sendOn(t, xa, xb, 0, n) }); err != nil {
		t.Fatal(err)
	}
	w.step() // first batch: the engine prepares the snapshot's per-service state
	before := w.engine.c[cRxPackets]
	allocs := testing.AllocsPerRun(4, func() { w.step() })
	if moved := w.engine.c[cRxPackets] - before; moved < 4*maxBatch {
		t.Errorf("the measured steps moved only %d frames", moved)
	}
	for range 20 {
		w.step()
	}
	if allocs != 0 {
		t.Errorf("worker step allocates %.1f times per batch", allocs)
	}
	if c := w.stats(); c.TxPackets != n || c.RxPackets != n {
		t.Errorf("forwarded %d of %d frames (rx %d): %+v", c.TxPackets, n, c.RxPackets, c)
	}
	// The per-service and per-backend counts were published by the steps.
	fs := dp.FlowStats()
	var be uint64
	for _, b := range fs[0].Backends {
		be += b.Packets
	}
	if fs[0].Packets != n || be != n {
		t.Errorf("per-service packets %d, per-backend %d, want %d: %+v", fs[0].Packets, be, n, fs)
	}
}

// sendOn transmits n UDP frames to the VIP from xb's queue q (its own AF_XDP socket) and
// waits until the kernel has sent them. Call it inside the namespace.
func sendOn(t *testing.T, xa, xb netlink.Link, q, n int) error {
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 1024})
	if err != nil {
		return err
	}
	defer u.Close()
	s, err := xsk.Open(u, xsk.Config{Ifindex: xb.Attrs().Index, Queue: q, RxSize: 64, FillSize: 64})
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	descs := make([]xsk.Desc, 0, maxBatch)
	for sent := 0; sent < n; {
		s.Complete()
		descs = descs[:0]
		for i := 0; i < maxBatch && sent+len(descs) < n; i++ {
			a, ok := u.Alloc()
			if !ok {
				break
			}
			p := craft(t, pktOpts{src: client4, dst: vip4, sport: uint16(1000 + sent + i), dport: 9000,
				udp: true, payload: 18, srcMAC: [6]byte(xb.Attrs().HardwareAddr), dstMAC: [6]byte(xa.Attrs().HardwareAddr)})
			copy(u.Frame(a), p)
			descs = append(descs, xsk.Desc{Addr: a, Len: uint32(len(p))})
		}
		k := s.Transmit(descs)
		for _, d := range descs[k:] {
			u.Free(d.Addr)
		}
		sent += k
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for s.InFlight() > 0 && ctx.Err() == nil {
		s.Kick()
		s.Complete()
		time.Sleep(time.Millisecond)
	}
	return ctx.Err()
}
