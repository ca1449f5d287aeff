package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/afxdp"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/sched"
	"golang.org/x/sys/unix"
)

// Addresses of the bench topology, all inside 198.18.0.0/15 and inside its own namespace.
var (
	VIP        = netip.MustParseAddr("198.18.0.100")
	VIPPort    = uint16(9000)
	ClientPool = netip.MustParsePrefix("198.19.0.0/16")
	TunnelSrc  = netip.MustParseAddr("198.18.0.2")
	lbAddr     = netip.MustParsePrefix("198.18.0.1/24")
	backendNet = netip.MustParsePrefix("198.18.1.0/24")
)

const (
	numBackends = 3
	linkMTU     = 1600 // room for a 1518-byte frame plus the tunnel's 20 bytes
)

// Backend returns the address and MAC of backend i of the topology. The MACs are nobody's:
// veth hands every frame to its peer, whose XDP sink sees it whatever its destination.
func Backend(i int) (netip.Addr, [6]byte) {
	a := netip.AddrFrom4([4]byte{198, 18, 1, byte(11 + i)})
	return a, [6]byte{0x02, 0x42, 0xc6, 0x12, 0x01, byte(11 + i)}
}

// Topology is one network namespace with a veth pair: xa is the device under test's side
// (xlb, a baseline XDP program, or the kernel's forwarding path), xb the generator's and the
// sink's. Frames go xb -> xa -> forwarded back out of xa -> xb, where the sink counts them.
type Topology struct {
	NS *lab.NS
	// NameA and NameB are the interface names: "b<id>a" and "b<id>b", unique on the host so
	// that their NAPI threads ("napi/<name>-<id>") can be told from other namespaces'.
	NameA, NameB string
	XA, XB       netlink.Link
	MACA         [6]byte
	MACB         [6]byte
	Queues       int
	nft          bool // the DNAT ruleset is loaded
}

// ErrUnavailable is wrapped by errors for what this machine cannot run.
var ErrUnavailable = errors.New("bench: not available here")

// NewTopology builds the namespace, the veth pair (queues rx/tx queues each, MTU 1600) and
// the kernel forwarding set-up the nftables baseline uses: forwarding on, redirects and
// reverse-path filtering off, routes and permanent neighbours for the backends.
func NewTopology(queues int) (_ *Topology, err error) {
	if err := lab.Available(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	ns, err := lab.NewNS(id, "bench")
	if err != nil {
		return nil, err
	}
	t := &Topology{NS: ns, Queues: max(1, queues), NameA: "b" + id + "a", NameB: "b" + id + "b"}
	defer func() {
		if err != nil {
			ns.Close()
		}
	}()
	if t.XA, t.XB, err = ns.AddVeth(t.NameA, t.NameB, linkMTU, t.Queues); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	t.MACA, t.MACB = [6]byte(t.XA.Attrs().HardwareAddr), [6]byte(t.XB.Attrs().HardwareAddr)
	nl := ns.Handle()
	if err := ns.Sysctls(map[string]string{"net.ipv4.ip_forward": "1",
		"net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf." + t.NameA + ".send_redirects": "0",
		"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf." + t.NameA + ".rp_filter": "0",
		"net.ipv6.conf." + t.NameA + ".disable_ipv6": "1", "net.ipv6.conf." + t.NameB + ".disable_ipv6": "1"}); err != nil {
		return nil, err
	}
	if err := ns.AddAddr(t.NameA, lbAddr); err != nil {
		return nil, err
	}
	for _, p := range []netip.Prefix{backendNet, ClientPool} {
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: t.XA.Attrs().Index, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}); err != nil {
			return nil, fmt.Errorf("bench: route %v: %w", p, err)
		}
	}
	for i := range numBackends {
		a, mac := Backend(i)
		if err := nl.NeighAdd(&netlink.Neigh{LinkIndex: t.XA.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: a.AsSlice(), HardwareAddr: mac[:]}); err != nil {
			return nil, fmt.Errorf("bench: neighbour %v: %w", a, err)
		}
	}
	return t, nil
}

// Close removes the namespace and everything in it.
func (t *Topology) Close() error { return t.NS.Close() }

