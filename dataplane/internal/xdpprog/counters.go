package xdpprog

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

var nativeEndian binary.ByteOrder = func() binary.ByteOrder {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}()

// Reason indexes the program's counters (enum in dataplane/bpf/xlb.c).
type Reason int

// Counter reasons.
const (
	RedirectService   Reason = iota // packet to a service
	RedirectNAT                     // reply from a NAT backend
	RedirectICMP                    // ICMP error about a service flow
	RedirectFragment                // IP fragment to a VIP
	PassNotIP                       // ARP, LLDP, ...: to the kernel
	PassNoMatch                     // IP not for the load balancer: to the kernel
	PassNoSocket                    // for the load balancer, but no socket on the queue
	ErrTruncated                    // a header runs past the end: to the kernel
	ErrMalformed                    // bad version or header length, too many extension headers
	PassLocal                       // from a NAT backend to the host's own address: to the kernel
	DroppedACL                      // dropped: source denied by the service's ACL
	DroppedRate                     // dropped: TCP SYN over the service's new-flow rate
	DroppedSourceRate               // dropped: TCP SYN over its source prefix's new-flow rate
	NumReasons
)

var reasonNames = [NumReasons]string{
	"redirect_service", "redirect_nat", "redirect_icmp", "redirect_fragment",
	"pass_not_ip", "pass_no_match", "pass_no_socket", "err_truncated", "err_malformed",
	"pass_local", "drop_acl", "drop_rate", "drop_source_rate",
}

func (r Reason) String() string {
	if r >= 0 && r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Counters are packet counts by reason, summed over CPUs.
type Counters [NumReasons]uint64

// Redirected returns the packets sent to AF_XDP sockets.
func (c Counters) Redirected() uint64 {
	return c[RedirectService] + c[RedirectNAT] + c[RedirectICMP] + c[RedirectFragment]
}

// Passed returns the packets given to the kernel.
func (c Counters) Passed() uint64 {
	return c[PassNotIP] + c[PassNoMatch] + c[PassNoSocket] + c[ErrTruncated] + c[ErrMalformed] + c[PassLocal]
}

// Dropped returns the packets the program dropped (policy).
func (c Counters) Dropped() uint64 {
	return c[DroppedACL] + c[DroppedRate] + c[DroppedSourceRate]
}

// Counters reads the per-CPU counters and sums them.
func (p *Program) Counters() (Counters, error) {
	var c Counters
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return c, ErrClosed
	}
	var per []uint64
	for r := range NumReasons {
		if err := p.objs.Counters.Lookup(uint32(r), &per); err != nil {
			return c, fmt.Errorf("read counter %v: %w", r, err)
		}
		for _, v := range per {
			c[r] += v
		}
	}
	return c, nil
}
