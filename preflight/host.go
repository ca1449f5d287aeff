package preflight

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/internal/caps"
	"github.com/xlb-dev/xlb/sched"
)

// host is the state the checks share.
type host struct {
	o       *Options
	release string
	version [2]int // major, minor; zero when unknown
	cpus    []int  // the CPUs this process may run on
	cores   []int  // the workers' CPUs: configured, or cpus
	probes  []dataplane.ProbeResult
}

func newHost(o *Options) *host {
	h := &host{o: o}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.release = unix.ByteSliceToString(u.Release[:])
		h.version, _ = parseKernel(h.release)
	}
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil {
		for i := range len(set) * 64 {
			if set.IsSet(i) {
				h.cpus = append(h.cpus, i)
			}
		}
	}
	for _, ic := range o.Dataplane.Interfaces {
		if len(ic.Cores) > 0 {
			h.cores = slices.Clone(ic.Cores)
			break
		}
	}
	return h
}

// workerCores is the configured cores, or every CPU the process may use.
func (h *host) workerCores() []int {
	if len(h.cores) > 0 {
		return h.cores
	}
	return h.cpus
}

// errKernelVersion: a kernel release that does not start with major.minor.
var errKernelVersion = errors.New("kernel release without a major.minor version")

// parseKernel reads major and minor from a kernel release ("6.18.0-1-amd64").
func parseKernel(rel string) ([2]int, error) {
	var v [2]int
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return v, fmt.Errorf("%w: %q", errKernelVersion, rel)
	}
	for i := range 2 {
		digits := parts[i]
		if end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
			digits = digits[:end]
		}
		n, err := strconv.Atoi(digits)
		if err != nil || n > 1000 {
			return [2]int{}, fmt.Errorf("%w: %q", errKernelVersion, rel)
		}
		v[i] = n
	}
	return v, nil
}

func (h *host) atLeast(major, minor int) bool {
	return h.version[0] > major || h.version[0] == major && h.version[1] >= minor
}

func (h *host) kernel() Result {
	r := Result{Check: "kernel"}
	switch {
	case h.version == [2]int{}:
		r.Status, r.Detail = Warn, fmt.Sprintf("release %q: version unknown", h.release)
		r.Fix = "run a kernel >= 5.10"
	case h.atLeast(5, 10):
		r.Detail = fmt.Sprintf("%s (>= 5.10: AF_XDP with need_wakeup, XDP through bpf_link)", h.release)
	case h.atLeast(5, 4):
		r.Status, r.Detail = Warn, fmt.Sprintf("%s: older than 5.10, the oldest xlb is tested on", h.release)
		r.Fix = "run a kernel >= 5.10"
	default:
		r.Status, r.Detail = Fail, fmt.Sprintf("%s: AF_XDP need_wakeup needs 5.4, XDP bpf_links 5.9", h.release)
		r.Fix = "run a kernel >= 5.10"
	}
	return r
}

