// Package decap holds the tc BPF program that test backends use to decapsulate IPIP,
// IPv6-in-IPv4, IPv4-in-IPv6 and IP6IP6 packets, and GUE and FOU datagrams to the UDP ports
// given with AddUDPPort (this kernel has no ipip/ip6tnl devices and no fou module).
// The program (decap.c) is compiled with bpf2go; the generated object is committed, so a
// build needs no clang. Regenerate with `go generate ./internal/lab/decap`.
package decap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Stats are the program's counters, summed over CPUs.
type Stats struct {
	Seen  uint64 // IPIP, GUE and FOU packets seen
	Decap uint64 // decapsulated and passed on
	Error uint64 // a helper failed and the packet was dropped
}

// Program is a loaded decap program. Close releases it; an attached filter keeps its own
// reference, so the program runs until the interface or namespace goes away.
type Program struct {
	objs decapObjects
}

// Load loads the program into the kernel.
func Load() (*Program, error) {
	p := &Program{}
	if err := loadDecapObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load decap program: %w", err)
	}
	return p, nil
}

// Attach adds a clsact qdisc to interface ifindex (through the netlink handle h, which
// decides the namespace) unless it has one, and the program as a direct-action bpf
// filter on its ingress.
func (p *Program) Attach(h *netlink.Handle, ifindex int) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc on ifindex %d: %w", ifindex, err)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    netlink.MakeHandle(0, 1),
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           p.objs.XlbDecap.FD(),
		Name:         "xlb_decap",
		DirectAction: true,
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("add decap filter on ifindex %d ingress: %w", ifindex, err)
	}
	return nil
}

// AddUDPPort makes the program decapsulate GUE and FOU datagrams to UDP port port.
func (p *Program) AddUDPPort(port uint16) error {
	if err := p.objs.UdpPorts.Put(portKey(port), uint8(1)); err != nil {
		return fmt.Errorf("decap: add udp port %d: %w", port, err)
	}
	return nil
}

// DelUDPPort stops decapsulating datagrams to port.
func (p *Program) DelUDPPort(port uint16) error {
	if err := p.objs.UdpPorts.Delete(portKey(port)); err != nil {
		return fmt.Errorf("decap: delete udp port %d: %w", port, err)
	}
	return nil
}

// portKey is the map key of port: the port's bytes as they sit in the packet.
func portKey(port uint16) uint16 {
	return binary.NativeEndian.Uint16([]byte{byte(port >> 8), byte(port)})
}

// Stats reads the counters.
func (p *Program) Stats() (Stats, error) {
	var s Stats
	for i, dst := range []*uint64{&s.Seen, &s.Decap, &s.Error} {
		var per []uint64
		if err := p.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("read decap stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// Close releases the program and its map (an attached filter keeps running).
func (p *Program) Close() error {
	return p.objs.Close()
}

// Program exposes the loaded program (e.g. for Program.Run in tests).
func (p *Program) Program() *ebpf.Program { return p.objs.XlbDecap }
