package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/xdpbase"
)

// Variants: what runs on xa.
const (
	XLBDR     = "xlb-dr"      // xlb, direct routing (MAC rewrite)
	XLBTunnel = "xlb-tunnel"  // xlb, IPIP to the backend
	XLBDR1CPU = "xlb-dr-1cpu" // xlb dr with its worker on the generator's CPU: one CPU for everything
	XDPTX     = "xdp-tx"      // in-kernel XDP: MAC swap + XDP_TX, the limit of this machine
	XDPDrop   = "xdp-drop"    // in-kernel XDP_DROP on xa, counting: the generator's own rate
	NFTDNAT   = "nft-dnat"    // kernel forwarding, nftables DNAT with conntrack
	// IPVSDR and IPVSTunnel are Linux IPVS, where the kernel has ip_vs (see IPVS).
	IPVSDR     = "ipvs-dr"
	IPVSTunnel = "ipvs-tunnel"
	// AsavieL2Fwd is a Go AF_XDP l2fwd on github.com/asavie/xdp.
	AsavieL2Fwd = "asavie-l2fwd"
)

// Scenario groups.
const (
	GroupForward  = "forward"  // throughput of xlb dr/tunnel and the baselines, per size
	GroupFlows    = "flows"    // xlb dr at 64 bytes with 1k, 64k and 1M flows
	GroupNewFlows = "newflows" // every packet a new flow (TCP SYN)
	GroupOverload = "overload" // offered above capacity: drops counted, still forwarding after
	GroupLatency  = "latency"  // at a fixed rate, checking sink: latency and correctness
)

// Placements: where the device under test's receive work runs.
const (
	// PlacementSplit leaves xa's receive work where veth runs it, in the sender's softirq
	// on the generator's CPU; xlb's worker has a CPU of its own.
	PlacementSplit = "split"
	// PlacementCore moves xa's receive work (threaded NAPI with XDP, RPS without) to the
	// device under test's CPU: the generator has CPU GenCPU to itself and everything the
	// device under test does (xlb: XDP steering, copy, worker) runs on one core.
	PlacementCore = "dut-core"
)

// AllGroups lists every scenario group in report order.
var AllGroups = []string{GroupForward, GroupFlows, GroupNewFlows, GroupOverload, GroupLatency}

// Options configures Run.
type Options struct {
	Groups   []string      // scenario groups (default AllGroups)
	Duration time.Duration // measured time per run (default 1s)
	Warmup   time.Duration // traffic before measuring (default 150ms)
	Rounds   int           // interleaved rounds (default 3)
	Sizes    []int         // frame sizes of the forward group (default 64, 1500)
	Flows    int           // flows of the forward and latency groups (default 1024)
	// ScaleFlows are the flow counts of the flows group (default 1k, 64k, 1M).
	ScaleFlows []int
	// GenCPU runs the generator (and xa's receive work, which veth does in the sender's
	// softirq); WorkerCPU runs xlb's worker. Defaults: 0 and 1 (0 and 0 on one CPU).
	GenCPU, WorkerCPU int
	// GenCPUs, when set, runs one generator thread per CPU listed, each on a queue of its own
	// (the veth pair gets that many queues, xlb one worker per queue, all on WorkerCPU);
	// GenCPU is then GenCPUs[0].
	GenCPUs []int
	// Placement is PlacementSplit (default) or PlacementCore.
	Placement string
	// LatencyRate is the offered rate of the latency runs, packets/s (default 50000).
	LatencyRate float64
	// BusyPoll runs xlb's worker with dataplane.InterfaceConfig.BusyPoll: it spins when
	// idle instead of sleeping in poll(2).
	BusyPoll bool
	// Progress, when set, is told about each run before it starts.
	Progress func(done, total int, what string)

	// ipvs is set by Run when the kernel has IPVS and ipvsadm is installed (see IPVS): the
	// IPVS variants are measured then, and not listed otherwise.
	ipvs bool
}

