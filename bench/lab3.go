package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/xdpbase"
)

// ThreeHosts is the RFC 2544 lab: three network namespaces standing for three machines, the
// generator host (g0), the LB host (l0 towards the generator, l1 towards the backend) and the
// backend host, where the sink receives (s0), joined by veth pairs. Addresses: g0 198.18.0.1,
// l0 198.18.0.2, l1 198.18.1.2, s0 198.18.1.11 (the backend); the VIP is 198.18.0.100.
type ThreeHosts struct {
	Gen, LB, Sink *lab.NS
	G0, L0        netlink.Link
	dir           string // the LB's configuration file lives here
}

// LabBackend is the backend host's address in ThreeHosts.
var LabBackend = netip.MustParseAddr("198.18.1.11")

// NewThreeHosts builds the lab.
func NewThreeHosts() (_ *ThreeHosts, err error) {
	if err := lab.Available(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	h := &ThreeHosts{}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	for _, p := range []struct {
		ns   **lab.NS
		role string
	}{{&h.Gen, "gen"}, {&h.LB, "lb"}, {&h.Sink, "sink"}} {
		ns, err := lab.NewNS(id, p.role)
		if err != nil {
			return nil, err
		}
		*p.ns = ns
		if err := ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1"); err != nil {
			return nil, err
		}
	}
	if h.G0, h.L0, err = wire(h.Gen, h.LB, "g0", "l0", "198.18.0.1/24", "198.18.0.2/24"); err != nil {
		return nil, err
	}
	if _, _, err = wire(h.LB, h.Sink, "l1", "s0", "198.18.1.2/24", LabBackend.String()+"/24"); err != nil {
		return nil, err
	}
	if h.dir, err = os.MkdirTemp("", "xlb-lab-"); err != nil {
		return nil, fmt.Errorf("bench: lab: %w", err)
	}
	return h, nil
}

// wire makes a veth pair a (in from) / b (in to), MTU 1500, offloads off, both up, with
// their addresses.
func wire(from, to *lab.NS, a, b, addrA, addrB string) (netlink.Link, netlink.Link, error) {
	la, lb, err := from.AddVeth(a, b, 1500, 1)
	if err != nil {
		return nil, nil, err
	}
	if err := from.Handle().LinkSetNsFd(lb, int(to.NsHandle())); err != nil {
		return nil, nil, fmt.Errorf("bench: move %s to %s: %w", b, to.Name(), err)
	}
	if lb, err = to.Handle().LinkByName(b); err == nil {
		err = to.Handle().LinkSetUp(lb)
	}
	if err == nil {
		err = from.AddAddr(a, netip.MustParsePrefix(addrA))
	}
	if err == nil {
		err = to.AddAddr(b, netip.MustParsePrefix(addrB))
	}
	if err == nil {
		lb, err = to.Handle().LinkByName(b)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bench: lab link %s-%s: %w", a, b, err)
	}
	return la, lb, nil
}

// Close removes the namespaces (and every process started in them) and the configuration.
func (h *ThreeHosts) Close() error {
	var errs []error
	for _, ns := range []*lab.NS{h.Gen, h.LB, h.Sink} {
		if ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	if h.dir != "" {
		errs = append(errs, os.RemoveAll(h.dir))
	}
	return errors.Join(errs...)
}

// labConfig is the LB host's configuration (StartXLB adds the API's socket, in the lab's own
// directory: the lab's daemon must not take the socket of a daemon this host already runs):
// one dr Maglev service on the VIP, port 9000/udp,
// the backend host as its backend, no health check (the sink answers none: it takes every
// IP frame).
var labConfig = `interfaces: [{name: l0}, {name: l1}]
services:
  - name: bench
    vip: ` + VIP.String() + `
    port: 9000
    protocol: udp
    method: dr
    scheduler: maglev
    backends: [{address: ` + LabBackend.String() + `}]
    health: {kind: none}
`

// StartXLB runs `bin run` (the real daemon) on the LB host with the lab's configuration; its
// output goes to out. Close kills it.
func (h *ThreeHosts) StartXLB(bin string, out io.Writer) error {
	conf := filepath.Join(h.dir, "xlb.yaml")
	y := labConfig + "api: {socket: " + h.APISocket() + "}\n"
	if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
		return fmt.Errorf("bench: lab config: %w", err)
	}
	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.Stdout, cmd.Stderr = out, out
	return h.LB.Start(cmd)
}

