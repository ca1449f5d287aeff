package dataplane

import (
	"errors"
	"fmt"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/sched"
)

// ErrBadConfig is wrapped by every error Config.validate returns.
var ErrBadConfig = errors.New("invalid dataplane config")

// Config configures a Dataplane.
type Config struct {
	// Interfaces are the interfaces to serve; every queue of each gets a pinned worker.
	Interfaces []InterfaceConfig
	// FrameSize is the UMEM frame size: 2048 or 4096 (default 4096, room for a 1500-byte
	// packet after the headroom and for the ICMP replies built in place).
	FrameSize int
	// FrameCount is the number of UMEM frames per socket (default 4096, a power of two).
	FrameCount int
	// RingSize is the size of each of the four rings (default 2048, a power of two, at most
	// FrameCount/2).
	RingSize int
	// ConnTableSize is the number of connection-table entries per worker (default
	// sched.DefaultCapacity: 1M entries, 56 MiB, allocated once at start).
	ConnTableSize int
	// ConnTimeouts are the connection table's idle timeouts (zero fields: sched's defaults,
	// those of LVS).
	ConnTimeouts sched.Timeouts
	// PersistSize is the number of client prefixes the persistence table, shared by all
	// workers, remembers (default sched.DefaultPersistSize; 32 bytes each).
	PersistSize int
	// BatchSize is the most frames a worker takes from its rx ring at once (default 64).
	BatchSize int
	// ReplaceXDP replaces an XDP program already attached to an interface; without it, New
	// refuses to start on such an interface.
	ReplaceXDP bool
	// SeparateUMEMs gives each socket of a worker its own UMEM instead of sharing one
	// between the worker's interfaces: frames forwarded from one interface to another are
	// then copied (what happens anyway when the kernel refuses to share). For drivers that
	// misbehave with a shared UMEM, and to measure the copy.
	SeparateUMEMs bool
	// ThreadedNAPI turns threaded NAPI on for the interfaces after the XDP attach (helps on
	// veth, where the receive work otherwise runs on the sending CPU). Off by default.
	ThreadedNAPI bool
	// Sync, when set, connects every worker to connection sync: the workers queue their
	// connection-table changes on the node's rings and ask its table on a miss (see
	// Engine.SetSync). The caller runs the node.
	Sync *connsync.Node
}

// InterfaceConfig is one interface of a Config (names follow the YAML config).
type InterfaceConfig struct {
	Name string
	// XDPMode is "auto" (native, falling back to generic), "native" or "generic".
	XDPMode string
	// ZeroCopy is "auto" (zero copy, falling back to copy mode), "on" or "off".
	ZeroCopy string
	// Cores are the CPUs of the workers, one per queue id in order (reused round-robin
	// when there are fewer). A worker serves its queue id on every interface, so the first
	// interface that lists Cores decides. Empty everywhere: spread over the CPUs the process
	// may use.
	Cores []int
	// Queues is the number of queues to serve; 0 means all of them.
	Queues int
	// BusyPoll keeps the workers of this interface spinning on their rings when idle
	// instead of sleeping in poll(2): the lowest latency (no wake-up of a sleeping CPU per
	// burst), at the price of a whole CPU per worker even with no traffic. For workers
	// pinned to cores of their own; never on a CPU that also runs the NIC's receive work
	// (the spinning worker starves it). A worker serving several interfaces spins when any
	// of them asks.
	BusyPoll bool
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.FrameSize == 0 {
		d.FrameSize = 4096
	}
	if d.FrameCount == 0 {
		d.FrameCount = 4096
	}
	if d.RingSize == 0 {
		d.RingSize = min(2048, d.FrameCount/2)
	}
	if d.ConnTableSize == 0 {
		d.ConnTableSize = sched.DefaultCapacity
	}
	if d.BatchSize == 0 {
		d.BatchSize = maxBatch
	}
	d.Interfaces = append([]InterfaceConfig(nil), c.Interfaces...)
	for i := range d.Interfaces {
		if d.Interfaces[i].XDPMode == "" {
			d.Interfaces[i].XDPMode = "auto"
		}
		if d.Interfaces[i].ZeroCopy == "" {
			d.Interfaces[i].ZeroCopy = "auto"
		}
	}
	return d
}

func pow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func (c *Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if len(c.Interfaces) == 0 {
		return bad("no interfaces")
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return bad("frame size %d (want 2048 or 4096)", c.FrameSize)
	}
	if !pow2(c.FrameCount) || c.FrameCount < 64 {
		return bad("frame count %d (want a power of two >= 64)", c.FrameCount)
	}
	if !pow2(c.RingSize) || c.RingSize > c.FrameCount/2 {
		return bad("ring size %d (want a power of two <= frame count/2 = %d)", c.RingSize, c.FrameCount/2)
	}
	if c.ConnTableSize < 1 {
		return bad("connection table size %d", c.ConnTableSize)
	}
	if c.PersistSize < 0 || c.PersistSize > sched.MaxPersistSize {
		return bad("persistence table size %d (want 0..%d)", c.PersistSize, sched.MaxPersistSize)
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatch {
		return bad("batch size %d (want 1..%d)", c.BatchSize, maxBatch)
	}
	seen := map[string]bool{}
	for _, ic := range c.Interfaces {
		if ic.Name == "" {
			return bad("interface without a name")
		}
		if seen[ic.Name] {
			return bad("interface %s listed twice", ic.Name)
		}
		seen[ic.Name] = true
		if _, err := xdpprog.ParseMode(ic.XDPMode); err != nil {
			return bad("interface %s: xdp_mode %q (want auto, native or generic)", ic.Name, ic.XDPMode)
		}
		if _, err := parseZeroCopy(ic.ZeroCopy); err != nil {
			return bad("interface %s: %v", ic.Name, err)
		}
		if ic.Queues < 0 {
			return bad("interface %s: queues %d", ic.Name, ic.Queues)
		}
		for _, cpu := range ic.Cores {
			if cpu < 0 {
				return bad("interface %s: cpu %d", ic.Name, cpu)
			}
		}
	}
	return nil
}