// Quick returns options for a run of well under a minute.
func Quick() Options {
	return Options{Duration: 300 * time.Millisecond, Warmup: 80 * time.Millisecond, Rounds: 3}
}

func (o *Options) defaults() {
	if len(o.Groups) == 0 {
		o.Groups = AllGroups
	}
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = 150 * time.Millisecond
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{64, 1500}
	}
	if o.Flows <= 0 {
		o.Flows = 1024
	}
	if len(o.ScaleFlows) == 0 {
		o.ScaleFlows = []int{1 << 10, 1 << 16, 1 << 20}
	}
	if o.GenCPU == 0 && o.WorkerCPU == 0 && runtime.NumCPU() > 1 {
		o.WorkerCPU = 1
	}
	if o.LatencyRate <= 0 {
		o.LatencyRate = 50000
	}
	if o.Placement == "" {
		o.Placement = PlacementSplit
	}
	if len(o.GenCPUs) == 0 {
		o.GenCPUs = []int{o.GenCPU}
	}
	o.GenCPU = o.GenCPUs[0]
}

// Case is one measured configuration.
type Case struct {
	Group    string
	Variant  string
	Proto    Proto
	Size     int
	Flows    int
	NewFlows bool    // every packet a new flow
	Rate     float64 // 0: flat out
	Check    bool    // the checking sink (latency, correctness) instead of the counting one
}

// Key names the case uniquely.
func (c Case) Key() string {
	k := fmt.Sprintf("%s/%s/%s/%d/%d", c.Group, c.Variant, c.Proto, c.Size, c.Flows)
	if c.NewFlows {
		k += "/new"
	}
	return k
}

// Sample is one run of a case.
type Sample struct {
	Offered   Rate // what the generator sent while measured
	Forwarded Rate // what the sink received while measured
	// Counted are the frames the device under test counted as dropped (xlb: its drop
	// reasons and the socket's rx drops; 0 for the kernel paths, which this bench cannot
	// count).
	Counted  uint64
	NewFlows uint64 // xlb: connection-table misses (new flows scheduled) while measured
	DUTSent  uint64 // xlb: frames its workers transmitted while measured
	// SinkTotal and DUTTotal are, once the generator stopped and drained, every frame the
	// counting sink saw and every frame xlb transmitted since the run began: they match
	// when nothing is lost between the two.
	SinkTotal, DUTTotal uint64
	Sink                *SinkResult
	WorkerErr           []error
	After               *SinkResult // overload: the check run after the overload
}

// dut is a running device under test.
type dut struct {
	dp    *dataplane.Dataplane
	close func() error
	// count, when set, counts the frames the device under test received (xdp-drop): it
	// replaces the sink on xb, which then gets nothing.
	count func() uint64
}

func (d *dut) counters() (drops, misses, tx uint64) {
	if d.dp == nil {
		return 0, 0, 0
	}
	c := d.dp.Total()
	return c.Dropped() + c.Kernel.RxDropped + c.Kernel.RxRingFull + c.TxRingFull, c.ConnMisses, c.TxPackets
}

type runner struct {
	t    *Topology
	o    Options
	ctx  context.Context
	flow uint64 // next first flow, so runs never reuse each other's flows
}

func (r *runner) startDUT(c Case) (*dut, error) {
	d, err := r.startVariant(c)
	if err != nil || r.o.Placement != PlacementCore {
		return d, err
	}
	cpu := r.o.WorkerCPU
	if c.Variant == XLBDR1CPU {
		cpu = r.o.GenCPU
	}
	if err := r.t.PinRx(cpu, c.Variant != NFTDNAT); err != nil {
		return nil, errors.Join(err, d.close())
	}
	return d, nil
}

