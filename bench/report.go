package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// Row is one line of the report: a case's figures over the rounds, or a baseline that could
// not run and why.
type Row struct {
	Group, Variant string
	Proto          Proto
	Size, Flows    int
	NewFlows       bool
	Rate           float64 // offered rate of a fixed-rate run, packets/s
	Forwarded      Summary // Mpps the sink received
	Gbps           Summary // forwarded Gbit/s (frames with FCS)
	Offered        Summary // Mpps the generator sent
	Loss           Summary // fraction of offered not received
	VsXDP, VsNFT   Summary // ratio to the baseline's Mpps in the same round (NaN: none)
	P50, P99, P999 time.Duration
	Notes          []string
	Err            string // why the row has no figures
}

// Report is the outcome of Run.
type Report struct {
	Rows      []Row
	Machine   string
	Placement string
	Method    string
	Goals     []string
	// Scenarios, when set, replaces the Markdown paragraph about the veth scenarios.
	Scenarios string
	Options   Options
	Started   time.Time
	Elapsed   time.Duration

	cases   []Case
	samples map[string]map[int]Sample
	errs    map[string]string
}

func newReport(o Options, t *Topology) *Report {
	placement := fmt.Sprintf("split: generator thread on CPU %d (xa's receive work, xlb's XDP steering and copy "+
		"into its socket, the XDP baselines and the kernel's forwarding and nftables run there too: veth runs "+
		"the receiver in the sender's softirq); xlb's worker on CPU %d (its copy-mode transmit runs xb's sink "+
		"in that CPU's softirq)", o.GenCPU, o.WorkerCPU)
	if len(o.GenCPUs) > 1 {
		placement += fmt.Sprintf("; %d generator threads on CPUs %v, one per veth queue, and as many xlb workers, all on CPU %d",
			len(o.GenCPUs), o.GenCPUs, o.WorkerCPU)
	}
	if o.Placement == PlacementCore {
		placement = fmt.Sprintf("dut-core: generator thread alone on CPU %d; everything the device under test "+
			"does on CPU %d: xa's receive work (threaded NAPI, its napi thread pinned there, for the XDP variants; "+
			"RPS for the kernel path), xlb's XDP steering, copy and worker, and the transmit back to xb "+
			"(xlb-dr-1cpu: all of it on CPU %d with the generator)", o.GenCPU, o.WorkerCPU, o.GenCPU)
	}
	if o.BusyPoll {
		placement += "; xlb's worker busy-polls (never sleeps in poll(2))"
	}
	return &Report{Options: o, Started: time.Now(), Machine: machine(), Placement: placement,
		Method: fmt.Sprintf("one namespace, veth xa/xb (MTU %d, 1 queue, XDP native, AF_XDP copy mode: veth "+
			"has no zero copy). The generator (AF_XDP transmit on xb, this package's templates) sends UDP "+
			"(or TCP SYN) to %v:%d from %v; the device under test on xa forwards each frame back out of xa "+
			"to one of %d backends (MACs nobody owns; veth delivers them to xb anyway); the sink on xb counts "+
			"them (XDP_DROP with a per-CPU counter) or, in latency runs, receives and checks each one (AF_XDP, "+
			"MACs, encapsulation, destination, IPv4 checksums) and reads the send time from its payload. "+
			"%d rounds, the variants interleaved in each; %v measured after %v of warm-up; figures are the "+
			"median [min-max] over the rounds. Frame sizes include the 4-byte FCS (RFC 2544).",
			linkMTU, VIP, VIPPort, ClientPool, numBackends, o.Rounds, o.Duration, o.Warmup),
		samples: map[string]map[int]Sample{}, errs: map[string]string{}}
}

func (r *Report) note(c Case) {
	for _, k := range r.cases {
		if k.Key() == c.Key() {
			return
		}
	}
	r.cases = append(r.cases, c)
}

func (r *Report) add(c Case, round int, s Sample) {
	r.note(c)
	if r.samples[c.Key()] == nil {
		r.samples[c.Key()] = map[int]Sample{}
	}
	r.samples[c.Key()][round] = s
}

func (r *Report) fail(c Case, err error) {
	r.note(c)
	if _, ok := r.errs[c.Key()]; !ok {
		r.errs[c.Key()] = err.Error()
	}
}

