package preflight

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/sched"
)

func TestParseKernel(t *testing.T) {
	for rel, want := range map[string][2]int{
		"6.18.44-fc-v1045": {6, 18}, "5.10.0-28-amd64": {5, 10}, "4.19": {4, 19}, "6.1rc3": {6, 1},
	} {
		if got, err := parseKernel(rel); err != nil || got != want {
			t.Errorf("parseKernel(%q) = %v, %v; want %v", rel, got, err, want)
		}
	}
	for _, rel := range []string{"", "6", "x.y", ".18", "99999.1"} {
		if _, err := parseKernel(rel); !errors.Is(err, errKernelVersion) {
			t.Errorf("parseKernel(%q): %v, want errKernelVersion", rel, err)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	got, err := parseCPUList("0-2,5,7-8")
	if want := []int{0, 1, 2, 5, 7, 8}; err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	if got, err := parseCPUList(""); err != nil || got != nil {
		t.Errorf("empty list: %v, %v", got, err)
	}
	for _, s := range []string{"a", "3-1", "1,,2", "-1", "1-"} {
		if _, err := parseCPUList(s); !errors.Is(err, errCPUList) {
			t.Errorf("parseCPUList(%q): %v, want errCPUList", s, err)
		}
	}
}

func TestIRQsOf(t *testing.T) {
	const interrupts = `           CPU0       CPU1
  24:          0          0  PCI-MSI 1048576-edge      eth0
  25:       1234          0  PCI-MSI 1048577-edge      eth0-TxRx-0
  26:          0       5678  PCI-MSI 1048578-edge      eth0-TxRx-1
  27:          0          0  PCI-MSI 1048579-edge      eth10-TxRx-0
 NMI:          0          0   Non-maskable interrupts
`
	if got := irqsOf(interrupts, "eth0"); !slices.Equal(got, []string{"24", "25", "26"}) {
		t.Errorf("irqs of eth0: %v", got)
	}
}

// fakeTree writes files (path -> content) under a temporary directory.
func fakeTree(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for p, c := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGovernorAndIsolation(t *testing.T) {
	sys := fakeTree(t, map[string]string{
		"devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave\n",
		"devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance\n",
		"devices/system/cpu/isolated":                      "1\n",
	})
	o := Options{Sys: sys, Dataplane: dataplane.Config{Interfaces: []dataplane.InterfaceConfig{{Name: "eth0", Cores: []int{0, 1}}}}}
	o.defaults()
	h := newHost(&o)
	g := h.governor()
	if g.Status != Warn || !strings.Contains(g.Detail, "cpu0 powersave") || strings.Contains(g.Detail, "cpu1") || g.Fix == "" {
		t.Errorf("governor: %v", g)
	}
	iso := h.isolation()
	if iso.Status != Warn || !strings.Contains(iso.Detail, "CPUs 0 of the workers") || !strings.Contains(iso.Fix, "isolcpus=0") {
		t.Errorf("isolation: %v", iso)
	}
	o.Dataplane.Interfaces[0].Cores = []int{1}
	h = newHost(&o)
	if g, iso := h.governor(), h.isolation(); g.Status != Pass || iso.Status != Pass {
		t.Errorf("cpu1 alone: %v / %v", g, iso)
	}
	o.Dataplane.Interfaces[0].Cores = nil
	if iso := newHost(&o).isolation(); iso.Status != Warn || !strings.Contains(iso.Detail, "no cores:") {
		t.Errorf("no cores: %v", iso)
	}
}

// TestVector: the check passes where the table's search runs in AVX2 and, on amd64, warns
// with a fix where it is scalar.
func TestVector(t *testing.T) {
	var h host
	defer func(f func() string) { evictionSearch = f }(evictionSearch)
	evictionSearch = func() string { return "avx2" }
	if r := h.vector(); r.Status != Pass || !strings.Contains(r.Detail, "AVX2") {
		t.Errorf("avx2: %v", r)
	}
	evictionSearch = func() string { return "scalar" }
	r := h.vector()
	switch runtime.GOARCH {
	case "amd64":
		if r.Status != Warn || !strings.Contains(r.Detail, "no AVX2") || r.Fix == "" {
			t.Errorf("amd64 without AVX2: %v", r)
		}
	default:
		if r.Status != Pass {
			t.Errorf("%s: %v", runtime.GOARCH, r)
		}
	}
	if got, want := sched.EvictionSearch(), map[bool]string{true: "avx2", false: "scalar"}[cpu.X86.HasAVX2 && runtime.GOARCH == "amd64"]; got != want {
		t.Errorf("sched.EvictionSearch() = %q on this CPU, want %q", got, want)
	}
}

func TestReportOutput(t *testing.T) {
	r := Report{
		{Check: "kernel", Detail: "6.18"},
		{Check: "eth0 zero-copy", Status: Warn, Detail: "copy mode only", Fix: "another NIC"},
	}
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	want := "pass  kernel                 6.18\n" +
		"warn  eth0 zero-copy         copy mode only; fix: another NIC\n" +
		"fit: 1 pass, 1 warn, 0 fail\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := (Result{Check: "x", Status: Fail, Detail: "a\nb"}).String(); strings.Contains(got, "\n") {
		t.Errorf("a result must stay on one line: %q", got)
	}
	r = append(r, Result{Check: "memlock", Status: Fail})
	if r.Fit() || r.Worst() != Fail {
		t.Error("a fail must make the report unfit")
	}
}

func TestReportJSON(t *testing.T) {
	r := Report{{Check: "kernel", Detail: "6.18"}, {Check: "memlock", Status: Fail, Detail: "8 MiB", Fix: "LimitMEMLOCK=infinity"}}
	b, err := json.Marshal(r)
	want := `{"fit":false,"checks":[{"check":"kernel","status":"pass","detail":"6.18"},` +
		`{"check":"memlock","status":"fail","detail":"8 MiB","fix":"LimitMEMLOCK=infinity"}]}`
	if err != nil || string(b) != want {
		t.Errorf("got %s, %v\nwant %s", b, err, want)
	}
}

func TestDRBackendNotVisible(t *testing.T) {
	o := Options{Netns: filepath.Join(t.TempDir(), "*"),
		DRBackends: []DRBackend{{Addr: netip.MustParseAddr("198.19.255.1"), VIPs: []netip.Addr{netip.MustParseAddr("198.19.255.100")}}}}
	o.defaults()
	r := drChecks(&o)
	if len(r) != 1 || r[0].Status != Warn || !strings.Contains(r[0].Detail, "198.19.255.1: not on this host") {
		t.Errorf("got %v", r)
	}
}

func FuzzParseKernel(f *testing.F) {
	for _, s := range []string{"6.18.44-fc-v1045", "5.4", "", "1.2.3.4", "9999999999999999999.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseKernel(s)
		if err == nil && (v[0] < 0 || v[1] < 0 || v[0] > 1000 || v[1] > 1000) {
			t.Errorf("parseKernel(%q) = %v", s, v)
		}
	})
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0-3,8", "", "1", "5-2", "0-65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := parseCPUList(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(cpus) && !strings.Contains(s, ",") {
			t.Errorf("parseCPUList(%q) = %v: a single range must come out sorted", s, cpus)
		}
		for _, c := range cpus {
			if c < 0 || c > 1<<16 {
				t.Errorf("parseCPUList(%q): cpu %d out of range", s, c)
			}
		}
	})
}