func (r *runner) startVariant(c Case) (*dut, error) {
	switch c.Variant {
	case XDPTX:
		b, err := r.t.attachXA("swap")
		if err != nil {
			return nil, err
		}
		return &dut{close: b.Close}, nil
	case XDPDrop:
		b, err := r.t.attachXA(xdpbase.Drop)
		if err != nil {
			return nil, err
		}
		return &dut{close: b.Close, count: func() uint64 { n, _ := b.Packets(); return n }}, nil
	case AsavieL2Fwd:
		a, err := r.t.startAsavie(r.o.WorkerCPU)
		if err != nil {
			return nil, err
		}
		return &dut{close: a.Close}, nil
	case IPVSDR, IPVSTunnel:
		return r.t.startIPVS(c)
	case NFTDNAT:
		if err := r.t.LoadDNAT(); err != nil {
			return nil, err
		}
		if err := r.t.FlushConntrack(); err != nil {
			return nil, err
		}
		return &dut{close: func() error { return nil }}, nil
	case XLBDR, XLBTunnel, XLBDR1CPU:
		m := dataplane.MethodDR
		if c.Variant == XLBTunnel {
			m = dataplane.MethodTunnel
		}
		ct := 1 << 16
		if !c.NewFlows {
			for ct < 2*c.Flows {
				ct <<= 1
			}
		}
		cpu := r.o.WorkerCPU
		if c.Variant == XLBDR1CPU {
			cpu = r.o.GenCPU
		}
		dp, err := r.t.StartXLB(r.ctx, XLBConfig{Method: m, Proto: c.Proto, Cores: []int{cpu}, ConnTable: ct,
			BusyPoll: r.o.BusyPoll})
		if err != nil {
			return nil, err
		}
		return &dut{dp: dp, close: dp.Close}, nil
	}
	return nil, fmt.Errorf("bench: unknown variant %q", c.Variant)
}

// expect is what the checking sink accepts from variant.
func (r *runner) expect(variant string) *Expect {
	e := &Expect{SrcMAC: r.t.MACA}
	var macs [][6]byte
	var addrs []netip.Addr
	for i := range numBackends {
		a, m := Backend(i)
		macs, addrs = append(macs, m), append(addrs, a)
	}
	switch variant {
	case XDPTX:
		e.DstMACs, e.Dsts = [][6]byte{r.t.MACB}, []netip.Addr{VIP}
	case AsavieL2Fwd:
		e.DstMACs, e.Dsts, e.SpreadByMAC = macs, []netip.Addr{VIP}, true
	case NFTDNAT:
		e.DstMACs, e.Dsts = macs, addrs
	case XLBDR, XLBDR1CPU, IPVSDR:
		e.DstMACs, e.Dsts, e.SpreadByMAC = macs, []netip.Addr{VIP}, true
	case XLBTunnel:
		e.DstMACs, e.Dsts, e.IPIP, e.OuterSrc = macs, addrs, true, TunnelSrc
	case IPVSTunnel: // IPVS encapsulates from the address the route to the backend names: xa's
		e.DstMACs, e.Dsts, e.IPIP, e.OuterSrc = macs, addrs, true, lbAddr.Addr()
	}
	return e
}

