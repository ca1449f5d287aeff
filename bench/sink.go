package bench

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Expect is what a checking sink accepts: the frames a correct forwarding path delivers.
type Expect struct {
	SrcMAC  [6]byte   // the forwarder's MAC
	DstMACs [][6]byte // the allowed destination MACs
	// IPIP: an outer IPv4 header (protocol 4) from OuterSrc precedes the original packet.
	IPIP     bool
	OuterSrc netip.Addr
	// Dsts are the allowed destinations of the outer header (IPIP) or else of the IP header
	// (the backends after DNAT, or the VIP for dr).
	Dsts []netip.Addr
	// SpreadByMAC counts frames per DstMACs index; otherwise per Dsts index.
	SpreadByMAC bool
}

// Bad is why a checking sink refused a frame.
type Bad int

// Reasons a frame fails the check.
const (
	BadShort    Bad = iota // too short for its headers
	BadSrcMAC              // not from the forwarder's MAC
	BadDstMAC              // to a MAC that is no backend's
	BadNotIPv4             // not IPv4
	BadEncap               // the encapsulation is missing or not expected
	BadOuterSrc            // outer source is not the tunnel source
	BadDst                 // destination is not an allowed one
	BadChecksum            // an IPv4 header checksum does not verify
	BadPayload             // the payload has no generator stamp (not a generated frame)
	NumBad
)

var badNames = [NumBad]string{"short", "src-mac", "dst-mac", "not-ipv4", "encap", "outer-src", "dst",
	"ip-checksum", "payload"}

func (b Bad) String() string {
	if b >= 0 && b < NumBad {
		return badNames[b]
	}
	return fmt.Sprintf("bad(%d)", int(b))
}

// maxSpread is the most backends a sink counts separately.
const maxSpread = 16

// SinkResult is what a checking sink received.
type SinkResult struct {
	Good uint64
	// Other counts frames that are not the forwarded traffic: multicast or not IPv4 (the
	// forwarder's kernel announcing itself, say). They are neither good nor bad.
	Other   uint64
	Bad     [NumBad]uint64
	Spread  [maxSpread]uint64 // good frames per backend index
	Latency Histogram         // send-to-receive time of stamped good frames, ns
}

// Received returns every frame the sink got, good or bad.
func (r *SinkResult) Received() uint64 {
	n := r.Good
	for _, b := range r.Bad {
		n += b
	}
	return n
}

func (r *SinkResult) merge(o *SinkResult) {
	r.Good += o.Good
	r.Other += o.Other
	for i := range r.Bad {
		r.Bad[i] += o.Bad[i]
	}
	for i := range r.Spread {
		r.Spread[i] += o.Spread[i]
	}
	r.Latency.Merge(&o.Latency)
}

// BadTotal returns the frames that failed the check.
func (r *SinkResult) BadTotal() uint64 { return r.Received() - r.Good }

type sink struct {
	want     *Expect
	outerSrc [4]byte
	dsts     [][4]byte
	res      SinkResult
}

func newSink(e *Expect) *sink {
	s := &sink{want: e}
	if e.IPIP {
		s.outerSrc = e.OuterSrc.As4()
	}
	for _, d := range e.Dsts {
		s.dsts = append(s.dsts, d.As4())
	}
	return s
}

func (s *sink) result() SinkResult { return s.res }

// check counts frame f, received at now (generator clock, ns). It allocates nothing.
func (s *sink) check(f []byte, now uint64) {
	if len(f) >= ethLen && (f[0]&1 != 0 || binary.BigEndian.Uint16(f[12:]) != 0x0800) {
		s.res.Other++
		return
	}
	b, idx := s.verify(f, now)
	if b >= 0 {
		s.res.Bad[b]++
		return
	}
	s.res.Good++
	if idx < maxSpread {
		s.res.Spread[idx]++
	}
}