// APISocket is the API socket of the daemon StartXLB runs (for `xlb ctl --socket`).
func (h *ThreeHosts) APISocket() string { return filepath.Join(h.dir, "xlb.sock") }

// GenConfig is the generator on g0, sending UDP to the VIP through l0: size 64, 1024 flows,
// on cpu.
func (h *ThreeHosts) GenConfig(cpu int) PortGenConfig {
	return PortGenConfig{Port: Port{Iface: "g0", NS: h.Gen.NsHandle(), CPUs: []int{cpu}},
		Stream: StreamConfig{Base: TemplateConfig{DstMAC: [6]byte(h.L0.Attrs().HardwareAddr), Dst: VIP,
			DstPort: VIPPort, SrcPool: ClientPool, Flows: 1024, Size: 64}}}
}

// ServeSink serves the sink's counts on a TCP control connection on the loopback, as between
// two hosts, until ctx ends, and returns the generator's end.
func ServeSink(ctx context.Context, sink *Sink) (*SinkClient, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrControl, err)
	}
	go ServeControl(ctx, l, sink.Counts)
	return DialSink(ctx, l.Addr().String())
}

// WaitForwarding sends slow trials until one gets through without loss: the device under
// test is up (xlb resolves the backend's MAC by ARP first; the sink lets ARP through).
func WaitForwarding(ctx context.Context, gen PortGenConfig, counts CountsFunc, timeout time.Duration) (Trial, error) {
	deadline := time.Now().Add(timeout)
	for {
		t, err := RunTrial(ctx, gen, counts, 20000, 200*time.Millisecond, 100*time.Millisecond)
		if err != nil || (t.Received == t.Sent.Packets && t.Sent.Packets > 0) {
			return t, err
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("bench: nothing forwarded for %v: sent %d, sink received %d", timeout, t.Sent.Packets, t.Received)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return t, err
		}
	}
}

