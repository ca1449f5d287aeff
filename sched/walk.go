package sched

import (
	"runtime"
	"time"
)

// ConnState is the state of a connection-table entry, named as LVS names them
// (ipvsadm -Lnc): the balancer infers it from the client's TCP flags.
type ConnState uint8

// The states of an entry; each has its own idle timeout (Timeouts).
const (
	ConnSynRecv     = ConnState(stSynRecv)
	ConnEstablished = ConnState(stEstablished)
	ConnFinWait     = ConnState(stFinWait)
	ConnClose       = ConnState(stClose)
	ConnUDP         = ConnState(stUDP)
	ConnOther       = ConnState(stOther)
)

// String returns the state's LVS name: SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE,
// UDP, or NONE for other protocols.
func (s ConnState) String() string {
	switch s {
	case ConnSynRecv:
		return "SYN_RECV"
	case ConnEstablished:
		return "ESTABLISHED"
	case ConnFinWait:
		return "FIN_WAIT"
	case ConnClose:
		return "CLOSE"
	case ConnUDP:
		return "UDP"
	}
	return "NONE"
}

// Active reports whether an entry in state s counts as an active connection
// (ipvsadm's ActiveConn: an established TCP connection); the others count as
// inactive (InActConn), UDP included, as in IPVS.
func (s ConnState) Active() bool { return s == ConnEstablished }

// Conn is one connection-table entry as a listing shows it.
type Conn struct {
	Key     Key
	Service int    // the service's ServiceConfig.Index
	Backend uint32 // the backend's ID
	State   ConnState
	// Expires is how long the entry stays without another packet.
	Expires time.Duration
}

// Buckets returns the number of buckets of the connection table (8 entries
// each): Walk's positions run from 0 to Buckets().
func (c *Core) Buckets() int { return len(c.t.b) }

// Walk calls fn for every live entry (not idle-expired at now) of the
// buckets [from, from+n) and returns the next position (Buckets() when the
// walk is through). A listing walks the table in steps between batches, so
// the worker never stops forwarding for long; an entry that moves between
// steps may be seen twice or not at all, as with any table read while it
// changes. Owner only; it changes nothing and allocates nothing itself.
func (c *Core) Walk(from, n int, now int64, fn func(Conn)) int {
	if from < 0 {
		from = 0
	}
	end := min(from+max(n, 0), len(c.t.b))
	t := tick(now)
	for i := from; i < end; i++ {
		b := &c.t.b[i]
		if b.tags[0]|b.tags[1] == 0 {
			continue
		}
		for w := range ways {
			if !b.used(w) {
				continue
			}
			age, limit := t-b.seen[w], c.timeout[b.state[w]]
			if age > limit {
				continue
			}
			en := &b.ent[w]
			fn(Conn{Key: en.key, Service: int(en.svc), Backend: en.backend, State: ConnState(b.state[w]),
				Expires: time.Duration(uint64(limit-age) << tickShift)})
		}
	}
	runtime.KeepAlive(c) // see newTable
	return end
}

// reused reports whether a packet with tcpFlags on an entry in state st opens a new
// connection on the 4-tuple of one that was closing or closed: a SYN without ACK after a
// FIN or an RST. Such a connection is scheduled afresh, as IPVS does with conn_reuse_mode
// 1, so it does not follow the old one to a backend that was drained meanwhile.
func reused(st, tcpFlags uint8) bool {
	return (st == stFinWait || st == stClose) && tcpFlags&(FlagSYN|FlagACK) == FlagSYN
}