// baseline returns the forward-group baseline case that c compares with.
func (r *Report) baseline(c Case, variant string) (Case, bool) {
	if c.Check {
		return Case{}, false
	}
	b := Case{Group: GroupForward, Variant: variant, Proto: UDP, Size: c.Size, Flows: r.Options.Flows}
	_, ok := r.samples[b.Key()]
	return b, ok
}

func (r *Report) finish() {
	r.Elapsed = time.Since(r.Started)
	for _, c := range r.cases {
		row := Row{Group: c.Group, Variant: c.Variant, Proto: c.Proto, Size: c.Size, Flows: c.Flows,
			NewFlows: c.NewFlows, Rate: c.Rate}
		if e, ok := r.errs[c.Key()]; ok {
			row.Err = e
		}
		ss := r.samples[c.Key()]
		var fwd, gbps, off, loss, vx, vn, counted, newf []float64
		var lat Histogram
		var good, bad uint64
		var spread [maxSpread]uint64
		var werr int
		var sinkTot, dutTot uint64
		for round, s := range ss {
			sinkTot += s.SinkTotal
			dutTot += s.DUTTotal
			fwd = append(fwd, s.Forwarded.PPS()/1e6)
			gbps = append(gbps, s.Forwarded.BPS()/1e9)
			off = append(off, s.Offered.PPS()/1e6)
			loss = append(loss, Loss(s.Offered.Packets, s.Forwarded.Packets))
			if s.Offered.Elapsed > 0 {
				counted = append(counted, float64(s.Counted)/s.Offered.Elapsed.Seconds())
				newf = append(newf, float64(s.NewFlows)/s.Offered.Elapsed.Seconds())
			}
			for _, p := range []struct {
				v   string
				out *[]float64
			}{{XDPTX, &vx}, {NFTDNAT, &vn}} {
				if b, ok := r.baseline(c, p.v); ok && p.v != c.Variant {
					if bs, ok := r.samples[b.Key()][round]; ok {
						*p.out = append(*p.out, ratio(s.Forwarded.PPS(), bs.Forwarded.PPS()))
					}
				}
			}
			if s.Sink != nil {
				lat.Merge(&s.Sink.Latency)
				good += s.Sink.Good
				bad += s.Sink.BadTotal()
				for i, v := range s.Sink.Spread {
					spread[i] += v
				}
			}
			werr += len(s.WorkerErr)
			if s.After != nil {
				row.Notes = append(row.Notes, fmt.Sprintf("afterwards at %.0f kpps: %d frames checked good, %d bad",
					r.Options.LatencyRate/1e3, s.After.Good, s.After.BadTotal()))
			}
		}
		row.Forwarded, row.Gbps, row.Offered, row.Loss = Summarize(fwd), Summarize(gbps), Summarize(off), Summarize(loss)
		row.VsXDP, row.VsNFT = Summarize(vx), Summarize(vn)
		if lat.Count() > 0 {
			row.P50, row.P99, row.P999 = lat.Percentile(0.5), lat.Percentile(0.99), lat.Percentile(0.999)
		}
		if c.Check && len(ss) > 0 {
			var sp []string
			for i := range numBackends {
				sp = append(sp, fmt.Sprint(spread[i]))
			}
			if c.Variant == XDPTX {
				sp = sp[:1]
			}
			row.Notes = append(row.Notes, fmt.Sprintf("checked: %d good, %d bad; per backend %s", good, bad,
				strings.Join(sp, "/")))
		}
		if strings.HasPrefix(c.Variant, "xlb") && len(ss) > 0 {
			row.Notes = append(row.Notes, fmt.Sprintf("drops counted by xlb %.3g/s", Summarize(counted).Median))
			if c.NewFlows || c.Group == GroupFlows {
				row.Notes = append(row.Notes, fmt.Sprintf("new flows scheduled %.3g/s", Summarize(newf).Median))
			}
			if dutTot > 0 {
				row.Notes = append(row.Notes, fmt.Sprintf("sink counted %d of the %d frames xlb sent", sinkTot, dutTot))
			}
			if werr > 0 {
				row.Notes = append(row.Notes, fmt.Sprintf("worker errors: %d", werr))
			}
		}
		if c.Rate == 0 && len(ss) > 0 && row.Loss.Median < 0.02 && c.Variant != XDPTX && c.Variant != NFTDNAT && c.Variant != XDPDrop {
			row.Notes = append(row.Notes, "offered-bound (the generator's CPU, which also runs xa's receive work, was the limit)")
		}
		if c.Group == GroupOverload && len(ss) > 0 {
			s := ss[0]
			lost := s.Offered.Packets - min(s.Offered.Packets, s.Forwarded.Packets)
			state := "overloaded"
			if lost*50 < s.Offered.Packets && s.Counted == 0 {
				state = "NOT overloaded (offered did not exceed what it forwards)"
			}
			row.Notes = append(row.Notes, fmt.Sprintf("%s: offered %d, forwarded %d, lost %d, of which counted by xlb %d",
				state, s.Offered.Packets, s.Forwarded.Packets, lost, s.Counted))
		}
		if len(ss) > 0 && len(ss) < r.Options.Rounds && c.Group != GroupOverload {
			row.Notes = append(row.Notes, fmt.Sprintf("%d of %d rounds failed", r.Options.Rounds-len(ss), r.Options.Rounds))
		}
		r.Rows = append(r.Rows, row)
	}
	for _, row := range r.Rows {
		if row.Group != GroupForward || !strings.HasPrefix(row.Variant, "xlb") || row.Err != "" {
			continue
		}
		r.Goals = append(r.Goals, fmt.Sprintf("%s %dB: %.2fx the in-kernel XDP limit (goal >= 0.8: %s), %.2fx nftables DNAT (goal >= 2: %s)",
			row.Variant, row.Size, row.VsXDP.Median, met(row.VsXDP.Median >= 0.8), row.VsNFT.Median, met(row.VsNFT.Median >= 2)))
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// variants lists every variant What describes, in legend order.
var variants = []string{XDPDrop, XDPTX, NFTDNAT, XLBDR, XLBDR1CPU, XLBTunnel, IPVSDR, IPVSTunnel, AsavieL2Fwd}

// variants returns the described variants that have a row in r, in legend order.
func (r *Report) variants() []string {
	var out []string
	for _, v := range variants {
		for _, row := range r.Rows {
			if row.Variant == v {
				out = append(out, v)
				break
			}
		}
	}
	return out
}

// What says what a variant's row measures and how.
func What(variant string) string {
	switch variant {
	case XDPDrop:
		return "in-kernel XDP_DROP on xa (in the lab: l0), counting what arrives (the `drop` program of dataplane/bpf/bench.c): the generator's own rate on this veth, against which xdp-tx's forwarding limit reads"
	case XDPTX:
		return "in-kernel XDP on xa (in the lab: l0): swap the MACs, XDP_TX back to xb (g0) (the `swap` program of dataplane/bpf/bench.c): the best this machine forwards one-armed"
	case NFTDNAT:
		return "no XDP on xa: the kernel's IPv4 forwarding with an nftables DNAT rule (prerouting, numgen over the 3 backends) and conntrack, out of xa to the backends' neighbour entries"
	case XLBDR:
		return "xlb's data path on xa (XDP steering, AF_XDP copy mode, one worker): Maglev + connection table, dr (MAC rewrite), back out of xa"
	case XLBDR1CPU:
		return "as xlb-dr, with the worker on the generator's CPU: xlb, the generator and all the receive work share one CPU, as the kernel paths do"
	case XLBTunnel:
		return "as xlb-dr, tunnel method: IPIP to the backend's address (outer source " + TunnelSrc.String() + ")"
	case IPVSDR, IPVSTunnel:
		return "Linux IPVS on xa (ipvsadm-restore rules from xlb's ipvsadm export of the same service: mh scheduler, direct routing or IPIP), the kernel's forwarding path"
	case AsavieL2Fwd:
		return "a Go AF_XDP l2fwd on github.com/asavie/xdp (its own XDP program and rings, one socket on xa): each frame's destination MAC set to a backend's, sent back out of xa; no load-balancer work: the Go AF_XDP baseline"
	}
	return ""
}

func (r Row) flows() string {
	switch {
	case r.NewFlows:
		return "new/pkt"
	case r.Flows == 0:
		return ""
	case r.Flows%(1<<20) == 0:
		return fmt.Sprintf("%dM", r.Flows>>20)
	case r.Flows%(1<<10) == 0:
		return fmt.Sprintf("%dk", r.Flows>>10)
	}
	return fmt.Sprint(r.Flows)
}

func fmtSum(s Summary, prec int) string {
	if s.N == 0 || math.IsNaN(s.Median) {
		return "-"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.*f", prec, s.Median)
	}
	return fmt.Sprintf("%.*f [%.*f-%.*f]", prec, s.Median, prec, s.Min, prec, s.Max)
}

func fmtLat(r Row) string {
	if r.P50 == 0 {
		return "-"
	}
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) }
	return us(r.P50) + " / " + us(r.P99) + " / " + us(r.P999)
}