// VethLimits measures, on g0 -> l0 before anything else runs on l0, the generator's own rate
// (XDP_DROP on l0 counts what arrives) and the in-kernel XDP forwarding limit (XDP_TX on l0
// swaps the MACs and sends each frame back, where XDP_DROP on g0 counts it): one flat-out run
// of d each, as report rows.
func (h *ThreeHosts) VethLimits(ctx context.Context, gen PortGenConfig, d time.Duration) ([]Row, error) {
	var rows []Row
	for _, v := range []string{XDPDrop, XDPTX} {
		var at, back *xdpbase.Baseline
		err := h.LB.Do(func() (err error) {
			name := xdpbase.Drop
			if v == XDPTX {
				name = xdpbase.Swap
			}
			at, err = xdpbase.Attach(h.L0.Attrs().Index, name)
			return err
		})
		if err == nil && v == XDPTX {
			err = h.Gen.Do(func() (err error) { back, err = xdpbase.Attach(h.G0.Attrs().Index, xdpbase.Drop); return err })
		}
		if err != nil {
			closeAll(at, back)
			return nil, err
		}
		counter := at
		if back != nil {
			counter = back
		}
		row, err := flatOut(ctx, gen, counter, d, v)
		closeAll(at, back)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	if len(rows) == 2 && rows[1].Forwarded.Median > 0 {
		rows[0].VsXDP = one(rows[0].Forwarded.Median / rows[1].Forwarded.Median)
	}
	return rows, nil
}

func closeAll(bs ...*xdpbase.Baseline) {
	for _, b := range bs {
		if b != nil {
			b.Close()
		}
	}
}

// flatOut sends flat out for d and counts with c.
func flatOut(ctx context.Context, gen PortGenConfig, c *xdpbase.Baseline, d time.Duration, variant string) (Row, error) {
	n0, err := c.Packets()
	if err != nil {
		return Row{}, err
	}
	g, err := StartPortGen(gen)
	if err != nil {
		return Row{}, err
	}
	werr := sleep(ctx, d)
	res, gerr := g.Stop()
	if err := errors.Join(werr, gerr); err != nil {
		return Row{}, err
	}
	n1, err := c.Packets()
	if err != nil {
		return Row{}, err
	}
	got := n1 - n0
	base := gen.Stream.Base
	return Row{Group: "veth", Variant: variant, Proto: base.Proto, Size: base.Size, Flows: base.Flows,
		Forwarded: one(float64(got) / res.Sent.Elapsed.Seconds() / 1e6),
		Gbps:      one(float64(got*uint64(base.Size)) * 8 / res.Sent.Elapsed.Seconds() / 1e9),
		Offered:   one(res.Sent.PPS() / 1e6), Loss: one(Loss(res.Sent.Packets, got))}, nil
}

// LabOptions configures RunLab.
type LabOptions struct {
	// XLB is the xlb binary the LB host runs (`xlb run`); default: this executable.
	XLB string
	// Search sets the search's sizes, trial, loss bound, fractions and progress; RunLab
	// fills in its generator and sink.
	Search SearchConfig
	// GenCPU and SinkCPU pin the generator's and the sink's threads (defaults 0 and 1).
	GenCPU, SinkCPU int
	// Log receives `xlb run`'s output (default: discarded).
	Log io.Writer
}

// RunLab runs the RFC 2544 kit on ThreeHosts: first, on g0 -> l0, the generator's own rate
// against the in-kernel XDP limit (VethLimits, one search trial long each); then a real
// `xlb run` on the LB host and the throughput search through it to the sink on the backend
// host, the generator asking the sink over a TCP control connection. One report.
func RunLab(ctx context.Context, o LabOptions) (*Report, error) {
	started := time.Now()
	if o.XLB == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: lab: %w", err)
		}
		o.XLB = exe
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	// The daemon's last words go into the error when nothing gets through it.
	tail := &tailBuffer{max: 4096}
	o.Log = io.MultiWriter(o.Log, tail)
	if o.GenCPU == 0 && o.SinkCPU == 0 {
		o.SinkCPU = 1 % runtime.NumCPU()
	}
	o.Search.defaults()
	h, err := NewThreeHosts()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	gen := h.GenConfig(o.GenCPU)
	veth, err := h.VethLimits(ctx, gen, o.Search.Trial)
	if err != nil {
		return nil, err
	}
	if err := h.StartXLB(o.XLB, o.Log); err != nil {
		return nil, err
	}
	sink, err := StartSink(Port{Iface: "s0", NS: h.Sink.NsHandle(), CPUs: []int{o.SinkCPU}})
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	sc, err := ServeSink(ctx, sink)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	if _, err := WaitForwarding(ctx, gen, sc.Counts, 15*time.Second); err != nil {
		return nil, fmt.Errorf("%w; xlb run's output ends:\n%s", err, tail.String())
	}
	o.Search.Gen, o.Search.Counts = gen, sc.Counts
	res, err := Search(ctx, o.Search)
	if err != nil {
		return nil, err
	}
	rep := SearchReport(o.Search, "xlb-run-dr", res, started)
	rep.Rows = append(veth, rep.Rows...)
	rep.Method = "Three namespaces for three hosts, joined by veth (copy mode): generator (g0) -> LB (l0, " +
		"l1; a real `xlb run`, one dr Maglev service) -> backend (s0, the sink). First, on g0 -> l0 alone: " +
		"`veth` rows, flat out for one trial each, xdp-drop (XDP_DROP on l0 counts: the generator's own rate) " +
		"and xdp-tx (XDP_TX on l0 back to g0, counted there: the in-kernel forwarding limit; x xdp-tx is " +
		"xdp-drop over it). Then " + rep.Method
	return rep, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