// LoadDNAT loads the nftables ruleset of the kernel baseline: VIP:9000 (udp and tcp) DNAT to
// the backends in turn (numgen inc), in the prerouting hook, with conntrack.
func (t *Topology) LoadDNAT() error {
	if t.nft {
		return nil
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("%w: nft not installed", ErrUnavailable)
	}
	var m []string
	for i := range numBackends {
		a, _ := Backend(i)
		m = append(m, fmt.Sprintf("%d : %v", i, a))
	}
	rules := fmt.Sprintf(`table ip xlbbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %v meta l4proto { tcp, udp } th dport %d dnat to numgen inc mod %d map { %s }
	}
}
`, VIP, VIPPort, numBackends, strings.Join(m, ", "))
	f, err := os.CreateTemp("", "xlbbench-*.nft")
	if err != nil {
		return fmt.Errorf("bench: nft ruleset: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(rules); err != nil {
		f.Close()
		return fmt.Errorf("bench: nft ruleset: %w", err)
	}
	f.Close()
	if out, err := t.NS.Run("nft", "-f", f.Name()); err != nil {
		return fmt.Errorf("bench: nft -f: %s: %w", strings.TrimSpace(string(out)), err)
	}
	t.nft = true
	return nil
}

// FlushConntrack empties the namespace's connection tracking table, so the nftables baseline
// starts every run from the same (empty) state.
func (t *Topology) FlushConntrack() error {
	if err := t.NS.Handle().ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("bench: flush conntrack: %w", err)
	}
	return nil
}

// attachXA attaches a baseline program (drop or swap) to xa.
func (t *Topology) attachXA(name string) (*afxdp.Baseline, error) {
	var b *afxdp.Baseline
	err := t.NS.Do(func() (err error) {
		b, err = afxdp.AttachBaseline(t.XA.Attrs().Index, name)
		return err
	})
	return b, err
}

// AttachSinkDrop attaches the counting sink (XDP_DROP with a per-CPU counter) to xb.
func (t *Topology) AttachSinkDrop() (*afxdp.Baseline, error) {
	var b *afxdp.Baseline
	err := t.NS.Do(func() (err error) {
		b, err = afxdp.AttachBaseline(t.XB.Attrs().Index, afxdp.BaselineDrop)
		return err
	})
	return b, err
}

// AttachSinkRedirect attaches the checking sink's redirect program to xb.
func (t *Topology) AttachSinkRedirect() (*Redirect, error) {
	var r *Redirect
	err := t.NS.Do(func() (err error) {
		r, err = AttachRedirect(t.XB.Attrs().Index)
		return err
	})
	return r, err
}

// XLBConfig is how the bench runs xlb on xa.
type XLBConfig struct {
	Method    dataplane.Method // MethodDR or MethodTunnel
	Proto     Proto
	Cores     []int // worker CPUs, one per queue
	ConnTable int   // connection-table entries per worker (0: 1<<16)
	BusyPoll  bool  // the worker spins when idle instead of sleeping in poll(2)
}

// StartXLB runs the data path on xa with one service (the VIP, the generator's protocol,
// port 9000, Maglev over the three backends, reached back out of xa).
func (t *Topology) StartXLB(ctx context.Context, c XLBConfig) (*dataplane.Dataplane, error) {
	cfg := dataplane.Config{FrameCount: 16384, RingSize: 4096, ConnTableSize: c.ConnTable,
		Interfaces: []dataplane.InterfaceConfig{{Name: t.NameA, XDPMode: "native", Cores: c.Cores,
			BusyPoll: c.BusyPoll}}}
	var dp *dataplane.Dataplane
	if err := t.NS.Do(func() (err error) {
		dp, err = dataplane.New(cfg)
		return err
	}); err != nil {
		return nil, err
	}
	var bs []sched.Backend
	var ts []dataplane.Target
	for i := range numBackends {
		a, mac := Backend(i)
		bs = append(bs, sched.Backend{ID: uint32(i + 1), Name: a.String(), Weight: 1, Up: true})
		ts = append(ts, dataplane.Target{Addr: a, Hop: dataplane.NextHop{IfIndex: t.XA.Attrs().Index,
			SrcMAC: t.MACA, DstMAC: mac, MTU: linkMTU}})
	}
	sv, err := sched.NewService(sched.ServiceConfig{Strategy: sched.Maglev}, bs)
	if err != nil {
		dp.Close()
		return nil, err
	}
	proto := uint8(encap.ProtoUDP)
	if c.Proto == TCPSYN {
		proto = encap.ProtoTCP
	}
	spec := dataplane.ServiceSpec{Name: "bench", VIP: VIP, Port: VIPPort, Proto: proto, Method: c.Method,
		Sched: sv, Targets: ts}
	if c.Method == dataplane.MethodTunnel {
		spec.TunnelSource = netip.PrefixFrom(TunnelSrc, 32)
	}
	s, err := dataplane.NewSnapshot([]dataplane.ServiceSpec{spec}, nil)
	if err == nil {
		err = dp.Publish(s)
	}
	if err == nil {
		err = dp.Start(ctx)
	}
	if err != nil {
		dp.Close()
		return nil, err
	}
	return dp, nil
}

