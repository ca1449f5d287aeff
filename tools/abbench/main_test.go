package main

import (
	"bytes"
	"context"
	"math"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Two rounds of one revision's output, as runBench leaves them: a custom metric on one
// benchmark, ns/op only on another, and one that is missing from the second round.
const sample = `round: 0
goos: linux
goarch: amd64
pkg: github.com/xlb-dev/xlb/dataplane
BenchmarkProcess/dr/flows=1k-2         	  686110	      4906 ns/op	        76.66 cpu-ns/pkt	         0 hugepage-MiB	        76.65 ns/pkt	       0 B/op	       0 allocs/op
BenchmarkPrep-2                        	  617522	       390.8 ns/op	       0 B/op	       0 allocs/op
BenchmarkGone-2                        	  100	       10 ns/op	       0 B/op	       2 allocs/op
PASS
round: 1
goos: linux
BenchmarkProcess/dr/flows=1k-2         	  686110	      4000 ns/op	        62.50 cpu-ns/pkt	         0 hugepage-MiB	        62.00 ns/pkt	       0 B/op	       0 allocs/op
BenchmarkPrep-2                        	  617522	       410.2 ns/op	       0 B/op	       0 allocs/op
PASS
`

func TestParse(t *testing.T) {
	rr, err := parse([]byte(sample), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rr.order, ","); got != "Process/dr/flows=1k,Prep,Gone" {
		t.Errorf("order %s", got)
	}
	check := func(name, unit string, want ...float64) {
		t.Helper()
		got := rr.values[name]
		if rr.unit[name] != unit || len(got) != len(want) {
			t.Fatalf("%s: %v %s, want %v %s", name, got, rr.unit[name], want, unit)
		}
		for i := range want {
			if got[i] != want[i] && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
				t.Errorf("%s round %d: %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	check("Process/dr/flows=1k", "ns/pkt", 76.65, 62.00)
	check("Prep", "ns/op", 390.8, 410.2)
	check("Gone", "ns/op", 10)
	if rr.allocs["Gone"] != 2 || rr.allocs["Prep"] != 0 {
		t.Errorf("allocs %v", rr.allocs)
	}

	cpu, err := parse([]byte(sample), "cpu-ns/pkt")
	if err != nil {
		t.Fatal(err)
	}
	if v := cpu.values["Process/dr/flows=1k"]; len(v) != 2 || v[1] != 62.5 || len(cpu.order) != 1 {
		t.Errorf("-metric cpu-ns/pkt: %v (benchmarks %v)", v, cpu.order)
	}

	// A round missing in the middle stays a hole, so that per-round ratios pair the right runs.
	gap := strings.Replace(sample, "BenchmarkPrep-2                        \t  617522\t       390.8 ns/op", "BenchmarkOther-2 1 5 ns/op", 1)
	rg, err := parse([]byte(gap), "")
	if err != nil {
		t.Fatal(err)
	}
	if v := rg.values["Prep"]; len(v) != 2 || !math.IsNaN(v[0]) || v[1] != 410.2 {
		t.Errorf("a benchmark missing from round 0: %v", v)
	}

	if _, err := parse([]byte("BenchmarkX-2 1 5 ns/op\n"), ""); err == nil {
		t.Error("a result outside any round was accepted")
	}
}

func TestStatsAndRatios(t *testing.T) {
	nan := math.NaN()
	med, lo, hi, n := stats([]float64{5, nan, 1, 3, 9})
	if med != 4 || lo != 1 || hi != 9 || n != 4 {
		t.Errorf("stats: %v %v %v %d", med, lo, hi, n)
	}
	if _, _, _, n := stats([]float64{nan}); n != 0 {
		t.Error("stats of no value")
	}
	r := roundRatios([]float64{10, 20, nan, 40}, []float64{5, 30, 7})
	if len(r) != 2 || r[0] != 0.5 || r[1] != 1.5 {
		t.Errorf("round ratios %v", r)
	}
	// Seven rounds apart from each other tell the revisions apart; the same rounds do not.
	a := []float64{60, 61, 62, 63, 64, 65, 66}
	b := []float64{50, 51, 52, 53, 54, 55, 56}
	if p, differ := pValue(a, b); !differ || p >= 0.05 {
		t.Errorf("disjoint rounds: p %v", p)
	}
	if p, differ := pValue(a, a); differ {
		t.Errorf("the same rounds: p %v", p)
	}
}

func TestReport(t *testing.T) {
	before, _ := parse([]byte(sample), "")
	after, _ := parse([]byte(strings.NewReplacer("76.65 ns/pkt", "38.00 ns/pkt", "62.00 ns/pkt", "31.00 ns/pkt").Replace(sample)), "")
	var out bytes.Buffer
	report(&out, []string{"old", "new"}, []revResults{before, after})
	s := out.String()
	for _, want := range []string{
		"new/old: medians, minimums, rounds, p",
		"Process/dr/flows=1k  ns/pkt  69.3 [62.0-76.7]",
		"34.5 [31.0-38.0]",
		"0.50x, 0.50x, 0.50x, p=",
		"allocates: BenchmarkGone at old: 2 allocs/op",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, bad := range [][]string{
		{"-bench", "X", "HEAD"},
		{"-pkg", "./encap", "HEAD"},
		{"-pkg", "./encap", "-bench", "X"},
		{"-pkg", "./encap", "-bench", "(", "HEAD"},
		{"-pkg", "./encap", "-bench", "X", "-rounds", "0", "HEAD"},
		{"-pkg", "./encap", "-bench", "X", "-benchtime", "soon", "HEAD"},
	} {
		if _, err := parseOptions(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	o, err := parseOptions([]string{"-pkg", "./encap", "-bench", "Parse$", "-benchtime", "10x", "HEAD", "."}, &bytes.Buffer{})
	if err != nil || o.rounds != 7 || len(o.revs) != 2 {
		t.Errorf("%+v %v", o, err)
	}
}

// TestRunTwoRevisions builds ./encap at HEAD and as the working tree and runs two rounds of
// one benchmark: the whole command, worktree and all.
func TestRunTwoRevisions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two test binaries")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if _, err := git(".", "rev-parse", "--verify", "HEAD"); err != nil {
		t.Skipf("not in a git checkout with a commit: %v", err)
	}
	var out, errs bytes.Buffer
	err := run(t.Context(), []string{"-pkg", "./encap", "-bench", "^BenchmarkParse$", "-benchtime", "1000x", "-rounds", "2", "-out", t.TempDir(), "HEAD", "."}, &out, &errs)
	if err != nil {
		t.Fatalf("%v\n%s", err, errs.String())
	}
	s := out.String()
	if !regexp.MustCompile(`(?m)^Parse +ns/op +[0-9.]+ \[`).MatchString(s) || !strings.Contains(s, "./HEAD: medians, minimums, rounds, p") {
		t.Errorf("report:\n%s", s)
	}
	if trees, _ := git(".", "worktree", "list"); strings.Contains(trees, "abbench-trees-") {
		t.Errorf("worktree left behind:\n%s", trees)
	}
}

// TestRunCancelled: a cancelled run (Ctrl-C) stops with an error and still removes the
// worktrees it made.
func TestRunCancelled(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if _, err := git(".", "rev-parse", "--verify", "HEAD"); err != nil {
		t.Skipf("not in a git checkout with a commit: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errs bytes.Buffer
	if err := run(ctx, []string{"-pkg", "./encap", "-bench", "^BenchmarkParse$", "-out", t.TempDir(), "HEAD"}, &out, &errs); err == nil {
		t.Fatalf("a cancelled run succeeded:\n%s", out.String())
	}
	if trees, _ := git(".", "worktree", "list"); strings.Contains(trees, "abbench-trees-") {
		t.Errorf("worktree left behind:\n%s", trees)
	}
}