func (r Row) cells() []string {
	if r.Err != "" {
		return []string{r.Group, r.Variant, sizeCell(r), r.flows(), "-", "-", "-", "-", "-", "-", "-", r.Err}
	}
	off := fmtSum(r.Offered, 2)
	if r.Rate > 0 {
		off = fmt.Sprintf("%.3f (fixed)", r.Rate/1e6)
	}
	return []string{r.Group, r.Variant, sizeCell(r), r.flows(), fmtSum(r.Forwarded, 3), fmtSum(r.Gbps, 2), off,
		fmtSum(Summary{Median: 100 * r.Loss.Median, Min: 100 * r.Loss.Min, Max: 100 * r.Loss.Max, N: r.Loss.N}, 1),
		fmtSum(r.VsXDP, 2), fmtSum(r.VsNFT, 2), fmtLat(r), strings.Join(r.Notes, "; ")}
}

func sizeCell(r Row) string {
	if r.Size == 0 {
		return ""
	}
	return fmt.Sprintf("%d %s", r.Size, r.Proto)
}

var header = []string{"scenario", "variant", "size", "flows", "Mpps forwarded", "Gbit/s", "Mpps offered",
	"loss %", "x xdp-tx", "x nft-dnat", "latency p50/p99/p99.9 us", "notes"}

