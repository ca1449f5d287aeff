package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestDemo runs the README's first command, `xlb demo`, as a real binary
// (root only; skips otherwise). The demo checks its own results and exits
// non-zero when the load balancer misbehaves; this test also reads its
// output for the steps an operator is shown.
func TestDemo(t *testing.T) {
	testnet.Skip(t)
	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "demo", "--requests", "40").CombinedOutput()
	if err != nil {
		t.Fatalf("xlb demo: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`40 answered, 0 failed: b0=\d+ b1=\d+ b2=\d+`),
		regexp.MustCompile(`b1 is out after \d`),
		regexp.MustCompile(`40 answered, 0 failed: b0=\d+ b2=\d+\n`),
		regexp.MustCompile(`b1 is back after \d`),
		regexp.MustCompile(`xlb_worker_tx_packets_total\{[^}]*\} [1-9]`),
	} {
		if !want.MatchString(s) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "done") != 1 {
		t.Errorf("demo did not finish once:\n%s", s)
	}
}
