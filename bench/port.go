package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/dataplane/xsk"
	"github.com/xlb-dev/xlb/internal/inns"
	"golang.org/x/sys/unix"
)

// Port is a network interface the generator sends from or the sink receives on: a real NIC
// port or one end of a veth pair, one AF_XDP socket per queue, each on a thread pinned to a
// CPU of its own.
type Port struct {
	Iface string
	// NS is the interface's network namespace; 0 (or -1) means the caller's.
	NS netns.NsHandle
	// Queues is how many queues to use, from queue 0 (0: every queue the interface has).
	Queues int
	// CPUs are the CPUs of the queues' threads, queue q on CPUs[q%len(CPUs)] (default: queue
	// q on CPU q modulo the CPUs there are).
	CPUs []int
	// ZeroCopy is the sockets' bind mode: auto tries zero copy and falls back to copy mode.
	ZeroCopy xsk.ZeroCopy
}

// PortInfo is what a Port turned out to be.
type PortInfo struct {
	Iface    string           `json:"iface"`
	Index    int              `json:"index"`
	MTU      int              `json:"mtu"`
	MAC      net.HardwareAddr `json:"mac"`
	Driver   string           `json:"driver"`
	Queues   int              `json:"queues"`
	CPUs     []int            `json:"cpus"`
	ZeroCopy bool             `json:"zero_copy"` // the sockets run in zero-copy mode (else copy mode)
	// GenericXDP: the sink's XDP program runs in the kernel's generic mode (the driver has no
	// native XDP), which is slower than native and copy mode only.
	GenericXDP bool `json:"generic_xdp,omitempty"`
}

// String describes the port for a report: name, driver, queues, mode and CPUs.
func (p PortInfo) String() string {
	mode := "copy mode"
	if p.ZeroCopy {
		mode = "zero copy"
	}
	if p.GenericXDP {
		mode += ", generic XDP"
	}
	return fmt.Sprintf("%s (driver %s, MTU %d, %d queue(s), AF_XDP %s, CPUs %v)", p.Iface, p.Driver, p.MTU,
		p.Queues, mode, p.CPUs)
}

// ErrPort is wrapped by errors about a Port: no such interface, no queue, a bad CPU.
var ErrPort = errors.New("bench: port")

// cpu returns the CPU of queue q.
func (p *Port) cpu(q int) int {
	if len(p.CPUs) == 0 {
		return q % runtime.NumCPU()
	}
	return p.CPUs[q%len(p.CPUs)]
}

// lookup finds the interface and its queues (the fewer of its rx and tx queues in use, as
// AF_XDP binds both) in the port's namespace.
func (p *Port) lookup() (PortInfo, error) {
	var info PortInfo
	for _, c := range p.CPUs {
		if c < 0 || c >= runtime.NumCPU() {
			return info, fmt.Errorf("%w: cpu %d (this host has CPUs 0..%d)", ErrPort, c, runtime.NumCPU()-1)
		}
	}
	if p.Queues < 0 {
		return info, fmt.Errorf("%w: %d queues", ErrPort, p.Queues)
	}
	err := inNS(p.NS, func() error {
		l, err := netlink.LinkByName(p.Iface)
		if err != nil {
			return fmt.Errorf("%w: interface %q: %w", ErrPort, p.Iface, err)
		}
		a := l.Attrs()
		info = PortInfo{Iface: a.Name, Index: a.Index, MTU: a.MTU, MAC: a.HardwareAddr,
			Queues: max(1, min(a.NumRxQueues, a.NumTxQueues)), Driver: driver(a.Name)}
		// The queues in use: a device allocates more than it runs (veth: one per possible
		// CPU, one in use unless told otherwise), and AF_XDP binds only those in use. A
		// driver without channel counts keeps netlink's figure.
		if rx, tx, err := channels(a.Name); err == nil && min(rx, tx) > 0 {
			info.Queues = min(info.Queues, rx, tx)
		}
		return nil
	})
	if err != nil {
		return info, err
	}
	if p.Queues > info.Queues {
		return info, fmt.Errorf("%w: %s has %d queue(s), %d asked", ErrPort, info.Iface, info.Queues, p.Queues)
	}
	if p.Queues > 0 {
		info.Queues = p.Queues
	}
	for q := range info.Queues {
		info.CPUs = append(info.CPUs, p.cpu(q))
	}
	return info, nil
}

// driver returns the interface's driver name as ethtool reports it ("" when it cannot).
func driver(ifname string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	d, err := unix.IoctlGetEthtoolDrvinfo(fd, ifname)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(d.Driver[:])
}

// inNS runs fn in namespace ns (the caller's for 0 or -1).
func inNS(ns netns.NsHandle, fn func() error) error { return inns.Do(nsOf(ns), fn) }

// bootID identifies the running kernel: a generator and a sink that report the same one
// share CLOCK_MONOTONIC, so the sink can read latency from the payload's send time.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
