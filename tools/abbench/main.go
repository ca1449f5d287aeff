// Command abbench compares the benchmarks of one package at several git revisions in one
// sitting, the way BENCHMARKS.md's before/after figures are taken: it builds the package's
// test binary at every revision (`go test -c`, each in a throwaway git worktree; "." is the
// working tree as it is), then runs the binaries one after the other, round after round,
// starting each round with a different one, so that a machine shared with other work slows
// all of them alike. From the repository's root:
//
//	go run ./tools/abbench -pkg ./dataplane -bench 'Process$' -rounds 9 30a2d69 8066c4d .
//
// It prints, per benchmark and revision, the median of the rounds with their minimum and
// maximum (the minimum is the round the other tenants disturbed least), and for every
// revision after the first: the ratio of its median to the first's, the ratio of the
// minimums, the median of the per-round ratios (each round's two runs were next to each
// other in time), and the Mann-Whitney U test's p-value (golang.org/x/perf/benchmath; "~"
// when p >= 0.05: the rounds do not tell the two apart). The metric is ns/pkt where a benchmark reports it,
// else ns/op (-metric chooses another unit). The raw outputs stay in -out, one file per
// revision, for benchstat.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

func main() {
	// Ctrl-C stops the running binary and still removes the worktrees.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "abbench: %v\n", err)
		os.Exit(1)
	}
}

// options are the command's flags and arguments.
type options struct {
	pkg, bench, benchtime, metric, out string
	rounds                             int
	revs                               []string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("abbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.pkg, "pkg", "", "the package whose benchmarks to run, as a path from the repository's root (./dataplane)")
	fs.StringVar(&o.bench, "bench", "", "the benchmarks to run (go test -bench's regular expression)")
	fs.StringVar(&o.benchtime, "benchtime", "300ms", "go test -benchtime for each run")
	fs.StringVar(&o.metric, "metric", "", "the unit to compare (default: ns/pkt where reported, else ns/op)")
	fs.StringVar(&o.out, "out", "", "directory for the raw outputs (default: a new temporary directory)")
	fs.IntVar(&o.rounds, "rounds", 7, "how many times each binary runs")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: abbench -pkg ./dataplane -bench REGEXP [-rounds N] [-benchtime D] REV [REV...]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.revs = fs.Args()
	switch {
	case o.pkg == "" || o.bench == "":
		return o, errors.New("-pkg and -bench are required")
	case len(o.revs) == 0:
		return o, errors.New("name at least one revision (\".\" is the working tree)")
	case o.rounds < 1:
		return o, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	if _, err := regexp.Compile(o.bench); err != nil {
		return o, fmt.Errorf("-bench: %w", err)
	}
	if _, err := time.ParseDuration(o.benchtime); err != nil && !strings.HasSuffix(o.benchtime, "x") {
		return o, fmt.Errorf("-benchtime %q: a duration or a count such as 100x", o.benchtime)
	}
	return o, nil
}

// build is one revision's test binary and the package directory it runs in (tests may read
// files relative to it).
type build struct {
	rev, bin, dir string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	root, err := git("", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("not in a git checkout: %w", err)
	}
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "abbench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "abbench-trees-")
	if err != nil {
		return err
	}
	var trees []string
	defer func() {
		for _, t := range trees {
			if _, err := git(root, "worktree", "remove", "--force", t); err != nil {
				fmt.Fprintf(stderr, "abbench: remove worktree %s: %v\n", t, err)
			}
		}
		os.RemoveAll(work)
	}()
	builds := make([]build, len(o.revs))
	for i, rev := range o.revs {
		tree := root
		if rev != "." {
			tree = filepath.Join(work, fmt.Sprintf("rev%d", i))
			if _, err := git(root, "worktree", "add", "--detach", tree, rev); err != nil {
				return fmt.Errorf("revision %s: %w", rev, err)
			}
			trees = append(trees, tree)
		}
		b := build{rev: rev, bin: filepath.Join(o.out, fmt.Sprintf("%d-%s.test", i, safeName(rev))), dir: filepath.Join(tree, o.pkg)}
		fmt.Fprintf(stderr, "building %s at %s\n", o.pkg, rev)
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", b.bin, ".")
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go test -c at %s: %w\n%s", rev, err, out)
		}
		builds[i] = b
	}
	runs := make([][]byte, len(builds)) // each revision's outputs, round after round
	for r := range o.rounds {
		for k := range builds {
			i := (r + k) % len(builds) // each round starts with the next binary
			b := builds[i]
			fmt.Fprintf(stderr, "round %d/%d: %s\n", r+1, o.rounds, b.rev)
			out, err := runBench(ctx, b, o, r)
			if err != nil {
				return err
			}
			runs[i] = append(runs[i], out...)
		}
	}
	rs := make([]revResults, len(builds))
	for i, b := range builds {
		if err := os.WriteFile(strings.TrimSuffix(b.bin, ".test")+".txt", runs[i], 0o644); err != nil {
			return err
		}
		if rs[i], err = parse(runs[i], o.metric); err != nil {
			return fmt.Errorf("output of %s: %w", b.rev, err)
		}
	}
	report(stdout, o.revs, rs)
	fmt.Fprintf(stdout, "raw outputs: %s\n", o.out)
	return nil
}

// runBench runs b once, marking its output with the round (a benchfmt configuration line).
func runBench(ctx context.Context, b build, o options, round int) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.bin, "-test.run", "^$", "-test.bench", o.bench, "-test.benchtime", o.benchtime, "-test.benchmem")
	cmd.Dir = b.dir
	var out bytes.Buffer
	fmt.Fprintf(&out, "round: %d\n", round)
	cmd.Stdout = &out
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s, round %d: %w\n%s%s", b.rev, round+1, err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes(), nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

