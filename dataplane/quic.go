package dataplane

import (
	"encoding/binary"
	"fmt"

	"github.com/xlb-dev/xlb/encap"
)

// QUIC connection-ID routing (QUIC-LB): a QUIC service's backends put their server ID into
// the connection IDs they issue, so a packet whose destination connection ID decodes to a
// backend's server ID goes to that backend whatever its 4-tuple. A client that moves to
// another address or port (NAT rebinding, a new network) thus keeps its server, where the
// connection table, keyed by the 4-tuple, would see a new flow. Packets without a routable
// ID (client Initials carry a client-chosen one) take the 4-tuple path, whose connection
// table keeps them on the backend that answered.

// maxQUICServerIDLen is the longest server ID the data path routes by: IDs are looked up as
// one 64-bit word.
const maxQUICServerIDLen = 8

// quicRoutes maps a QUIC service's server IDs to its targets: open addressing with linear
// probing in a power-of-two table at least twice the number of IDs, built once per snapshot.
type quicRoutes struct {
	// lbs are the service's configurations by config rotation codepoint (the three top
	// bits of a connection ID): the current one and those still routed during a rotation.
	lbs  [8]*encap.QUICLB
	keys []uint64
	pos  []int32 // target index; -1 empty
	mask uint64
}

// sidKey packs a server ID of at most 8 bytes into a word.
func sidKey(sid []byte) uint64 {
	var b [8]byte
	copy(b[8-len(sid):], sid)
	return binary.BigEndian.Uint64(b[:])
}

func (r *quicRoutes) slot(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15) >> 32 & r.mask }

// lookup returns the target index of server ID sid, or -1.
func (r *quicRoutes) lookup(sid []byte) int {
	k := sidKey(sid)
	for i := r.slot(k); ; i = (i + 1) & r.mask {
		p := r.pos[i]
		if p < 0 || r.keys[i] == k {
			return int(p)
		}
	}
}

// buildQUIC validates the service's QUIC settings and indexes its backends' server IDs.
func (sv *service) buildQUIC() error {
	q := sv.spec.QUIC
	if q == nil {
		if len(sv.spec.QUICPrevious) > 0 {
			return fmt.Errorf("previous QUIC configurations without a current one")
		}
		for j, t := range sv.spec.Targets {
			if t.ServerID != nil {
				return fmt.Errorf("backend %d has a server ID but the service has no QUIC routing", j)
			}
		}
		return nil
	}
	if sv.spec.Proto != encap.ProtoUDP {
		return fmt.Errorf("QUIC routing on a protocol %d service (want udp)", sv.spec.Proto)
	}
	if n := q.ServerIDLen(); n > maxQUICServerIDLen {
		return fmt.Errorf("QUIC server IDs of %d bytes (the data path routes by at most %d)", n, maxQUICServerIDLen)
	}
	size := 4
	for size < 2*len(sv.spec.Targets) {
		size *= 2
	}
	r := &quicRoutes{keys: make([]uint64, size), pos: make([]int32, size), mask: uint64(size - 1)}
	for _, lb := range append([]*encap.QUICLB{q}, sv.spec.QUICPrevious...) {
		switch {
		case lb == nil:
			return fmt.Errorf("a nil previous QUIC configuration")
		case r.lbs[lb.ConfigID()] != nil:
			return fmt.Errorf("two QUIC configurations with config rotation %d", lb.ConfigID())
		case lb.ServerIDLen() != q.ServerIDLen():
			return fmt.Errorf("QUIC configuration %d has %d-byte server IDs, the current one %d (they share the backends' server IDs)",
				lb.ConfigID(), lb.ServerIDLen(), q.ServerIDLen())
		}
		r.lbs[lb.ConfigID()] = lb
	}
	for i := range r.pos {
		r.pos[i] = -1
	}
	for j, t := range sv.spec.Targets {
		if t.ServerID == nil {
			continue
		}
		if len(t.ServerID) != q.ServerIDLen() {
			return fmt.Errorf("backend %d: server ID of %d bytes (the service's are %d)", j, len(t.ServerID), q.ServerIDLen())
		}
		if o := r.lookup(t.ServerID); o >= 0 {
			return fmt.Errorf("backend %d: server ID %x is also backend %d's", j, t.ServerID, o)
		}
		k := sidKey(t.ServerID)
		i := r.slot(k)
		for r.pos[i] >= 0 {
			i = (i + 1) & r.mask
		}
		r.keys[i], r.pos[i] = k, int32(j)
	}
	sv.quic = r
	return nil
}

// routeQUIC forwards the frame of QUIC service sv (index si) to the backend its destination
// connection ID names, and reports true; or reports false, counted as a fallback, when the
// packet has no routable ID or that backend is not up, and leaves it to the 4-tuple path.
func (e *Engine) routeQUIC(si int, sv *service, f *Frame, p *encap.Packet) bool {
	r := sv.quic
	pl := p.UDPPayload(f.Buf[f.Off : f.Off+f.Len])
	bi := -1
	if lb, h, ok := r.config(pl); ok {
		if sid, ok := lb.ServerID(pl[h.DCIDOff:h.DCIDOff+h.DCIDLen], &e.qs); ok {
			bi = r.lookup(sid)
		}
	}
	if bi < 0 || bi >= len(sv.targets) || !sv.spec.Sched.Backend(bi).Up {
		e.c[cQUICFallback]++
		return false
	}
	e.c[cQUICRouted]++
	e.forward(si, sv, f, p, bi, false)
	return true
}

// config finds the QUIC header of the UDP payload pl and the configuration its destination
// connection ID names by its config rotation bits. A short header does not carry the ID's
// length: it is the named configuration's.
func (r *quicRoutes) config(pl []byte) (*encap.QUICLB, encap.QUICHeader, bool) {
	var h encap.QUICHeader
	if len(pl) < 2 {
		return nil, h, false
	}
	var lb *encap.QUICLB
	if pl[0]&0x80 == 0 {
		if lb = r.lbs[pl[1]>>5]; lb == nil {
			return nil, h, false
		}
		h, ok := encap.QUICDestConnID(pl, lb.ConnIDLen())
		return lb, h, ok
	}
	h, ok := encap.QUICDestConnID(pl, 0)
	if !ok || h.DCIDLen == 0 {
		return nil, h, false
	}
	lb = r.lbs[pl[h.DCIDOff]>>5]
	return lb, h, lb != nil
}
