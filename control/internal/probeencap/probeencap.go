package probeencap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/encap"
	"golang.org/x/sys/unix"
)

// Program is the loaded program. Not safe for concurrent use.
type Program struct {
	objs     probeencapObjects
	attached map[int]bool // interface indexes with the filter
}

// Load loads the program into the kernel.
func Load() (*Program, error) {
	p := &Program{attached: map[int]bool{}}
	if err := loadProbeencapObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load probe encap program: %w", err)
	}
	return p, nil
}

const filterHandle = 0x58 // the filter's handle and priority on the egress hook

func (p *Program) filter(ifindex int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: netlink.HANDLE_MIN_EGRESS,
			Handle: netlink.MakeHandle(0, filterHandle), Protocol: unix.ETH_P_IP, Priority: filterHandle},
		Fd: p.objs.XlbProbeEncap.FD(), Name: "xlb_probe_encap", DirectAction: true,
	}
}

// Attach puts the program on interface ifindex's egress (adding a clsact qdisc unless there
// is one), through the netlink handle h, which decides the namespace. Attaching twice is a
// no-op.
func (p *Program) Attach(h *netlink.Handle, ifindex int) error {
	if p.attached[ifindex] {
		return nil
	}
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0),
		Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("probe encap: clsact qdisc on ifindex %d: %w", ifindex, err)
	}
	if err := h.FilterReplace(p.filter(ifindex)); err != nil {
		return fmt.Errorf("probe encap: egress filter on ifindex %d: %w", ifindex, err)
	}
	p.attached[ifindex] = true
	return nil
}

// Detach removes the program from every interface it was attached to (the clsact qdisc
// stays: others may use it).
func (p *Program) Detach(h *netlink.Handle) error {
	var errs []error
	for ifindex := range p.attached {
		if err := h.FilterDel(p.filter(ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("probe encap: remove the filter on ifindex %d: %w", ifindex, err))
		}
		delete(p.attached, ifindex)
	}
	return errors.Join(errs...)
}

// ErrFamily is returned by Set for an address that is not IPv4.
var ErrFamily = errors.New("probe encap: only IPv4 outer headers")

// Set makes probes with skb mark mark leave encapsulated from src to dst with e (IPIP, GUE
// or FOU to UDP port port).
func (p *Program) Set(mark uint32, src, dst netip.Addr, e encap.TunnelEncap, port uint16) error {
	if !src.Unmap().Is4() || !dst.Unmap().Is4() {
		return fmt.Errorf("%w: %s -> %s", ErrFamily, src, dst)
	}
	v := probeencapEncap{Src: be32(src), Dst: be32(dst), Port: binary.NativeEndian.Uint16([]byte{byte(port >> 8), byte(port)}), Kind: uint8(e) + 1}
	if err := p.objs.Encaps.Put(mark, v); err != nil {
		return fmt.Errorf("probe encap: mark %#x: %w", mark, err)
	}
	return nil
}

// Delete forgets mark.
func (p *Program) Delete(mark uint32) error {
	if err := p.objs.Encaps.Delete(mark); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("probe encap: delete mark %#x: %w", mark, err)
	}
	return nil
}

// Stats returns how many probes were encapsulated and how many failed (and were dropped).
func (p *Program) Stats() (encapsulated, failed uint64, err error) {
	if err := p.objs.Stats.Lookup(uint32(0), &encapsulated); err != nil {
		return 0, 0, fmt.Errorf("probe encap: stats: %w", err)
	}
	if err := p.objs.Stats.Lookup(uint32(1), &failed); err != nil {
		return 0, 0, fmt.Errorf("probe encap: stats: %w", err)
	}
	return encapsulated, failed, nil
}

// Close releases the program (detach it first).
func (p *Program) Close() error { return p.objs.Close() }

// be32 returns the machine word whose bytes in memory are the IPv4 address in network order
// (a __be32 field of the program).
func be32(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}
