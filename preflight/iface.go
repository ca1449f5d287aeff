package preflight

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// The headroom the kernel leaves in front of a received frame, and the
// most a forwarded packet grows (an outer IPv6 header) plus a VLAN tag.
const (
	xdpHeadroom = unix.XDP_PACKET_HEADROOM
	maxGrowth   = 40 + 4
)

// zeroCopyFix is the fix for an interface without zero copy.
const zeroCopyFix = "a NIC whose driver does AF_XDP zero copy (ice, i40e, ixgbe, igc, mlx5_core, ...): " +
	"copy mode works, at a lower rate"

// ifState is what the checks of one interface share.
type ifState struct {
	ic      dataplane.InterfaceConfig
	link    netlink.Link
	driver  string
	virtual bool // no bus: no IRQs, no RSS of its own
	queues  int  // queues in use (served by workers)
}

// iface runs the checks of one interface and returns them with the number
// of workers it needs.
func (h *host) iface(ic dataplane.InterfaceConfig) (Report, int) {
	s := &ifState{ic: ic}
	name := func(c string) string { return ic.Name + " " + c }
	l, err := netlink.LinkByName(ic.Name)
	if err != nil {
		return Report{{Check: name("link"), Status: Fail, Detail: fmt.Sprintf("not found: %v", err),
			Fix: "name an interface of this host (ip link) in interfaces:"}}, 0
	}
	s.link = l
	r := Report{s.linkState(name("link"))}
	r = append(r, s.driverInfo(name("driver")))
	if h.o.NoProbe {
		r = append(r, Result{Check: name("xdp"), Status: Warn, Detail: "not tried (--no-probe)", Fix: "run preflight without --no-probe (as root, or with the capabilities of xlb run)"},
			Result{Check: name("zero-copy"), Status: Warn, Detail: "not tried (--no-probe)", Fix: "run preflight without --no-probe (as root, or with the capabilities of xlb run)"})
	} else {
		p, err := dataplane.Probe(ic.Name, 0)
		if err != nil {
			p.Native, p.ZeroCopy, p.Copy = err, err, err
		}
		h.probes = append(h.probes, p)
		r = append(r, s.xdp(name("xdp"), p), s.zeroCopy(name("zero-copy"), p))
	}
	r = append(r, h.queues(name("queues"), s), s.rss(name("rss")), h.irqs(name("irqs"), s), h.mtu(name("mtu"), s))
	return r, s.queues
}

func (s *ifState) linkState(check string) Result {
	a := s.link.Attrs()
	r := Result{Check: check, Detail: fmt.Sprintf("index %d, %s, state %s", a.Index, s.link.Type(), a.OperState)}
	if a.Flags&unix.IFF_UP == 0 {
		r.Status, r.Fix = Warn, "ip link set "+a.Name+" up"
		r.Detail += ", administratively down"
	}
	return r
}

func (s *ifState) driverInfo(check string) Result {
	drv, ver, bus, err := driverInfo(s.ic.Name)
	if err != nil {
		return Result{Check: check, Status: Warn, Detail: fmt.Sprintf("ethtool driver info: %v", err),
			Fix: "a driver with native XDP and AF_XDP zero copy"}
	}
	s.driver, s.virtual = drv, bus == "" || bus == "N/A"
	d := fmt.Sprintf("%s %s", drv, ver)
	if s.virtual {
		d += " (virtual device)"
	} else {
		d += " at " + bus
	}
	return Result{Check: check, Detail: strings.TrimSpace(d)}
}

func (s *ifState) xdp(check string, p dataplane.ProbeResult) Result {
	r := Result{Check: check}
	switch {
	case p.AttachedID != 0:
		r.Status = Warn
		r.Detail = fmt.Sprintf("an XDP program (id %d) is attached already: no attach tried; xlb run refuses it", p.AttachedID)
		r.Fix = "stop its owner (an xlb running already?), or run xlb run --replace-xdp"
	case p.Native == nil:
		r.Detail = "xlb's program attached in native (driver) mode and was detached"
	case p.Generic == nil:
		r.Status, r.Detail = Warn, fmt.Sprintf("generic (skb) mode only: native refused: %v", p.Native)
		r.Fix = "a driver with native XDP; generic mode works, at a lower rate"
		if s.ic.XDPMode == "native" {
			r.Status, r.Fix = Fail, "a driver with native XDP, or xdp_mode: auto"
		}
	default:
		r.Status, r.Detail = Fail, fmt.Sprintf("attach refused: native: %v; generic: %v", p.Native, p.Generic)
		r.Fix = privFix(errors.Join(p.Native, p.Generic), "CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON", "a kernel with XDP (>= 5.10)")
	}
	return r
}

