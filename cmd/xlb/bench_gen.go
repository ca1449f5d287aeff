package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/bench"
)

// genFlags are `xlb bench gen`'s flags.
type genFlags struct {
	portFlags
	dstMAC, dst, srcPool, proto, size, rate, sink, fractions, dut, out, plot string
	dstPort, flows                                                           int
	dur, trial                                                               time.Duration
	loss                                                                     float64
	rfc, markdown                                                            bool
}

func (g *genFlags) register(fs *flag.FlagSet) {
	g.portFlags.register(fs)
	fs.StringVar(&g.dstMAC, "dst-mac", "", "destination MAC: the device under test's port (required; see `ip neigh`)")
	fs.StringVar(&g.dst, "dst", "", "destination IPv4 address, the VIP, inside 198.18.0.0/15 (required)")
	fs.IntVar(&g.dstPort, "dst-port", 9000, "destination port")
	fs.StringVar(&g.srcPool, "src-pool", "198.19.0.0/16", "prefix the flows' source addresses come from, inside 198.18.0.0/15")
	fs.StringVar(&g.proto, "proto", "udp", "udp, tcp-syn, tcp-ack, or a mix with shares: tcp-syn:1,tcp-ack:9")
	fs.StringVar(&g.size, "size", "64", "frame size in bytes with FCS (64..1518), a mix with shares (64:7,594:4,1518:1), or imix; with --rfc2544 a list of sizes searched one by one")
	fs.IntVar(&g.flows, "flows", 1024, "distinct flows (source address and port), 1..1048576")
	fs.StringVar(&g.rate, "rate", "max", "packets/s over all queues (k, M, G suffixes), or max: flat out")
	fs.DurationVar(&g.dur, "duration", 10*time.Second, "how long to send")
	fs.StringVar(&g.sink, "sink", "", "HOST:PORT of `xlb bench sink`'s control connection: its counts each second and at the end")
	fs.BoolVar(&g.rfc, "rfc2544", false, "RFC 2544 throughput search per --size, then latency at --fractions of it (needs --sink)")
	fs.Float64Var(&g.loss, "loss", 0.001, "RFC 2544: the highest loss of a passing trial, in percent")
	fs.DurationVar(&g.trial, "trial", 2*time.Second, "RFC 2544: duration of each trial")
	fs.StringVar(&g.fractions, "fractions", "0.1,0.5,0.9", "RFC 2544: fractions of the throughput to measure latency at")
	fs.StringVar(&g.dut, "dut", "dut", "RFC 2544: name of the device under test in the report")
	fs.BoolVar(&g.markdown, "markdown", false, "RFC 2544: write the report as Markdown")
	fs.StringVar(&g.out, "out", "", "RFC 2544: write the report to FILE")
	fs.StringVar(&g.plot, "plot", "", "RFC 2544: also draw the report's charts as SVG files into DIR")
}

// config checks the flags and builds the generator's configuration.
func (g *genFlags) config() (bench.PortGenConfig, error) {
	var c bench.PortGenConfig
	p, err := g.port()
	if err != nil {
		return c, err
	}
	c.Port = p
	if c.Rate, err = parseRate(g.rate); err != nil {
		return c, err
	}
	mac, err := net.ParseMAC(g.dstMAC)
	if err != nil || len(mac) != 6 {
		return c, fmt.Errorf("%w: --dst-mac %q (want the device under test's MAC, aa:bb:cc:dd:ee:ff)", errUsage, g.dstMAC)
	}
	dst, err := netip.ParseAddr(g.dst)
	if err != nil {
		return c, fmt.Errorf("%w: --dst %q (want an IPv4 address)", errUsage, g.dst)
	}
	pool, err := netip.ParsePrefix(g.srcPool)
	if err != nil {
		return c, fmt.Errorf("%w: --src-pool %q (want a prefix)", errUsage, g.srcPool)
	}
	if g.dstPort < 1 || g.dstPort > 65535 || g.flows < 1 || g.flows > 1<<20 {
		return c, fmt.Errorf("%w: --dst-port 1..65535, --flows 1..1048576", errUsage)
	}
	c.Stream.Base = bench.TemplateConfig{DstMAC: [6]byte(mac), Dst: dst, DstPort: uint16(g.dstPort), SrcPool: pool,
		Flows: g.flows}
	if c.Stream.Sizes, err = bench.ParseSizes(g.size); err != nil {
		return c, err
	}
	if c.Stream.Protos, err = bench.ParseProtos(g.proto); err != nil {
		return c, err
	}
	if g.rfc && (g.sink == "" || c.Rate != 0) {
		return c, fmt.Errorf("%w: --rfc2544 needs --sink and chooses the rates itself (no --rate)", errUsage)
	}
	if g.dur <= 0 || g.trial <= 0 || g.loss < 0 || g.loss >= 100 {
		return c, fmt.Errorf("%w: --duration and --trial must be positive, --loss 0..100", errUsage)
	}
	// Check the interface, every size against its MTU and the stream as a whole now.
	for _, s := range c.Stream.Sizes {
		one := c
		one.Stream.Sizes = []bench.SizeShare{{Size: s.Size, Share: 1}}
		if _, _, err := bench.NewPortStream(one); err != nil {
			return c, err
		}
	}
	if !g.rfc {
		if _, _, err := bench.NewPortStream(c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// cmdBenchGen runs `xlb bench gen`: send from every queue of an interface, at a rate or flat
// out, and print the counts of both sides each second; or search RFC 2544 throughput.
func cmdBenchGen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench gen", stderr)
	var g genFlags
	g.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xlb bench gen --iface IF --dst-mac MAC --dst VIP [--dst-port P] [--proto P] [--size S]\n"+
			"                     [--flows N] [--rate R|max] [--duration D] [--sink HOST:PORT] [--queues N] [--cpus LIST]\n"+
			"                     [--zero-copy auto|on|off] [--rfc2544 [--loss PCT] [--trial D] [--fractions LIST]]\n\n"+
			"Sends generated UDP or TCP frames from every queue of IF through AF_XDP (one socket and pinned\n"+
			"thread per queue; zero copy where the driver has it), flat out or at a rate, and prints what it\n"+
			"sent and what `xlb bench sink` received each second. --rfc2544 searches the highest rate\n"+
			"the device under test forwards with loss under --loss, per size, then latency. Needs root.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: bench gen takes flags only", errUsage)
	}
	c, err := g.config()
	if err != nil {
		return err
	}
	benchPrioritize()
	ctx, stop := signalContext()
	defer stop()
	var counts bench.CountsFunc
	if g.sink != "" {
		sc, err := bench.DialSink(ctx, g.sink)
		if err != nil {
			return err
		}
		defer sc.Close()
		counts = sc.Counts
	}
	if g.rfc {
		return g.search(ctx, c, counts, stdout, stderr)
	}
	return genLoop(ctx, c, counts, g.dur, stdout)
}