// WriteText writes the report as an aligned text table with its legend.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range r.Rows {
		fmt.Fprintln(tw, strings.Join(row.cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmachine: %s\nplacement: %s\nmethod: %s\n", r.Machine, r.Placement, r.Method)
	for _, v := range r.variants() {
		fmt.Fprintf(w, "%s: %s\n", v, What(v))
	}
	for _, g := range r.Goals {
		fmt.Fprintln(w, "goal: "+g)
	}
	_, err := fmt.Fprintf(w, "elapsed %v\n", r.Elapsed.Round(time.Millisecond))
	return err
}

// WriteMarkdown writes the report as Markdown for BENCHMARKS.md: method, machine,
// placement, the table, what each row measured, and the goals.
func (r *Report) WriteMarkdown(w io.Writer, command string) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "Command: `%s`  \nMachine: %s  \nRun: %s, %v\n\n", command, r.Machine,
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Elapsed.Round(time.Second))
	fmt.Fprintf(b, "Method: %s\n\nPlacement: %s\n\n", r.Method, r.Placement)
	fmt.Fprintln(b, "| "+strings.Join(header, " | ")+" |")
	fmt.Fprintln(b, "|"+strings.Repeat("---|", len(header)))
	for _, row := range r.Rows {
		c := row.cells()
		for i := range c {
			c[i] = strings.ReplaceAll(c[i], "|", "/")
		}
		fmt.Fprintln(b, "| "+strings.Join(c, " | ")+" |")
	}
	if vs := r.variants(); len(vs) > 0 {
		fmt.Fprintln(b, "\nWhat each variant measures:")
		for _, v := range vs {
			fmt.Fprintf(b, "- `%s`: %s\n", v, What(v))
		}
	}
	if r.Scenarios == "" {
		fmt.Fprintln(b, "\nScenarios: `forward` flat out per size; `flows` xlb-dr at 64 bytes by flow count "+
			"(ratios against the forward group's 1k-flow baselines of the same round); `newflows` TCP SYNs, "+
			"every packet a new flow; `overload` flat out once with the worker on the generator's CPU (so the offered load exceeds what it forwards), then a checked run at a fixed rate on the same "+
			"data path; `latency` at a fixed rate through the checking sink (generator send to sink receive, "+
			"both copy-mode AF_XDP paths included).")
	} else {
		fmt.Fprintln(b, "\n"+r.Scenarios)
	}
	if len(r.Goals) > 0 {
		fmt.Fprintln(b, "\nGoals (per worker core):")
		for _, g := range r.Goals {
			fmt.Fprintln(b, "- "+g)
		}
	}
	return b.Flush()
}

// machine describes the host: CPUs, kernel, CPU model, Go version.
func machine() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), Linux %s, %s, %s", runtime.NumCPU(),
		unix.ByteSliceToString(u.Release[:]), model, runtime.Version())
}