// verify returns (-1, spread index) for a good frame, else the reason.
func (s *sink) verify(f []byte, now uint64) (Bad, int) {
	if len(f) < ethLen+ipv4Len {
		return BadShort, 0
	}
	if [6]byte(f[6:12]) != s.want.SrcMAC {
		return BadSrcMAC, 0
	}
	idx, ok := -1, false
	for i, m := range s.want.DstMACs {
		if [6]byte(f[0:6]) == m {
			idx, ok = i, true
			break
		}
	}
	if !ok {
		return BadDstMAC, 0
	}
	if binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return BadNotIPv4, 0
	}
	ip := f[ethLen:]
	hl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || hl < ipv4Len || len(ip) < hl {
		return BadShort, 0
	}
	if fold(sum16(ip[:hl])) != 0xffff {
		return BadChecksum, 0
	}
	if (ip[9] == 4) != s.want.IPIP {
		return BadEncap, 0
	}
	dst := [4]byte(ip[16:20])
	if s.want.IPIP {
		if [4]byte(ip[12:16]) != s.outerSrc {
			return BadOuterSrc, 0
		}
	}
	di := -1
	for i, d := range s.dsts {
		if d == dst {
			di = i
			break
		}
	}
	if len(s.dsts) > 0 && di < 0 {
		return BadDst, 0
	}
	if !s.want.SpreadByMAC {
		idx = max(di, 0)
	}
	if s.want.IPIP {
		ip = ip[hl:]
		if len(ip) < ipv4Len {
			return BadShort, 0
		}
		if hl = int(ip[0]&0x0f) * 4; ip[0]>>4 != 4 || hl < ipv4Len || len(ip) < hl {
			return BadEncap, 0
		}
		if fold(sum16(ip[:hl])) != 0xffff {
			return BadChecksum, 0
		}
	}
	l4 := ip[hl:]
	var off int
	switch ip[9] {
	case 17:
		off = udpLen
	case 6:
		if len(l4) < tcpLen {
			return BadShort, 0
		}
		off = int(l4[12]>>4) * 4
	default:
		return BadEncap, 0
	}
	if len(l4) >= off+stampLen && binary.BigEndian.Uint32(l4[off:]) == payloadMagic {
		sent := binary.BigEndian.Uint64(l4[off+4:])
		if now >= sent {
			s.res.Latency.Record(now - sent)
		}
	} else if len(l4) >= off+stampLen {
		return BadPayload, 0
	}
	return -1, idx
}

// Redirect is an XDP program that hands every frame of an interface to the AF_XDP socket
// of its receive queue (frames of a queue without a socket are dropped): the receiving
// half of a checking sink.
type Redirect struct {
	xsks *ebpf.Map
	prog *ebpf.Program
	link link.Link
}

// AttachRedirect loads the program (built here from a few instructions, no object file)
// and attaches it to ifindex in native mode. Run it inside the interface's namespace.
func AttachRedirect(ifindex int) (*Redirect, error) { return attachRedirect(ifindex, false, 0) }

// attachRedirect is AttachRedirect; with passARP, ARP frames go to the kernel instead (so a
// sink port answers ARP for its address), and flags are the attach mode (0: native).
func attachRedirect(ifindex int, passARP bool, flags link.XDPAttachFlags) (*Redirect, error) {
	if flags == 0 {
		flags = link.XDPDriverMode
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 64})
	if err != nil {
		return nil, fmt.Errorf("bench: xsk map: %w", err)
	}
	var insns asm.Instructions
	if passARP {
		insns = asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, ethLen),
			asm.JGT.Reg(asm.R4, asm.R3, "redirect"),
			asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
			asm.JNE.Imm(asm.R4, int32(binary.NativeEndian.Uint16([]byte{0x08, 0x06})), "redirect"), // not ARP
			asm.Mov.Imm(asm.R0, 2),                                                                 // XDP_PASS
			asm.Return(),
		}
	}
	insns = append(insns,
		asm.LoadMem(asm.R2, asm.R1, 16, asm.Word).WithSymbol("redirect"), // key = ctx->rx_queue_index
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Imm(asm.R3, 1), // XDP_DROP when the queue has no socket
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
	if !passARP {
		insns[0] = insns[0].WithSymbol("")
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: insns})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("bench: load redirect program: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p, Interface: ifindex, Flags: flags})
	if err != nil {
		p.Close()
		m.Close()
		return nil, fmt.Errorf("bench: attach redirect program to ifindex %d: %w", ifindex, err)
	}
	return &Redirect{xsks: m, prog: p, link: l}, nil
}

// Register sends queue's frames to the socket fd.
func (r *Redirect) Register(queue, fd int) error {
	if err := r.xsks.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("bench: register socket of queue %d: %w", queue, err)
	}
	return nil
}

// Close detaches and releases the program.
func (r *Redirect) Close() error {
	err := r.link.Close()
	r.prog.Close()
	r.xsks.Close()
	return err
}
