package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/xlb-dev/xlb/encap"
)

// CaptureFilter selects the frames a capture keeps. Every field that is set must match; the
// zero filter keeps every frame the workers see.
type CaptureFilter struct {
	// Service keeps the frames of the service with this name: to its VIP (port and
	// protocol), ICMP errors about it, and its nat backends' replies.
	Service string
	// Backend keeps the frames forwarded to the backend with this name, scheduler ID or
	// address (and its nat replies), with the frames of its services that were dropped (a
	// drop happens before a backend is known, or without one). Received frames are kept
	// with the sent frame they became.
	Backend string
	// Client keeps the frames from (or nat replies to) an address in this prefix.
	Client netip.Prefix
}

// Marks of a received frame that passed the filter.
const (
	capKeep    = 1 // final
	capPending = 2 // to a selected service: kept if dropped or sent to a selected backend
)

// capTarget is where a selected backend's frames go: the MAC on the egress interface (dr) or
// the address written into the packet (tunnel, nat).
type capTarget struct {
	method  Method
	ifindex int
	mac     [6]byte
	addr    [16]byte
	v6      bool
}

// capCompiled is a CaptureFilter laid out for one snapshot. A worker compiles it when it sees
// a new snapshot while a capture is armed, reusing its slices.
type capCompiled struct {
	snap   *Snapshot
	valid  bool
	anySvc bool // neither a service nor a backend is asked for
	client prefix16
	hasCli bool
	dst    []tupleKey  // the selected services' (VIP, port, protocol)
	src    []tupleKey  // the selected nat backends' replies (address, port, protocol)
	fwd    []capTarget // with a backend filter: where its frames are sent

	// The IPv4 fast path: untagged IPv4 frames are rejected on their addresses alone, as
	// big-endian words, before peek.
	cli4, cliMask4 uint32
	dst4, src4     []uint32 // the IPv4 addresses in dst and src
}

func newPrefix16(p netip.Prefix) prefix16 {
	var m prefix16
	m.v6 = p.Addr().Is6() && !p.Addr().Is4In6()
	a := p.Masked().Addr().Unmap()
	var raw, mask [16]byte
	if m.v6 {
		raw = a.As16()
	} else {
		a4 := a.As4()
		copy(raw[:4], a4[:])
	}
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	for i := range 2 {
		var w, mw uint64
		for j := 7; j >= 0; j-- {
			w = w<<8 | uint64(raw[i*8+j])
			mw = mw<<8 | uint64(mask[i*8+j])
		}
		m.addr[i], m.mask[i] = w, mw
	}
	return m
}

// backendIs reports whether backend j of sv is the one the filter names.
func (f *CaptureFilter) backendIs(sv *service, j int) bool {
	b := sv.spec.Sched.Backend(j)
	if b.Name == f.Backend || strconv.FormatUint(uint64(b.ID), 10) == f.Backend {
		return true
	}
	a, err := netip.ParseAddr(f.Backend)
	return err == nil && a.Unmap() == sv.targets[j].ip.Unmap()
}

// check reports an error when the filter names a service or backend that snapshot s does not
// have.
func (f *CaptureFilter) check(s *Snapshot) error {
	if f.Client.IsValid() && f.Client.Bits() < 0 {
		return fmt.Errorf("%w: client prefix %v", ErrCaptureFilter, f.Client)
	}
	if s == nil || (f.Service == "" && f.Backend == "") {
		return nil
	}
	svcFound, beFound := f.Service == "", f.Backend == ""
	for i := range s.services {
		sv := &s.services[i]
		if f.Service != "" && sv.spec.Name != f.Service {
			continue
		}
		svcFound = true
		for j := range sv.targets {
			beFound = beFound || f.backendIs(sv, j)
		}
	}
	switch {
	case !svcFound:
		return fmt.Errorf("%w: no service %q", ErrCaptureFilter, f.Service)
	case !beFound:
		return fmt.Errorf("%w: no backend %q", ErrCaptureFilter, f.Backend)
	}
	return nil
}

