package sched

import "time"

// NumConnStates is the number of ConnState values (walk.go).
const NumConnStates = int(numStates)

// Timeout returns the idle timeout of state s under t (zero fields take DefaultTimeouts'
// values; an unknown state gets Other's), rounded as the connection table rounds it.
func (t Timeouts) Timeout(s ConnState) time.Duration {
	tab := t.table()
	if int(s) >= NumConnStates {
		s = ConnOther
	}
	return time.Duration(int64(tab[s]) << tickShift)
}

// syncShift converts table ticks to the coarse clock of entry.synced: 2^30 ns (1.07 s)
// per step, 16 bits (19 hours) per wrap.
const syncShift = 30 - tickShift

// SetSync connects the core to connection sync. For a packet of a flow the table does not
// hold (other than a TCP SYN without ACK, which starts a new connection), miss is asked
// first: it returns the position in svc of the backend the flow had on a peer host, or -1;
// a position whose backend is up is taken (and recorded) instead of the strategy's pick.
// With track set, every Schedule notes whether the flow's entry changed in a way peers
// should hear about (read it with SyncChange): an entry that is new or moved to another
// backend, or whose state changed, unless it is in SynRecv (a half-open connection is not
// worth a record: the cost under a SYN flood); and a known flow again when its last note
// is refresh old, so that a long-lived flow stays alive on the peers. miss may be nil.
// For a persistent service, a flow placed by miss also sets its client prefix's
// persistence to that backend, so that after a failover the client's new connections
// follow the connections that survived it.
// Owner only, before the core is used.
func (c *Core) SetSync(miss func(svc *Service, k Key) int, track bool, refresh time.Duration) {
	c.syncMiss = miss
	c.syncTrack = track
	r := (int64(refresh) + 1<<30 - 1) >> 30
	c.syncRefresh = uint16(min(max(r, 1), 1<<15))
}

// SyncChange reports whether the last Schedule changed the flow's entry in a way peers
// should hear about (see SetSync), and the entry's state; it clears the note. The
// backend is the position Schedule returned. Owner only.
func (c *Core) SyncChange() (ConnState, bool) {
	if !c.syncChg {
		return 0, false
	}
	c.syncChg = false
	return ConnState(c.syncState), true
}

// noteSync records that the entry e (state st) changed (changed) or was merely seen at
// tick t, for SyncChange.
func (c *Core) noteSync(e *entry, st uint8, changed bool, t uint32) {
	now := uint16(t >> syncShift)
	if st == stSynRecv || (!changed && now-e.synced < c.syncRefresh) {
		return
	}
	e.synced = now
	c.syncChg, c.syncState = true, st
}

// fromPeer asks the sync hook for the backend of the new flow k; -1 when it has none, or
// one that is not up in svc.
func (c *Core) fromPeer(svc *Service, k *Key, tcpFlags uint8) int {
	if c.syncMiss == nil || (k.Proto == protoTCP && tcpFlags&(FlagSYN|FlagACK) == FlagSYN) {
		return -1
	}
	p := c.syncMiss(svc, *k) // by value: a pointer would make every caller's key escape
	if p < 0 || p >= len(svc.backends) || !svc.backends[p].Up {
		return -1
	}
	return p
}