func (s *ifState) zeroCopy(check string, p dataplane.ProbeResult) Result {
	r := Result{Check: check}
	drv := ""
	if s.driver != "" {
		drv = " (driver " + s.driver + ")"
	}
	switch {
	case p.ZeroCopy == nil:
		r.Detail = "an AF_XDP socket bound to queue 0 with XDP_ZEROCOPY"
	case p.Copy == nil:
		r.Status = Warn
		r.Detail = fmt.Sprintf("copy mode only%s: the zero-copy bind failed: %v", drv, p.ZeroCopy)
		r.Fix = zeroCopyFix
		if s.ic.ZeroCopy == "on" {
			r.Status, r.Fix = Fail, zeroCopyFix+"; or zero_copy: auto"
		}
	default:
		r.Status = Fail
		r.Detail = fmt.Sprintf("no AF_XDP bind to queue 0%s: %v", drv, p.Copy)
		r.Fix = "a kernel with AF_XDP"
		switch {
		case errors.Is(p.Copy, unix.EBUSY):
			r.Fix = "another AF_XDP socket holds the queue: stop it (an xlb running already?)"
		case errors.Is(p.Copy, unix.EPERM):
			r.Fix = "run as root, or with CAP_NET_RAW (AF_XDP sockets) and CAP_IPC_LOCK (UMEM)"
		}
	}
	return r
}

// privFix returns priv when err is a permission error, else other.
func privFix(err error, priv, other string) string {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return "run as root, or with " + priv
	}
	return other
}

func (h *host) queues(check string, s *ifState) Result {
	r := Result{Check: check}
	a := s.link.Attrs()
	inUse, most := a.NumRxQueues, a.NumRxQueues
	how := "netlink"
	if c, err := getChannels(s.ic.Name); err == nil {
		inUse, most = int(c.combinedCount+c.rxCount), int(c.maxCombined+c.maxRx)
		how = "ethtool channels"
	}
	inUse = min(max(inUse, 1), 256)
	if s.ic.Queues > 0 {
		inUse = min(inUse, s.ic.Queues)
	}
	s.queues = inUse
	cores := h.workerCores()
	r.Detail = fmt.Sprintf("%d in use (%s, at most %d), %d workers on %d CPUs", inUse, how, most, inUse, len(cores))
	switch {
	case len(h.cores) > 0 && len(h.cores) < inUse:
		r.Status = Warn
		r.Detail += fmt.Sprintf("; cores: lists %d CPUs for %d queues: workers share CPUs", len(h.cores), inUse)
		r.Fix = fmt.Sprintf("list %d cores, or ethtool -L %s combined %d", inUse, s.ic.Name, len(h.cores))
	case inUse > len(cores):
		r.Status = Warn
		r.Detail += ": more queues than CPUs, workers share CPUs"
		r.Fix = fmt.Sprintf("ethtool -L %s combined %d", s.ic.Name, len(cores))
	case inUse < len(cores) && most > inUse:
		r.Status = Warn
		r.Detail += fmt.Sprintf(": %d CPUs idle for forwarding", len(cores)-inUse)
		r.Fix = fmt.Sprintf("ethtool -L %s combined %d (one queue per worker CPU)", s.ic.Name, min(most, len(cores)))
	}
	return r
}