// compile lays f out for snapshot s. It allocates only when a slice must grow.
func (c *capCompiled) compile(s *Snapshot, f *CaptureFilter) {
	c.snap, c.valid = s, true
	c.dst, c.src, c.fwd = c.dst[:0], c.src[:0], c.fwd[:0]
	c.dst4, c.src4 = c.dst4[:0], c.src4[:0]
	c.anySvc = f.Service == "" && f.Backend == ""
	c.hasCli = f.Client.IsValid()
	if c.hasCli {
		c.client = newPrefix16(f.Client)
		c.cli4, c.cliMask4 = 0, 0
		if !c.client.v6 {
			a := f.Client.Masked().Addr().Unmap().As4()
			c.cli4 = binary.BigEndian.Uint32(a[:])
			c.cliMask4 = ^uint32(0) << (32 - f.Client.Bits())
			if f.Client.Bits() == 0 {
				c.cliMask4 = 0
			}
		}
	}
	defer func() {
		for _, t := range c.dst {
			if !t.v6 {
				c.dst4 = append(c.dst4, binary.BigEndian.Uint32(t.addr[:4]))
			}
		}
		for _, t := range c.src {
			if !t.v6 {
				c.src4 = append(c.src4, binary.BigEndian.Uint32(t.addr[:4]))
			}
		}
	}()
	if s == nil || c.anySvc {
		return
	}
	for i := range s.services {
		sv := &s.services[i]
		if f.Service != "" && sv.spec.Name != f.Service {
			continue
		}
		found := f.Backend == ""
		for j := range sv.targets {
			t := &sv.targets[j]
			if f.Backend != "" {
				if !f.backendIs(sv, j) {
					continue
				}
				found = true
				c.fwd = append(c.fwd, capTarget{method: sv.spec.Method, ifindex: t.hop.IfIndex,
					mac: t.hop.DstMAC, addr: t.addr, v6: t.v6})
			}
			if sv.spec.Method == MethodNAT {
				c.src = append(c.src, tupleKey{addr: t.addr, port: t.natPort(sv.spec.Port), proto: sv.spec.Proto, v6: t.v6})
			}
		}
		if found {
			sv.each(func(fe frontend) bool {
				c.dst = append(c.dst, tupleKey{addr: fe.vip, port: fe.port, proto: sv.spec.Proto, v6: sv.v6})
				return true
			})
		}
	}
}

func isICMP(proto uint8) bool { return proto == encap.ProtoICMP || proto == encap.ProtoICMPv6 }

// match decides on a received frame: 0 (not kept), capKeep or capPending.
func (c *capCompiled) match(pkt []byte, p *peeked) uint8 {
	if c.anySvc && !c.hasCli {
		return capKeep
	}
	if len(pkt) >= 34 && pkt[12] == 0x08 && pkt[13] == 0x00 && pkt[14]>>4 == 4 && !c.reject4(pkt) {
		return 0
	}
	return c.matchPeeked(pkt, p)
}

// reject4 looks at the addresses of an untagged IPv4 frame only: it returns false when the
// frame cannot match, true when matchPeeked must decide.
func (c *capCompiled) reject4(pkt []byte) bool {
	src, dst := binary.BigEndian.Uint32(pkt[26:30]), binary.BigEndian.Uint32(pkt[30:34])
	if c.hasCli && (c.client.v6 || (src&c.cliMask4 != c.cli4 && dst&c.cliMask4 != c.cli4)) {
		return false
	}
	if c.anySvc {
		return true
	}
	for _, a := range c.dst4 {
		if a == dst {
			return true
		}
	}
	for _, a := range c.src4 {
		if a == src {
			return true
		}
	}
	return false
}

// matchPeeked is match on the frame's peeked fields.
func (c *capCompiled) matchPeeked(pkt []byte, p *peeked) uint8 {
	if !peek(pkt, p) {
		if c.anySvc && !c.hasCli {
			return capKeep
		}
		return 0
	}
	if c.hasCli && !c.client.contains(&p.src, p.v6) && !c.client.contains(&p.dst, p.v6) {
		return 0
	}
	if c.anySvc {
		return capKeep
	}
	for i := range c.dst {
		t := &c.dst[i]
		if t.addr == p.dst && t.v6 == p.v6 && (t.proto == p.proto || isICMP(p.proto) || p.extHdr) &&
			(t.port == 0 || !p.portsKnown || t.port == p.dport) {
			if len(c.fwd) > 0 {
				return capPending
			}
			return capKeep
		}
	}
	for i := range c.src {
		t := &c.src[i]
		if t.addr == p.src && t.v6 == p.v6 && (t.proto == p.proto || p.extHdr) && (t.port == 0 || !p.portsKnown || t.port == p.sport) {
			return capKeep
		}
	}
	return 0
}

// sentTo reports whether a frame the engine sent (f, its packet pkt) goes to a selected
// backend.
func (c *capCompiled) sentTo(f *Frame, pkt []byte, p *peeked) bool {
	for i := range c.fwd {
		t := &c.fwd[i]
		if t.method == MethodDR {
			if f.Out == t.ifindex && len(pkt) >= 6 && [6]byte(pkt[0:6]) == t.mac {
				return true
			}
			continue
		}
		if peek(pkt, p) && p.dst == t.addr && p.v6 == t.v6 {
			return true
		}
	}
	return false
}