// features checks AF_XDP, need_wakeup and bpf_link: by the interfaces'
// probes where there were any, else by creating a socket and by the version.
func (h *host) features() Report {
	af := Result{Check: "af_xdp", Detail: "AF_XDP sockets can be created"}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	switch {
	case err == nil:
		unix.Close(fd)
	case errors.Is(err, unix.EAFNOSUPPORT):
		af.Status, af.Detail = Fail, "the kernel has no AF_XDP sockets"
		af.Fix = "a kernel built with CONFIG_XDP_SOCKETS=y"
	case errors.Is(err, unix.EPERM):
		af.Status, af.Detail = Fail, "socket(AF_XDP): operation not permitted"
		af.Fix = "run as root or with CAP_NET_RAW (xlb run needs it for its AF_XDP sockets)"
	default:
		af.Status, af.Detail = Fail, fmt.Sprintf("socket(AF_XDP): %v", err)
		af.Fix = "a kernel built with CONFIG_XDP_SOCKETS=y"
	}
	wake := Result{Check: "need_wakeup"}
	link := Result{Check: "bpf_link"}
	var bound, attached, noLink bool
	for _, p := range h.probes {
		bound = bound || p.NeedWakeup
		attached = attached || p.Attached
		noLink = noLink || errors.Is(p.Native, dataplane.ErrNoBPFLink) || errors.Is(p.Generic, dataplane.ErrNoBPFLink)
	}
	switch {
	case bound:
		wake.Detail = "an AF_XDP bind with XDP_USE_NEED_WAKEUP worked"
	case h.atLeast(5, 4):
		wake.Detail = "kernel >= 5.4 (no bind was tried)"
	default:
		wake.Status, wake.Detail, wake.Fix = Fail, "kernel older than 5.4", "run a kernel >= 5.10"
	}
	switch {
	case attached:
		link.Detail = "xlb's XDP program attached through a bpf_link"
	case noLink:
		link.Status, link.Detail, link.Fix = Fail, "the kernel cannot attach XDP through a bpf_link", "run a kernel >= 5.9"
	case h.atLeast(5, 9):
		link.Detail = "kernel >= 5.9 (no attach was tried)"
	default:
		link.Status, link.Detail, link.Fix = Fail, "kernel older than 5.9", "run a kernel >= 5.10"
	}
	return Report{af, wake, link}
}

// memlock checks RLIMIT_MEMLOCK against the UMEMs (the kernel charges
// registered UMEM pages to it unless the process has CAP_IPC_LOCK).
func (h *host) memlock(workers, ifaces int) Result {
	r := Result{Check: "memlock"}
	umem := uint64(h.o.Dataplane.FrameSize) * uint64(h.o.Dataplane.FrameCount)
	need := umem * uint64(max(workers, 1)) * uint64(max(ifaces, 1))
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		r.Status, r.Detail = Warn, fmt.Sprintf("getrlimit: %v", err)
		return r
	}
	switch {
	case lim.Cur == unix.RLIM_INFINITY:
		r.Detail = "unlimited"
	case h.capIPCLock():
		r.Detail = fmt.Sprintf("limit %s, but CAP_IPC_LOCK lifts it for UMEMs", mib(lim.Cur))
	case lim.Cur >= need:
		r.Detail = fmt.Sprintf("limit %s >= %s for %d UMEMs of %s", mib(lim.Cur), mib(need), need/umem, mib(umem))
	default:
		r.Status = Fail
		r.Detail = fmt.Sprintf("limit %s < %s for %d UMEMs of %s", mib(lim.Cur), mib(need), need/umem, mib(umem))
		r.Fix = "LimitMEMLOCK=infinity in the unit (or ulimit -l unlimited), or give xlb CAP_IPC_LOCK"
	}
	return r
}

// capabilities checks that the process has what xlb run needs (so run
// preflight as xlb run runs: the same user and capabilities).
func (h *host) capabilities(workers, ifaces int) Result {
	r := Result{Check: "capabilities"}
	have, err := caps.Effective()
	if err != nil {
		r.Status, r.Detail = Warn, err.Error()
		return r
	}
	need := uint64(h.o.Dataplane.FrameSize) * uint64(h.o.Dataplane.FrameCount) * uint64(max(workers, 1)) * uint64(max(ifaces, 1))
	missing := caps.Missing(have, need)
	if len(missing) == 0 {
		r.Detail = fmt.Sprintf("uid %d has what xlb run needs: %s", os.Getuid(), strings.Join(have.Names(), ", "))
		return r
	}
	var m []string
	for _, c := range missing {
		m = append(m, c.Name+" ("+c.Why+")")
	}
	r.Status = Fail
	r.Detail = fmt.Sprintf("uid %d lacks %s", os.Getuid(), strings.Join(m, "; "))
	r.Fix = "run as root, or grant them (AmbientCapabilities= in the systemd unit)"
	return r
}

func mib(n uint64) string { return fmt.Sprintf("%d MiB", n>>20) }

// capIPCLock reports whether the process has CAP_IPC_LOCK in its effective set.
func (h *host) capIPCLock() bool {
	b, err := os.ReadFile(filepath.Join(h.o.Proc, "self/status"))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_IPC_LOCK) != 0
		}
	}
	return false
}

