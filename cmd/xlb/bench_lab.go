package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/bench"
)

// cmdBenchLab runs `xlb bench lab`: the RFC 2544 kit on three namespaces standing for a
// generator host, an LB host running this binary's `xlb run`, and a backend host with the sink.
func cmdBenchLab(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench lab", stderr)
	sizes := fs.String("size", "64", "comma-separated frame sizes to search, FCS included")
	trial := fs.Duration("trial", time.Second, "duration of each trial")
	loss := fs.Float64("loss", 0.001, "the highest loss of a passing trial, in percent")
	fractions := fs.String("fractions", "0.1,0.5,0.9", "fractions of the throughput to measure latency at")
	markdown := fs.Bool("markdown", false, "write the report as Markdown")
	out := fs.String("out", "", "write the report to FILE")
	plotDir := fs.String("plot", "", "also draw the report's charts as SVG files into DIR")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xlb bench lab [--size LIST] [--trial D] [--loss PCT] [--fractions LIST] [--markdown] [--out FILE] [--plot DIR]\n\n"+
			"Builds three network namespaces joined by veth (generator host, LB host, backend host), measures\n"+
			"the generator's own rate against the in-kernel XDP limit on the first link, then runs this\n"+
			"binary's `xlb run` on the LB host and the RFC 2544 throughput search through it to the sink on\n"+
			"the backend host, and writes the report. Needs root; removes everything it made.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *trial <= 0 || *loss < 0 || *loss >= 100 {
		return fmt.Errorf("%w: bench lab takes flags only, a positive --trial and --loss 0..100", errUsage)
	}
	o := bench.LabOptions{Search: bench.SearchConfig{Trial: *trial, Loss: *loss / 100,
		Progress: func(s string) { fmt.Fprintln(stderr, s) }}}
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < bench.MinFrameSize || n > bench.MaxFrameSize {
			return fmt.Errorf("%w: --size %q (want %d..%d)", errUsage, f, bench.MinFrameSize, bench.MaxFrameSize)
		}
		o.Search.Sizes = append(o.Search.Sizes, n)
	}
	o.Search.Fractions = []float64{}
	for _, f := range strings.Split(*fractions, ",") {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v > 0 && v <= 1) {
			return fmt.Errorf("%w: --fractions %q (want numbers in (0, 1])", errUsage, *fractions)
		}
		o.Search.Fractions = append(o.Search.Fractions, v)
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
	ctx, stop := signalContext()
	defer stop()
	rep, err := bench.RunLab(ctx, o)
	if err != nil {
		return err
	}
	return emitReport(rep, w, *markdown, *plotDir, "xlb bench lab "+strings.Join(args, " "), stderr)
}
