package bench

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/ipvs"
)

// The IPVS baseline runs only where the kernel has ip_vs and ipvsadm is installed; the
// detection says which is missing.
func TestIPVSDetection(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "ip_vs")
	found := func(string) (string, error) { return "/usr/sbin/ipvsadm", nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	noModule := func() error { return errors.New("modprobe: FATAL: Module ip_vs not found") }
	load := func() error { return os.WriteFile(proc, nil, 0o600) }

	if err := (ipvsProbe{proc, noModule, found}).check(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no ip_vs") {
		t.Errorf("no module: %v", err)
	}
	if err := (ipvsProbe{proc, load, found}).check(); err != nil {
		t.Errorf("module loaded by modprobe: %v", err)
	}
	if err := (ipvsProbe{proc, noModule, missing}).check(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "ipvsadm not installed") {
		t.Errorf("no ipvsadm: %v", err)
	}
	if err := (ipvsProbe{proc, noModule, found}).check(); err != nil {
		t.Errorf("present: %v", err)
	}

	// This host, for real: either both are there or the error says what is not.
	if err := IPVS(); err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("IPVS() = %v, not ErrUnavailable", err)
		}
		t.Logf("IPVS here: %v", err)
	} else if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Errorf("IPVS() found ip_vs, but %v", err)
	}
}

// Without ip_vs the IPVS variants are not listed; with it they run in every forward round.
func TestIPVSVariantsListedOnlyWhenAvailable(t *testing.T) {
	count := func(o Options) (n int) {
		o.defaults()
		for _, c := range o.cases() {
			if c.Variant == IPVSDR || c.Variant == IPVSTunnel {
				n++
			}
		}
		return n
	}
	o := Options{Groups: []string{GroupForward, GroupLatency}, Sizes: []int{64, 1500}}
	if n := count(o); n != 0 {
		t.Errorf("without ip_vs: %d IPVS cases", n)
	}
	o.ipvs = true
	if n := count(o); n != 6 {
		t.Errorf("with ip_vs: %d IPVS cases, want 2 variants x (2 sizes + latency)", n)
	}
}

// The IPVS runner loads xlb's own export of the bench service: valid ipvsadm-restore input.
func TestIPVSRules(t *testing.T) {
	for v, want := range map[string]string{IPVSDR: " -g -w 1", IPVSTunnel: " -i -w 1"} {
		r, err := ipvsRules(v, UDP)
		if err != nil {
			t.Fatal(err)
		}
		if err := ipvs.Check(strings.NewReader(r)); err != nil {
			t.Errorf("%s: %v\n%s", v, err, r)
		}
		if !strings.HasPrefix(r, "-A -u 198.18.0.100:9000 -s mh") || strings.Count(r, want) != numBackends {
			t.Errorf("%s:\n%s", v, r)
		}
	}
}