// genLoop sends for d and prints both sides' counts each second.
func genLoop(ctx context.Context, c bench.PortGenConfig, counts bench.CountsFunc, d time.Duration, w io.Writer) error {
	var s0 bench.SinkCounts
	if counts != nil {
		var err error
		if s0, err = counts(); err != nil {
			return err
		}
	}
	gen, err := bench.StartPortGen(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "generator on %s, mean frame %.0f bytes, rate %s\n", gen.Info(), gen.Stream().Mean(), rateText(c.Rate))
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lp, lb, lr uint64
	for sec := 1; ctx.Err() == nil; sec++ {
		select {
		case <-ctx.Done():
			continue
		case <-tick.C:
		}
		p, b := gen.Sent()
		line := fmt.Sprintf("%4ds sent %10d pps %8.3f Gbit/s", sec, p-lp, float64(b-lb)*8/1e9)
		if counts != nil {
			if sc, err := counts(); err == nil {
				r := sc.Packets - s0.Packets
				line += fmt.Sprintf("  sink received %10d pps", r-lr)
				lr = r
			}
		}
		fmt.Fprintln(w, line)
		lp, lb = p, b
	}
	res, err := gen.Stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "total: sent %d frames (%.3f Mpps, %.3f Gbit/s)", res.Sent.Packets, res.Sent.PPS()/1e6, res.Sent.BPS()/1e9)
	if counts != nil {
		sc, err := settledCounts(counts)
		if err != nil {
			return err
		}
		got := sc.Packets - s0.Packets
		fmt.Fprintf(w, ", sink received %d, loss %.4f%% (of which the sink's sockets lost %d)", got,
			100*bench.Loss(res.Sent.Packets, got), sc.RxDropped-s0.RxDropped)
		if h := bench.LatencyBetween(s0, sc); h != nil && h.Count() > 0 {
			fmt.Fprintf(w, "\nlatency (send to sink, %d frames timed): p50 %v, p99 %v, p99.9 %v", h.Count(),
				h.Percentile(0.5), h.Percentile(0.99), h.Percentile(0.999))
		}
	}
	_, err = fmt.Fprintln(w)
	return err
}

func rateText(r float64) string {
	if r == 0 {
		return "flat out"
	}
	return fmt.Sprintf("%.0f pps", r)
}

// search runs the RFC 2544 search and writes its report.
func (g *genFlags) search(ctx context.Context, c bench.PortGenConfig, counts bench.CountsFunc, stdout, stderr io.Writer) error {
	sc := bench.SearchConfig{Gen: c, Counts: counts, Loss: g.loss / 100, Trial: g.trial,
		Progress: func(s string) { fmt.Fprintln(stderr, s) }}
	for _, s := range c.Stream.Sizes {
		sc.Sizes = append(sc.Sizes, s.Size)
	}
	sc.Fractions = []float64{}
	for _, f := range strings.Split(g.fractions, ",") {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v > 1 {
			return fmt.Errorf("%w: --fractions %q (want numbers in (0, 1])", errUsage, g.fractions)
		}
		sc.Fractions = append(sc.Fractions, v)
	}
	start := time.Now()
	res, err := bench.Search(ctx, sc)
	if err != nil {
		return err
	}
	rep := bench.SearchReport(sc, g.dut, res, start)
	w := stdout
	if g.out != "" {
		f, err := os.Create(g.out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return emitReport(rep, w, g.markdown, g.plot, "xlb bench gen "+strings.Join(os.Args[min(3, len(os.Args)):], " "), stderr)
}

// settledCounts reads the sink's counts once the frames still in flight have arrived: 200 ms
// after the generator stopped, then every 100 ms until two reads agree (at most 2 s more; a
// loaded host can leave the sink's threads without a CPU for longer than the first wait).
func settledCounts(counts bench.CountsFunc) (bench.SinkCounts, error) {
	time.Sleep(200 * time.Millisecond)
	sc, err := counts()
	for i := 0; err == nil && i < 20; i++ {
		time.Sleep(100 * time.Millisecond)
		again, err2 := counts()
		if err2 != nil {
			return sc, err2
		}
		if again.Packets == sc.Packets && again.RxDropped == sc.RxDropped {
			break
		}
		sc = again
	}
	return sc, err
}
