package xdpprog

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// Mode is the XDP attach mode.
type Mode int

const (
	// ModeAuto attaches in native (driver) mode and falls back to generic.
	ModeAuto Mode = iota
	// ModeNative attaches in the driver or fails.
	ModeNative
	// ModeGeneric attaches in generic (skb) mode.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses the config's xdp_mode: auto, native or generic.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return ModeAuto, nil
	case "native":
		return ModeNative, nil
	case "generic":
		return ModeGeneric, nil
	}
	return 0, fmt.Errorf("xdp mode %q (want auto, native or generic): %w", s, ErrMode)
}

// Errors.
var (
	// ErrAlreadyAttached: another XDP program is attached to the interface
	// and Options.Replace is not set.
	ErrAlreadyAttached = errors.New("xdpprog: another xdp program is attached")
	// ErrMode: the requested attach mode is invalid or not available.
	ErrMode = errors.New("xdpprog: xdp mode not available")
	// ErrKey: a map key is not a valid address, protocol or queue.
	ErrKey = errors.New("xdpprog: invalid key")
	// ErrClosed: the program was closed.
	ErrClosed = errors.New("xdpprog: program closed")
)

// MaxQueues is the number of XSKMAP slots: queue ids 0..MaxQueues-1.
const MaxQueues = 256

// Options tell Attach how to attach.
type Options struct {
	Mode Mode
	// Replace detaches another XDP program found on the interface (attached
	// through netlink or through a bpf_link) instead of refusing.
	Replace bool
}

// Key is a service (destination) or a NAT backend (source): address, port
// (host byte order; 0 in a service = every port) and IP protocol.
type Key struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (k Key) raw() (xlbFlowKey, error) {
	var r xlbFlowKey
	a := k.Addr.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		copy(r.Addr[:], b[:])
		r.Family = 4
	case a.Is6():
		r.Addr = a.As16()
		r.Family = 6
	default:
		return r, fmt.Errorf("address %v: %w", k.Addr, ErrKey)
	}
	if k.Proto == 0 {
		return r, fmt.Errorf("protocol 0 for %v: %w", k.Addr, ErrKey)
	}
	r.Port = htons(k.Port)
	r.Proto = k.Proto
	return r, nil
}

func htons(v uint16) uint16 {
	b := [2]byte{byte(v >> 8), byte(v)}
	return nativeEndian.Uint16(b[:])
}

// Program is the xlb program loaded for one interface, with its maps. Its
// methods are safe for concurrent use.
type Program struct {
	mu      sync.Mutex
	objs    xlbObjects
	link    link.Link
	ifindex int
	mode    Mode
	vips    map[netip.Addr]int  // services per VIP, for the vips map
	locals  map[netip.Addr]bool // the host's addresses in the locals map
	queues  [MaxQueues]bool     // XSKMAP slots filled by RegisterSocket
	closed  bool

	svcs      map[xlbFlowKey]*svcState // the services map's keys, their slots and policies
	freeIDs   []uint32                 // free service slots (a stack)
	freeRules []uint32                 // free acl_hits slots (a stack)
	aclSpec   *ebpf.MapSpec            // the ACL tries' spec
	limitGen  uint32                   // the last generation of limits written
}

// Load loads the program and its maps into the kernel without attaching them.
func Load() (*Program, error) {
	p := &Program{vips: make(map[netip.Addr]int), locals: make(map[netip.Addr]bool),
		svcs: make(map[xlbFlowKey]*svcState)}
	spec, err := loadXlb()
	if err != nil {
		return nil, fmt.Errorf("load xdp program xlb: %w", err)
	}
	p.aclSpec = spec.Maps[xlbMapAcls].InnerMap.Copy()
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp program xlb: %w", err)
	}
	p.freeIDs = make([]uint32, 0, MaxServices)
	for id := MaxServices - 1; id >= 0; id-- {
		p.freeIDs = append(p.freeIDs, uint32(id))
	}
	p.freeRules = make([]uint32, 0, MaxACLRules)
	for s := MaxACLRules - 1; s >= 0; s-- {
		p.freeRules = append(p.freeRules, uint32(s))
	}
	return p, nil
}