// IPVS reports whether the kernel has IPVS (checks /proc/net/ip_vs, then tries modprobe) and
// ipvsadm is installed; the error says why not.
func IPVS() error {
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		_ = exec.Command("modprobe", "-q", "ip_vs").Run()
		if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
			return fmt.Errorf("%w: no ip_vs in this kernel (no /proc/net/ip_vs, modprobe ip_vs failed)", ErrUnavailable)
		}
	}
	if _, err := exec.LookPath("ipvsadm"); err != nil {
		return fmt.Errorf("%w: ipvsadm not installed", ErrUnavailable)
	}
	return nil
}

// nsSysfs writes value to the sysfs file rel (under /sys/class/net/) as the namespace sees
// it: through `ip netns exec`, which mounts the namespace's own sysfs (this process's
// /sys shows the namespace it was mounted in).
func (t *Topology) nsSysfs(rel, value string) error {
	out, err := exec.Command("ip", "netns", "exec", t.NS.Name(), "sh", "-c",
		"echo "+value+" > /sys/class/net/"+rel).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench: write %s in %s: %s: %w", rel, t.NS.Name(), strings.TrimSpace(string(out)), err)
	}
	return nil
}

// PinRx moves xa's receive work to cpu. With an XDP program on xa (attach it first: veth
// makes its NAPI instances then) it turns threaded NAPI on and pins the napi/<xa>-* threads;
// without one (the kernel path) it steers xa's receive queue there with RPS. Without this,
// veth runs the receive work in the sender's softirq, on the generator's CPU.
func (t *Topology) PinRx(cpu int, xdp bool) error {
	if !xdp {
		for q := range t.Queues {
			if err := t.nsSysfs(fmt.Sprintf("%s/queues/rx-%d/rps_cpus", t.NameA, q), fmt.Sprintf("%x", uint64(1)<<cpu)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := t.nsSysfs(t.NameA+"/threaded", "1"); err != nil {
		return err
	}
	prefix := "napi/" + t.NameA + "-"
	prefix = prefix[:min(len(prefix), 15)] // a task's comm holds 15 bytes
	pinned := 0
	for try := 0; pinned == 0 && try < 50; try++ {
		if try > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		tasks, _ := filepath.Glob("/proc/[0-9]*/comm")
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil || !strings.HasPrefix(string(b), prefix) {
				continue
			}
			pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			if err != nil {
				continue
			}
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(pid, &set); err != nil {
				return fmt.Errorf("bench: pin %s (pid %d) to cpu %d: %w", strings.TrimSpace(string(b)), pid, cpu, err)
			}
			// A kernel thread is outside every session's autogroup. At the share the bench's
			// own threads get from theirs (the same nice) the napi thread took half the CPU,
			// filled xlb's rx ring faster than the worker, on the same CPU, could empty it,
			// and spent its half copying frames dropped at the full ring (40-45% lost): 5
			// nice levels below gives it about a quarter, and the surplus is dropped before
			// any copy, when veth's ring to xa is full (docs/bench/bench.md, "forwarding
			// gap investigation"). XDP_TX alone on the CPU does not care.
			nice := napiNice()
			_ = unix.Setpriority(unix.PRIO_PROCESS, pid, nice)
			pinned++
		}
	}
	if pinned == 0 {
		return fmt.Errorf("bench: no napi thread %s* after turning threaded NAPI on", prefix)
	}
	return nil
}

// napiNice is the nice of the napi threads PinRx moves: 5 levels weaker than the calling
// process's autogroup (-5 under Prioritize).
func napiNice() int {
	b, _ := os.ReadFile("/proc/self/autogroup")
	return napiNiceFrom(string(b))
}

// napiNiceFrom computes napiNice from the text of /proc/self/autogroup
// ("/autogroup-123 nice -10"; anything else counts as nice 0), clamped to -20..19.
func napiNiceFrom(autogroup string) int {
	nice := 0
	if f := strings.Fields(autogroup); len(f) == 3 && f[1] == "nice" {
		if n, err := strconv.Atoi(f[2]); err == nil {
			nice = n
		}
	}
	return min(19, max(-20, nice+5))
}

// Prioritize gives the calling process a session of its own at autogroup nice -10 when it
// can: with sched_autogroup, CPU time is shared between sessions first, so on a busy host
// the generator and xlb's worker would otherwise get a share of the caller's session only.
// It fails when the process leads a process group of another session (start it with
// setsid(1) then). It changes the whole process: for the command line and tests, never
// called by Run.
func Prioritize() error {
	_, err := unix.Setsid()
	if sid, _ := unix.Getsid(0); err != nil && sid != os.Getpid() {
		return fmt.Errorf("bench: new session: %w", err)
	}
	if err := os.WriteFile("/proc/self/autogroup", []byte("-10"), 0); err != nil {
		return fmt.Errorf("bench: autogroup nice: %w", err)
	}
	return nil
}
