package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/internal/testnet"
)

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "forward,bogus"},
		{"--size", "63"},
		{"--size", "64,x"},
		{"--profile", "block"},
		{"--cpus", "1"},
		{"--duration", "-1s"},
		{"extra"},
	} {
		code, _, errs := runXLB(append([]string{"bench"}, args...)...)
		if code != 2 || !strings.Contains(errs, "usage") {
			t.Errorf("bench %v: exit %d, %q", args, code, errs)
		}
	}
	if code, _, _ := runXLB("bench", "-h"); code != 0 {
		t.Errorf("bench -h: exit %d", code)
	}
}

// TestBenchCommand runs a tiny `xlb bench` (root, namespaces, XDP) into a Markdown file.
func TestBenchCommand(t *testing.T) {
	testnet.Skip(t)
	benchPrioritize = func() {}
	out := filepath.Join(t.TempDir(), "bench.md")
	code, _, errs := runXLB("bench", "--scenario", "latency", "--duration", "100ms", "--rounds", "1",
		"--latency-rate", "10000", "--markdown", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "[  0/") || !strings.Contains(errs, "done") {
		t.Errorf("no progress on stderr: %q", errs)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{"| scenario |", "| latency | xlb-dr |", "| latency | nft-dnat |",
		"| latency | xdp-tx |", "| latency | xlb-tunnel |", "not available", "Machine:", "Placement:"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