// Attach loads the program and attaches it to the interface ifindex.
func Attach(ifindex int, opts Options) (*Program, error) {
	p, err := Load()
	if err != nil {
		return nil, err
	}
	if err := p.attach(ifindex, opts); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

func (p *Program) attach(ifindex int, opts Options) error {
	nl, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("find interface %d: %w", ifindex, err)
	}
	name := nl.Attrs().Name
	if x := nl.Attrs().Xdp; x != nil && x.Attached {
		if !opts.Replace {
			return fmt.Errorf("attach xdp to %s: program id %d: %w", name, x.ProgId, ErrAlreadyAttached)
		}
		if err := detachOther(nl, ifindex, x.ProgId); err != nil {
			return fmt.Errorf("replace xdp program id %d on %s: %w", x.ProgId, name, err)
		}
	}
	try := []struct {
		flags link.XDPAttachFlags
		mode  Mode
	}{{link.XDPDriverMode, ModeNative}, {link.XDPGenericMode, ModeGeneric}}
	switch opts.Mode {
	case ModeNative:
		try = try[:1]
	case ModeGeneric:
		try = try[1:]
	case ModeAuto:
	default:
		return fmt.Errorf("attach xdp to %s: %v: %w", name, opts.Mode, ErrMode)
	}
	var errs []error
	for _, t := range try {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.objs.Xlb, Interface: ifindex, Flags: t.flags})
		if err == nil {
			p.link, p.ifindex, p.mode = l, ifindex, t.mode
			return nil
		}
		errs = append(errs, fmt.Errorf("%v: %w", t.mode, err))
	}
	return fmt.Errorf("attach xdp to %s: %w: %w", name, ErrMode, errors.Join(errs...))
}

// detachOther removes the XDP program progID on nl: a bpf_link on the interface is
// detached, a program attached through netlink is removed. A link is the interface's
// only when both its ifindex and its program match: interfaces in other network
// namespaces can have the same ifindex.
func detachOther(nl netlink.Link, ifindex int, progID uint32) error {
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		if err == nil && info.Type == link.XDPType && uint32(info.Program) == progID {
			if x := info.XDP(); x != nil && int(x.Ifindex) == ifindex {
				err := l.Detach()
				l.Close()
				if err != nil {
					return fmt.Errorf("detach bpf_link: %w", err)
				}
				return nil
			}
		}
		l.Close()
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list bpf links: %w", err)
	}
	if err := netlink.LinkSetXdpFd(nl, -1); err != nil {
		return fmt.Errorf("remove netlink xdp program: %w", err)
	}
	return nil
}

// Mode returns the attach mode in effect: ModeNative or ModeGeneric (ModeAuto
// when the program is loaded but not attached).
func (p *Program) Mode() Mode { return p.mode }

// Ifindex returns the interface the program is attached to, 0 if none.
func (p *Program) Ifindex() int { return p.ifindex }

// withKey converts k to the maps' key and runs fn with it under the program's
// lock; a closed program refuses with ErrClosed.
func (p *Program) withKey(k Key, fn func(r *xlbFlowKey) error) error {
	r, err := k.raw()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return fn(&r)
}

// AddService steers packets to k (destination address, port, protocol) to the
// AF_XDP sockets. Port 0 means every port of the address and protocol.
func (p *Program) AddService(k Key) error {
	return p.withKey(k, func(r *xlbFlowKey) error {
		if p.svcs[*r] != nil {
			return nil
		}
		if len(p.freeIDs) == 0 {
			return fmt.Errorf("add service %v port %d proto %d: %d services: %w", k.Addr, k.Port, k.Proto, MaxServices, ErrKey)
		}
		st := &svcState{id: p.freeIDs[len(p.freeIDs)-1]}
		zero := make([]uint64, ebpf.MustPossibleCPU())
		for reason := range NumDropReasons {
			if err := p.objs.SvcDrops.Put(st.id*uint32(NumDropReasons)+uint32(reason), zero); err != nil {
				return fmt.Errorf("zero drop counters of service slot %d: %w", st.id, err)
			}
		}
		if err := p.objs.Services.Put(r, &xlbSvcInfo{Id: st.id}); err != nil {
			return fmt.Errorf("add service %v port %d proto %d: %w", k.Addr, k.Port, k.Proto, err)
		}
		a := k.Addr.Unmap()
		if p.vips[a] == 0 {
			vk := vipKey(a)
			if err := p.objs.Vips.Put(&vk, uint32(1)); err != nil {
				_ = p.objs.Services.Delete(r)
				return fmt.Errorf("add vip %v: %w", a, err)
			}
		}
		p.vips[a]++
		p.freeIDs = p.freeIDs[:len(p.freeIDs)-1]
		p.svcs[*r] = st
		return p.syncFrag(fragKey(*r))
	})
}

// DeleteService stops steering k. Deleting a missing service is not an error.
func (p *Program) DeleteService(k Key) error {
	return p.withKey(k, func(r *xlbFlowKey) error {
		if err := p.objs.Services.Delete(r); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			return fmt.Errorf("delete service %v port %d proto %d: %w", k.Addr, k.Port, k.Proto, err)
		}
		if err := p.dropState(r); err != nil {
			return err
		}
		a := k.Addr.Unmap()
		if p.vips[a]--; p.vips[a] <= 0 {
			delete(p.vips, a)
			vk := vipKey(a)
			if err := p.objs.Vips.Delete(&vk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete vip %v: %w", a, err)
			}
		}
		return nil
	})
}

