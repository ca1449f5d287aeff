package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/profile"
	"github.com/xlb-dev/xlb/bench"
)

// cmdBench runs `xlb bench`: xlb's data path against the in-kernel and kernel-stack
// baselines on a namespace topology (package bench), as a table or Markdown.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "gen":
			return cmdBenchGen(args[1:], stdout, stderr)
		case "sink":
			return cmdBenchSink(args[1:], stdout, stderr)
		case "lab":
			return cmdBenchLab(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("bench", stderr)
	quick := fs.Bool("quick", false, "short runs (300ms, 3 rounds): the whole table in under a minute")
	markdown := fs.Bool("markdown", false, "write Markdown (method, machine, placement, table) for BENCHMARKS.md")
	out := fs.String("out", "", "write the report to FILE instead of standard output")
	plotDir := fs.String("plot", "", "also draw the report's charts as SVG files into DIR (rates with min-max bars, latency distributions)")
	prof := fs.String("profile", "", "write a profile of the run to the working directory: cpu or mem")
	scen := fs.String("scenario", "all", "comma-separated scenario groups: "+strings.Join(bench.AllGroups, ",")+" or all")
	dur := fs.Duration("duration", 0, "measured time of each run (default 1s, --quick 300ms)")
	rounds := fs.Int("rounds", 0, "interleaved rounds (default 3)")
	flows := fs.Int("flows", 0, "flows of the forward and latency scenarios (default 1024)")
	sizes := fs.String("size", "", "comma-separated frame sizes in bytes, FCS included, of the forward scenario (default 64,1500)")
	cpus := fs.String("cpus", "", "GEN,WORKER: CPUs of the generator and of xlb's worker (default 0,1)")
	genCPUs := fs.String("gen-cpus", "", "comma-separated CPUs: one generator thread on each, one veth queue each (overrides GEN of --cpus)")
	rate := fs.Float64("latency-rate", 0, "offered packets/s of the latency runs (default 50000)")
	busy := fs.Bool("busy-poll", false, "xlb's worker spins when idle instead of sleeping in poll(2) (the config's busy_poll)")
	placement := fs.String("placement", bench.PlacementSplit, "where the receive work runs: "+bench.PlacementSplit+
		" (in the generator's softirq, as veth does) or "+bench.PlacementCore+" (on the worker's CPU: one core for the device under test)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xlb bench [--quick] [--markdown] [--out FILE] [--profile cpu|mem]\n"+
			"                 [--scenario LIST] [--duration D] [--rounds N] [--flows N] [--size LIST] [--cpus G,W] [--placement split|dut-core]\n\n"+
			"Measures xlb's forwarding (dr and tunnel) on a veth pair in a network namespace of its\n"+
			"own, next to the in-kernel XDP limit (XDP_TX) and the kernel's nftables DNAT path, in\n"+
			"the same run, interleaved; prints medians, ranges and ratios. Needs root.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: bench takes no arguments", errUsage)
	}
	o := bench.Options{}
	if *quick {
		o = bench.Quick()
	}
	if *dur < 0 || *rounds < 0 || *flows < 0 || *rate < 0 {
		return fmt.Errorf("%w: --duration, --rounds, --flows and --latency-rate must not be negative", errUsage)
	}
	if *dur > 0 {
		o.Duration = *dur
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	o.Flows, o.LatencyRate = *flows, *rate
	if *placement != bench.PlacementSplit && *placement != bench.PlacementCore {
		return fmt.Errorf("%w: --placement %q (want %s or %s)", errUsage, *placement, bench.PlacementSplit, bench.PlacementCore)
	}
	o.Placement = *placement
	o.BusyPoll = *busy
	if *scen != "all" && *scen != "" {
		for _, g := range strings.Split(*scen, ",") {
			if !slices.Contains(bench.AllGroups, g) {
				return fmt.Errorf("%w: --scenario %q (want %s or all)", errUsage, g, strings.Join(bench.AllGroups, ","))
			}
			o.Groups = append(o.Groups, g)
		}
	}
	if *sizes != "" {
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(s)
			if err != nil || n < bench.MinFrameSize || n > bench.MaxFrameSize {
				return fmt.Errorf("%w: --size %q (want %d..%d)", errUsage, s, bench.MinFrameSize, bench.MaxFrameSize)
			}
			o.Sizes = append(o.Sizes, n)
		}
	}
	if *cpus != "" {
		g, w, ok := strings.Cut(*cpus, ",")
		gi, err1 := strconv.Atoi(g)
		wi, err2 := strconv.Atoi(w)
		if !ok || err1 != nil || err2 != nil || gi < 0 || wi < 0 {
			return fmt.Errorf("%w: --cpus %q (want GEN,WORKER)", errUsage, *cpus)
		}
		o.GenCPU, o.WorkerCPU = gi, wi
	}
	if *genCPUs != "" {
		for _, c := range strings.Split(*genCPUs, ",") {
			n, err := strconv.Atoi(c)
			if err != nil || n < 0 {
				return fmt.Errorf("%w: --gen-cpus %q (want a list of CPU numbers)", errUsage, *genCPUs)
			}
			o.GenCPUs = append(o.GenCPUs, n)
		}
	}
	switch *prof {
	case "":
	case "cpu":
		defer profile.Start(profile.CPUProfile, profile.ProfilePath("."), profile.NoShutdownHook, profile.Quiet).Stop()
	case "mem":
		defer profile.Start(profile.MemProfile, profile.ProfilePath("."), profile.NoShutdownHook, profile.Quiet).Stop()
	default:
		return fmt.Errorf("%w: --profile %q (want cpu or mem)", errUsage, *prof)
	}
	w := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	benchPrioritize()
	start := time.Now()
	o.Progress = func(done, total int, what string) {
		fmt.Fprintf(stderr, "[%3d/%d %5.1fs] %s\n", done, total, time.Since(start).Seconds(), what)
	}
	// SIGPIPE too (a closed pipe on stdout or stderr): stop and clean the namespace up
	// instead of dying with it in place.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	return emitReport(rep, w, *markdown, *plotDir, "xlb bench "+strings.Join(args, " "), stderr)
}

// benchPrioritize is bench.Prioritize (a session of its own at autogroup nice -10, so the
// generator and the worker are not starved by the rest of the caller's session); tests
// replace it.
var benchPrioritize = func() { _ = bench.Prioritize() }

// emitReport draws rep's charts into plotDir (none when empty; the files are named on
// stderr), then writes rep to w as Markdown headed by cmdline, or as text.
func emitReport(rep *bench.Report, w io.Writer, markdown bool, plotDir, cmdline string, stderr io.Writer) error {
	if plotDir != "" {
		files, err := rep.WritePlots(plotDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "charts: %s\n", strings.Join(files, " "))
	}
	if markdown {
		return rep.WriteMarkdown(w, cmdline)
	}
	return rep.WriteText(w)
}