func (s *ifState) rss(check string) Result {
	r := Result{Check: check}
	if s.queues <= 1 {
		r.Detail = "one queue: nothing to spread"
		return r
	}
	want := uint64(rxhIPSrc | rxhIPDst | rxhL4B01 | rxhL4B23)
	var weak []string
	for _, f := range []struct {
		name string
		flow uint32
	}{{"tcp4", tcpV4Flow}, {"udp4", udpV4Flow}} {
		fields, err := getRXFH(s.ic.Name, f.flow)
		if err != nil {
			r.Status, r.Detail = Warn, fmt.Sprintf("%d queues, but the driver reports no RSS hash fields: %v", s.queues, err)
			r.Fix = "check that the NIC spreads flows over its queues (ethtool -x " + s.ic.Name + ")"
			return r
		}
		if fields&want != want {
			weak = append(weak, f.name)
		}
	}
	if len(weak) == 0 {
		r.Detail = fmt.Sprintf("tcp4 and udp4 hash addresses and ports over %d queues", s.queues)
		return r
	}
	r.Status = Warn
	r.Detail = fmt.Sprintf("%s hashed without ports: one client's flows all land on one queue", strings.Join(weak, ", "))
	r.Fix = fmt.Sprintf("ethtool -N %s rx-flow-hash %s sdfn", s.ic.Name, weak[0])
	return r
}

// irqs checks the affinity of the interface's IRQs (those named after it in
// /proc/interrupts): each should be on one CPU, not spread over all.
func (h *host) irqs(check string, s *ifState) Result {
	r := Result{Check: check}
	if s.virtual {
		r.Detail = "a virtual device: no IRQs of its own"
		return r
	}
	b, err := os.ReadFile(filepath.Join(h.o.Proc, "interrupts"))
	if err != nil {
		r.Status, r.Detail = Warn, fmt.Sprintf("read interrupts: %v", err)
		return r
	}
	irqs := irqsOf(string(b), s.ic.Name)
	if len(irqs) == 0 {
		r.Status = Warn
		r.Detail = "no IRQ named after it in /proc/interrupts"
		r.Fix = "find its queues' IRQs and pin each to its worker's CPU (/proc/irq/N/smp_affinity_list)"
		return r
	}
	var spread []string
	var hints int
	for _, irq := range irqs {
		aff, _ := os.ReadFile(filepath.Join(h.o.Proc, "irq", irq, "smp_affinity_list"))
		cpus, err := parseCPUList(strings.TrimSpace(string(aff)))
		if err != nil || len(cpus) != 1 {
			spread = append(spread, irq)
		}
		if hint, err := os.ReadFile(filepath.Join(h.o.Proc, "irq", irq, "affinity_hint")); err == nil &&
			strings.Trim(strings.TrimSpace(string(hint)), "0,") != "" {
			hints++
		}
	}
	r.Detail = fmt.Sprintf("%d IRQs, %d with a driver affinity hint", len(irqs), hints)
	if len(spread) > 0 {
		r.Status = Warn
		r.Detail += fmt.Sprintf("; IRQs %s may run on any of several CPUs", strings.Join(spread, ","))
		r.Fix = "pin each queue's IRQ to its worker's CPU (echo CPU > /proc/irq/N/smp_affinity_list; stop irqbalance)"
	}
	return r
}

// irqsOf returns the IRQ numbers of the /proc/interrupts lines whose name
// (the last field) is ifname or starts with "ifname-" ("eth0-TxRx-0").
func irqsOf(interrupts, ifname string) []string {
	var irqs []string
	for line := range strings.Lines(interrupts) {
		num, rest, ok := strings.Cut(line, ":")
		num = strings.TrimSpace(num)
		f := strings.Fields(rest)
		if !ok || len(f) == 0 || num == "" || strings.Trim(num, "0123456789") != "" {
			continue
		}
		if n := f[len(f)-1]; n == ifname || strings.HasPrefix(n, ifname+"-") {
			irqs = append(irqs, num)
		}
	}
	return irqs
}

// mtu checks that the largest packet fits a UMEM frame after the headroom
// and what forwarding adds (tunnel header, VLAN tag).
func (h *host) mtu(check string, s *ifState) Result {
	mtu := s.link.Attrs().MTU
	fs := h.o.Dataplane.FrameSize
	room := fs - xdpHeadroom - 14 - maxGrowth
	r := Result{Check: check, Detail: fmt.Sprintf("%d, frames of %d bytes hold packets up to %d", mtu, fs, room)}
	if mtu > room {
		r.Status, r.Detail = Fail, fmt.Sprintf("%d: larger than the %d bytes a frame of %d holds", mtu, room, fs)
		r.Fix = fmt.Sprintf("ip link set %s mtu %d", s.ic.Name, room)
	}
	return r
}