// AddNATBackend steers packets from k (source address, port, protocol), the
// replies of a NAT backend, to the AF_XDP sockets. Port 0 means every source
// port of the address and protocol.
func (p *Program) AddNATBackend(k Key) error {
	return p.withKey(k, func(r *xlbFlowKey) error {
		if err := p.objs.NatBackends.Put(r, uint32(1)); err != nil {
			return fmt.Errorf("add nat backend %v port %d proto %d: %w", k.Addr, k.Port, k.Proto, err)
		}
		return nil
	})
}

// DeleteNATBackend stops steering replies from k. A missing key is not an
// error.
func (p *Program) DeleteNATBackend(k Key) error {
	return p.withKey(k, func(r *xlbFlowKey) error {
		if err := p.objs.NatBackends.Delete(r); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete nat backend %v port %d proto %d: %w", k.Addr, k.Port, k.Proto, err)
		}
		return nil
	})
}

// dropState releases what a deleted service held: its fragments' entry, its
// ACL trie, its rule and service slots.
func (p *Program) dropState(r *xlbFlowKey) error {
	st := p.svcs[*r]
	if st == nil {
		return nil
	}
	delete(p.svcs, *r)
	err := p.syncFrag(fragKey(*r))
	if st.rules != nil {
		if e := p.objs.Acls.Delete(st.id); e != nil && !errors.Is(e, ebpf.ErrKeyNotExist) {
			err = errors.Join(err, fmt.Errorf("remove acl of service slot %d: %w", st.id, e))
		}
		for _, s := range st.rules {
			p.freeRules = append(p.freeRules, s)
		}
	}
	p.freeIDs = append(p.freeIDs, st.id)
	return err
}

func vipKey(a netip.Addr) xlbVipKey {
	var k xlbVipKey
	if a.Is4() {
		b := a.As4()
		copy(k.Addr[:], b[:])
		k.Family = 4
	} else {
		k.Addr = a.As16()
		k.Family = 6
	}
	return k
}

// SetLocals makes addrs the host's own addresses in the program's locals map:
// a packet from a NAT backend to one of them (the reply to the host's own
// health check or connection) goes to the kernel instead of the workers.
// Addresses not in addrs are removed. Invalid addresses are skipped.
func (p *Program) SetLocals(addrs []netip.Addr) error {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if a = a.Unmap(); a.IsValid() {
			want[a.WithZone("")] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var errs []error
	for a := range want {
		if p.locals[a] {
			continue
		}
		k := vipKey(a)
		if err := p.objs.Locals.Put(&k, uint32(1)); err != nil {
			errs = append(errs, fmt.Errorf("add local address %v: %w", a, err))
			continue
		}
		p.locals[a] = true
	}
	for a := range p.locals {
		if want[a] {
			continue
		}
		k := vipKey(a)
		if err := p.objs.Locals.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete local address %v: %w", a, err))
			continue
		}
		delete(p.locals, a)
	}
	return errors.Join(errs...)
}

// Locals returns the addresses in the locals map, as last set by SetLocals.
func (p *Program) Locals() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]netip.Addr, 0, len(p.locals))
	for a := range p.locals {
		out = append(out, a)
	}
	return out
}

// RegisterSocket puts the AF_XDP socket fd (bound to queue on this program's
// interface) in the XSKMAP slot of queue.
func (p *Program) RegisterSocket(queue, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("queue %d (want 0..%d): %w", queue, MaxQueues-1, ErrKey)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.objs.Xsks.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("register af_xdp socket for queue %d: %w", queue, err)
	}
	p.queues[queue] = true
	return nil
}

// UnregisterSocket empties the XSKMAP slot of queue: its packets go to the
// kernel again. An empty slot is not an error.
func (p *Program) UnregisterSocket(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("queue %d (want 0..%d): %w", queue, MaxQueues-1, ErrKey)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister af_xdp socket for queue %d: %w", queue, err)
	}
	p.queues[queue] = false
	return nil
}

// Close detaches the program (if attached), empties the XSKMAP (the kernel
// frees a map later, and until then the sockets in it stay referenced) and
// releases the program and its maps.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for q, ok := range p.queues {
		if ok {
			if err := p.objs.Xsks.Delete(uint32(q)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("unregister queue %d: %w", q, err))
			}
		}
	}
	if p.link != nil {
		if err := p.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp from ifindex %d: %w", p.ifindex, err))
		}
		p.link = nil
	}
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close xdp objects: %w", err))
	}
	return errors.Join(errs...)
}