func safeName(rev string) string {
	if rev == "." {
		return "worktree"
	}
	return regexp.MustCompile(`[^A-Za-z0-9._-]`).ReplaceAllString(rev, "_")
}

// revResults are one revision's measurements: per benchmark (the name without "Benchmark"
// and without its -N GOMAXPROCS suffix), the metric per round (NaN for a round without it), and the most
// allocations per operation any run reported (-1: none reported).
type revResults struct {
	order  []string
	values map[string][]float64
	unit   map[string]string
	allocs map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench output in which "round: N" lines mark the rounds, and keeps
// metric (or ns/pkt, else ns/op, when metric is empty) of every benchmark line.
func parse(out []byte, metric string) (revResults, error) {
	rr := revResults{values: map[string][]float64{}, unit: map[string]string{}, allocs: map[string]float64{}}
	rd := benchfmt.NewReader(bytes.NewReader(out), "output")
	for rd.Scan() {
		res, ok := rd.Result().(*benchfmt.Result)
		if !ok {
			if e, isErr := rd.Result().(*benchfmt.SyntaxError); isErr {
				return rr, e
			}
			continue
		}
		var round int
		if _, err := fmt.Sscan(res.GetConfig("round"), &round); err != nil {
			return rr, fmt.Errorf("a result outside a round: %s", res.Name)
		}
		name := procsSuffix.ReplaceAllString(res.Name.String(), "")
		unit := metric
		if unit == "" {
			unit = "ns/op"
			if _, ok := value(res, "ns/pkt"); ok {
				unit = "ns/pkt"
			}
		}
		v, ok := value(res, unit)
		if !ok {
			continue
		}
		vs, seen := rr.values[name]
		if !seen {
			rr.order = append(rr.order, name)
			rr.unit[name] = unit
			rr.allocs[name] = -1
		}
		for len(vs) < round {
			vs = append(vs, math.NaN())
		}
		if len(vs) == round {
			vs = append(vs, v)
		} else {
			vs[round] = v // a repeated line in one round: keep the last
		}
		rr.values[name] = vs
		if a, ok := value(res, "allocs/op"); ok && a > rr.allocs[name] {
			rr.allocs[name] = a
		}
	}
	return rr, rd.Err()
}

// value returns res's measurement in unit as the benchmark printed it (benchfmt turns
// ns/op into sec/op, keeping the original).
func value(res *benchfmt.Result, unit string) (float64, bool) {
	for _, v := range res.Values {
		if v.OrigUnit == unit {
			return v.OrigValue, true
		}
		if v.OrigUnit == "" && v.Unit == unit { // a unit benchfmt keeps as it is
			return v.Value, true
		}
	}
	return 0, false
}

// stats are the median, minimum and maximum of the rounds' values that are not NaN.
func stats(vs []float64) (med, lo, hi float64, n int) {
	var s []float64
	for _, v := range vs {
		if !math.IsNaN(v) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return math.NaN(), math.NaN(), math.NaN(), 0
	}
	sort.Float64s(s)
	return median(s), s[0], s[len(s)-1], len(s)
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// roundRatios returns b/a for every round both have.
func roundRatios(a, b []float64) []float64 {
	var r []float64
	for i := range min(len(a), len(b)) {
		if !math.IsNaN(a[i]) && !math.IsNaN(b[i]) && a[i] != 0 {
			r = append(r, b[i]/a[i])
		}
	}
	return r
}

// pValue is the Mann-Whitney U test's p-value for a and b, and whether the rounds tell them
// apart at alpha 0.05.
func pValue(a, b []float64) (float64, bool) {
	clean := func(vs []float64) []float64 {
		return slices.DeleteFunc(slices.Clone(vs), math.IsNaN)
	}
	sa := benchmath.NewSample(clean(a), &benchmath.DefaultThresholds)
	sb := benchmath.NewSample(clean(b), &benchmath.DefaultThresholds)
	c := benchmath.AssumeNothing.Compare(sa, sb)
	return c.P, c.P < c.Alpha
}

// report prints one row per benchmark of the first revision (then any only the others ran).
func report(w io.Writer, revs []string, rs []revResults) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"benchmark", "unit"}
	for _, r := range revs {
		head = append(head, r+": median [min-max]")
	}
	for _, r := range revs[1:] {
		head = append(head, r+"/"+revs[0]+": medians, minimums, rounds, p")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	var names []string
	seen := map[string]bool{}
	for _, r := range rs {
		for _, n := range r.order {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	var allocWarn []string
	for _, n := range names {
		row := []string{n, ""}
		meds, mins := make([]float64, len(rs)), make([]float64, len(rs))
		for i, r := range rs {
			if row[1] == "" {
				row[1] = r.unit[n]
			}
			med, lo, hi, k := stats(r.values[n])
			meds[i], mins[i] = med, lo
			if k == 0 {
				row = append(row, "-")
				continue
			}
			row = append(row, fmt.Sprintf("%s [%s-%s]", num(med), num(lo), num(hi)))
			if r.allocs[n] > 0 {
				allocWarn = append(allocWarn, fmt.Sprintf("Benchmark%s at %s: %.0f allocs/op", n, revs[i], r.allocs[n]))
			}
		}
		for i := 1; i < len(rs); i++ {
			a, b := rs[0].values[n], rs[i].values[n]
			rat := roundRatios(a, b)
			if len(rat) == 0 || math.IsNaN(meds[0]) || math.IsNaN(meds[i]) {
				row = append(row, "-")
				continue
			}
			sort.Float64s(rat)
			p, differ := pValue(a, b)
			verdict := fmt.Sprintf("p=%.3f", p)
			if !differ {
				verdict += " ~"
			}
			row = append(row, fmt.Sprintf("%.2fx, %.2fx, %.2fx, %s", meds[i]/meds[0], mins[i]/mins[0], median(rat), verdict))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	for _, s := range allocWarn {
		fmt.Fprintf(w, "allocates: %s\n", s)
	}
}

// num formats a measurement with three significant digits or one decimal, whichever is more.
func num(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