func FuzzIRQsOf(f *testing.F) {
	f.Add("  25:   1  2  PCI-MSI 1-edge  eth0-TxRx-0\n", "eth0")
	f.Add("NMI: 0 0 x\n", "eth0")
	f.Fuzz(func(t *testing.T, text, ifname string) {
		for _, irq := range irqsOf(text, ifname) {
			if irq == "" || strings.Trim(irq, "0123456789") != "" {
				t.Errorf("irq %q is not a number", irq)
			}
		}
	})
}

func TestIRQAffinity(t *testing.T) {
	proc := fakeTree(t, map[string]string{
		"interrupts": "           CPU0       CPU1\n" +
			"  40:  1  0  PCI-MSI 1-edge  ens1-TxRx-0\n" +
			"  41:  0  1  PCI-MSI 2-edge  ens1-TxRx-1\n",
		"irq/40/smp_affinity_list": "0\n",
		"irq/40/affinity_hint":     "00000001\n",
		"irq/41/smp_affinity_list": "0-1\n",
		"irq/41/affinity_hint":     "00000000\n",
	})
	o := Options{Proc: proc}
	o.defaults()
	h := newHost(&o)
	r := h.irqs("ens1 irqs", &ifState{ic: dataplane.InterfaceConfig{Name: "ens1"}})
	if r.Status != Warn || !strings.Contains(r.Detail, "2 IRQs, 1 with a driver affinity hint") ||
		!strings.Contains(r.Detail, "IRQs 41 may run") || r.Fix == "" {
		t.Errorf("irqs: %v", r)
	}
	if err := os.WriteFile(filepath.Join(proc, "irq/41/smp_affinity_list"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := h.irqs("ens1 irqs", &ifState{ic: dataplane.InterfaceConfig{Name: "ens1"}}); r.Status != Pass {
		t.Errorf("each IRQ on one CPU: %v", r)
	}
	if r := h.irqs("eth9 irqs", &ifState{ic: dataplane.InterfaceConfig{Name: "eth9"}}); r.Status != Warn {
		t.Errorf("a physical interface without IRQs found: %v", r)
	}
}

func TestMemlock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lowering and restoring RLIMIT_MEMLOCK's hard limit needs root")
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim) })
	low := unix.Rlimit{Cur: 8 << 20, Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
		t.Fatal(err)
	}
	// A process without CAP_IPC_LOCK (a fake status) and 2 workers x 16 MiB UMEMs.
	o := Options{Proc: fakeTree(t, map[string]string{"self/status": "Name:\txlb\nCapEff:\t0000000000003000\n"})}
	o.defaults()
	r := newHost(&o).memlock(2, 1)
	if r.Status != Fail || !strings.Contains(r.Detail, "limit 8 MiB < 32 MiB for 2 UMEMs of 16 MiB") || !strings.Contains(r.Fix, "LimitMEMLOCK=infinity") {
		t.Errorf("memlock: %v", r)
	}
	if r := newHost(&o).memlock(0, 0); r.Status != Fail {
		t.Errorf("one UMEM of 16 MiB over 8 MiB: %v", r)
	}
	// With CAP_IPC_LOCK (bit 14) the limit does not apply to UMEMs.
	o.Proc = fakeTree(t, map[string]string{"self/status": "CapEff:\t0000000000007000\n"})
	if r := newHost(&o).memlock(2, 1); r.Status != Pass || !strings.Contains(r.Detail, "CAP_IPC_LOCK") {
		t.Errorf("memlock with CAP_IPC_LOCK: %v", r)
	}
}