// governor checks the frequency governor of the workers' CPUs.
func (h *host) governor() Result {
	r := Result{Check: "cpu governor"}
	var slow []string
	seen := 0
	for _, c := range h.workerCores() {
		b, err := os.ReadFile(filepath.Join(h.o.Sys, fmt.Sprintf("devices/system/cpu/cpu%d/cpufreq/scaling_governor", c)))
		if err != nil {
			continue
		}
		seen++
		if g := strings.TrimSpace(string(b)); g != "performance" {
			slow = append(slow, fmt.Sprintf("cpu%d %s", c, g))
		}
	}
	switch {
	case seen == 0:
		r.Detail = "no frequency scaling exposed for the workers' CPUs (a VM, or a fixed clock)"
	case len(slow) == 0:
		r.Detail = fmt.Sprintf("performance on the workers' %d CPUs", seen)
	default:
		r.Status, r.Detail = Warn, strings.Join(slow, ", ")+": the clock ramps up under load, adding latency"
		r.Fix = "cpupower frequency-set -g performance (on the workers' CPUs)"
	}
	return r
}

// evictionSearch is sched.EvictionSearch (a variable for the tests).
var evictionSearch = sched.EvictionSearch

// vector checks that the connection table's search for the oldest entry, on every new flow
// into a full table, has the CPU's vector instructions (AVX2 on amd64).
func (h *host) vector() Result {
	r := Result{Check: "cpu avx2"}
	switch {
	case evictionSearch() == "avx2":
		r.Detail = "the connection table's eviction search and idle sweep run in AVX2"
	case runtime.GOARCH != "amd64":
		r.Detail = runtime.GOARCH + ": the eviction search is scalar (its vector path is amd64's)"
	default:
		r.Status, r.Detail = Warn, "no AVX2: the connection table's eviction search is scalar, about 130 instructions more on a new flow into a full table (about 8% of its time)"
		r.Fix = "an x86-64-v3 CPU (Intel Haswell, AMD Zen or later), or a hypervisor that passes AVX2 through"
	}
	return r
}

// isolation checks that the workers' cores are kept free of other tasks.
func (h *host) isolation() Result {
	r := Result{Check: "cpu isolation"}
	if len(h.o.Dataplane.Interfaces) > 0 && len(h.cores) == 0 {
		r.Status, r.Detail = Warn, "no cores: configured: the workers spread over every CPU and share them with the rest"
		r.Fix = "list cores: for the interfaces and isolate those CPUs (isolcpus=, nohz_full=, or a cpuset)"
		return r
	}
	if len(h.cores) == 0 {
		r.Detail = "no workers configured"
		return r
	}
	b, _ := os.ReadFile(filepath.Join(h.o.Sys, "devices/system/cpu/isolated"))
	iso, err := parseCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		r.Status, r.Detail = Warn, fmt.Sprintf("isolated CPUs unreadable: %v", err)
		return r
	}
	var not []int
	for _, c := range h.cores {
		if !slices.Contains(iso, c) {
			not = append(not, c)
		}
	}
	if len(not) == 0 {
		r.Detail = fmt.Sprintf("the workers' CPUs %s are isolated", formatCPUs(h.cores))
		return r
	}
	r.Status = Warn
	r.Detail = fmt.Sprintf("CPUs %s of the workers are not isolated: the scheduler runs other tasks there", formatCPUs(not))
	r.Fix = fmt.Sprintf("isolcpus=%s nohz_full=%s on the kernel command line, or a cpuset", formatCPUs(not), formatCPUs(not))
	return r
}

// errCPUList: a malformed CPU list ("0-3,8").
var errCPUList = errors.New("bad cpu list")

// parseCPUList parses the kernel's CPU list format ("0-3,8,10-11"; "" is none).
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	if s == "" {
		return nil, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 1<<16 {
			return nil, fmt.Errorf("%w: %q", errCPUList, s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 1<<16 {
				return nil, fmt.Errorf("%w: %q", errCPUList, s)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// formatCPUs writes cpus as a comma list ("2,3").
func formatCPUs(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