// traffic runs the generator against a started dut and measures.
func (r *runner) traffic(c Case, d *dut) (Sample, error) {
	var s Sample
	flows := c.Flows
	if c.NewFlows {
		flows = (1<<16 - 2) * portsPerAddr // the whole client pool: no flow repeats
	}
	tp, err := NewTemplate(TemplateConfig{Proto: c.Proto, Size: c.Size, SrcMAC: r.t.MACB, DstMAC: r.t.MACA,
		Dst: VIP, DstPort: VIPPort, SrcPool: ClientPool, Flows: flows})
	if err != nil {
		return s, err
	}
	gc := GenConfig{NS: r.t.NS.NsHandle(), Ifindex: r.t.XB.Attrs().Index, Template: tp, Rate: c.Rate}
	var count func() uint64
	if c.Check {
		rd, err := r.t.AttachSinkRedirect()
		if err != nil {
			return s, err
		}
		defer rd.Close()
		gc.Check, gc.Redirect = r.expect(c.Variant), rd
	} else {
		sk, err := r.t.AttachSinkDrop()
		if err != nil {
			return s, err
		}
		defer sk.Close()
		count = func() uint64 { n, _ := sk.Packets(); return n }
		if d.count != nil {
			count = d.count
		}
	}
	g := make(gens, 0, len(r.o.GenCPUs))
	for i, cpu := range r.o.GenCPUs {
		c := gc
		c.Queue, c.CPU = i, cpu
		c.Rate /= float64(len(r.o.GenCPUs))
		c.FirstFlow = r.flow + uint64(i*flows/len(r.o.GenCPUs)) // each thread its share of the flows
		one, err := StartGenerator(c)
		if err != nil {
			g.Stop()
			return s, err
		}
		g = append(g, one)
	}
	r.flow += uint64(flows)
	warm := r.o.Warmup
	if c.Group == GroupFlows {
		// Send every flow about once before measuring, so the figure is of established flows.
		warm += time.Duration(float64(c.Flows) / 1e6 * float64(time.Second))
	}
	if err := sleep(r.ctx, warm); err != nil {
		g.Stop()
		return s, err
	}
	var rcv0 uint64
	if count != nil {
		rcv0 = count()
	}
	drops0, miss0, tx0 := d.counters()
	sent0, t0 := g.Sent(), time.Now()
	err = sleep(r.ctx, r.o.Duration)
	sent1, el := g.Sent(), time.Since(t0)
	var rcv1 uint64
	if count != nil {
		rcv1 = count()
	}
	drops1, miss1, tx1 := d.counters()
	res, gerr := g.Stop()
	if err = errors.Join(err, gerr); err != nil {
		return s, err
	}
	if count != nil && d.dp != nil {
		time.Sleep(20 * time.Millisecond) // let the worker finish its last batch
		_, _, tx := d.counters()
		s.SinkTotal, s.DUTTotal = count(), tx
	}
	wire := uint64(tp.Len() + fcsLen)
	s.Offered = Rate{Packets: sent1 - sent0, Bytes: (sent1 - sent0) * wire, Elapsed: el}
	if c.Check {
		sk := res.Sink
		s.Sink = &sk
		s.Offered = res.Sent
		s.Forwarded = Rate{Packets: sk.Good, Bytes: sk.Good * wire, Elapsed: res.Sent.Elapsed}
	} else {
		s.Forwarded = Rate{Packets: rcv1 - rcv0, Bytes: (rcv1 - rcv0) * wire, Elapsed: el}
	}
	s.Counted, s.NewFlows, s.DUTSent = drops1-drops0, miss1-miss0, tx1-tx0
	if d.dp != nil {
		s.WorkerErr = d.dp.WorkerErrors()
	}
	return s, nil
}

func (r *runner) measure(c Case) (Sample, error) {
	d, err := r.startDUT(c)
	if err != nil {
		return Sample{}, err
	}
	s, err := r.traffic(c, d)
	if err == nil && c.Group == GroupOverload {
		// Still forwarding, and correctly, after the overload?
		after, aerr := r.traffic(Case{Group: c.Group, Variant: c.Variant, Proto: c.Proto, Size: c.Size,
			Flows: c.Flows, Rate: r.o.LatencyRate, Check: true}, d)
		err = aerr
		s.After = after.Sink
		s.WorkerErr = after.WorkerErr
	}
	return s, errors.Join(err, d.close())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cases lists every case of the chosen groups, in the order one round runs them: each xlb
// case right after the baselines of its size, so they interleave.
func (o *Options) cases() []Case {
	var cs []Case
	has := map[string]bool{}
	for _, g := range o.Groups {
		has[g] = true
	}
	if has[GroupForward] {
		for _, sz := range o.Sizes {
			for _, v := range []string{XDPDrop, XDPTX, XLBDR, NFTDNAT, XLBTunnel, XLBDR1CPU, AsavieL2Fwd, IPVSDR, IPVSTunnel} {
				if v == XLBDR1CPU && (o.GenCPU == o.WorkerCPU || o.Placement == PlacementCore) {
					continue
				}
				if (v == IPVSDR || v == IPVSTunnel) && !o.ipvs {
					continue // no ip_vs here: not measured, not listed
				}
				cs = append(cs, Case{Group: GroupForward, Variant: v, Proto: UDP, Size: sz, Flows: o.Flows})
			}
		}
	}
	if has[GroupFlows] {
		for _, f := range o.ScaleFlows {
			cs = append(cs, Case{Group: GroupFlows, Variant: XLBDR, Proto: UDP, Size: 64, Flows: f})
		}
	}
	if has[GroupNewFlows] {
		cs = append(cs, Case{Group: GroupNewFlows, Variant: XLBDR, Proto: TCPSYN, Size: 64, NewFlows: true})
	}
	if has[GroupLatency] {
		for _, v := range []string{XDPTX, XLBDR, NFTDNAT, XLBTunnel, IPVSDR, IPVSTunnel} {
			if (v == IPVSDR || v == IPVSTunnel) && !o.ipvs {
				continue
			}
			cs = append(cs, Case{Group: GroupLatency, Variant: v, Proto: UDP, Size: 64, Flows: o.Flows,
				Rate: o.LatencyRate, Check: true})
		}
	}
	return cs
}

// Run builds the topology, runs every case of o once per round (rounds interleave the
// variants: A B A B), the overload case once at the end, and returns the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	o.ipvs = IPVS() == nil
	if o.Placement != PlacementSplit && o.Placement != PlacementCore {
		return nil, fmt.Errorf("bench: placement %q (want %s or %s)", o.Placement, PlacementSplit, PlacementCore)
	}
	// The generator and the worker are locked busy threads: leave Ps for the rest.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), runtime.NumCPU()+2)))
	t, err := NewTopology(len(o.GenCPUs))
	if err != nil {
		return nil, err
	}
	defer t.Close()
	r := &runner{t: t, o: o, ctx: ctx, flow: 0}
	cases := o.cases()
	var over *Case
	for _, g := range o.Groups {
		if g == GroupOverload {
			// One generator cannot offer more than a worker of its own takes on this topology
			// (its CPU also runs xa's receive work): the worker shares the generator's CPU
			// instead, so the offered load is above what it forwards.
			over = &Case{Group: GroupOverload, Variant: XLBDR1CPU, Proto: UDP, Size: 64, Flows: o.Flows}
		}
	}
	total := len(cases) * o.Rounds
	if over != nil {
		total++
	}
	rep := newReport(o, t)
	done := 0
	for round := range o.Rounds {
		for _, c := range cases {
			if o.Progress != nil {
				o.Progress(done, total, fmt.Sprintf("round %d/%d %s", round+1, o.Rounds, c.Key()))
			}
			s, err := r.measure(c)
			done++
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				rep.fail(c, err)
				continue
			}
			rep.add(c, round, s)
		}
	}
	if over != nil {
		if o.Progress != nil {
			o.Progress(done, total, "overload "+over.Key())
		}
		s, err := r.measure(*over)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.fail(*over, err)
		} else {
			rep.add(*over, 0, s)
		}
	}
	if o.Progress != nil {
		o.Progress(total, total, "done")
	}
	rep.finish()
	return rep, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// gens are the generator threads of one run, one per queue.
type gens []*Generator

// Sent returns what the threads have sent so far.
func (g gens) Sent() uint64 {
	var n uint64
	for _, x := range g {
		n += x.Sent()
	}
	return n
}

// Stop stops every thread and adds their results up.
func (g gens) Stop() (GenResult, error) {
	var res GenResult
	var errs []error
	for _, x := range g {
		r, err := x.Stop()
		errs = append(errs, err)
		res.Sent.Packets += r.Sent.Packets
		res.Sent.Bytes += r.Sent.Bytes
		res.Sent.Elapsed = max(res.Sent.Elapsed, r.Sent.Elapsed)
		res.Kicks += r.Kicks
		res.RxRingFull += r.RxRingFull
		res.FillRingEmpty += r.FillRingEmpty
		res.Sink.merge(&r.Sink)
	}
	return res, errors.Join(errs...)
}
