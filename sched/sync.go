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

// coreSync is a core's connection-sync state (SetSync, SetSyncRemovals, SetSyncTemplates).
type coreSync struct {
	miss    func(svc *Service, k Key) int
	track   bool
	chg     bool
	state   uint8
	refresh uint16 // in 2^30 ns, the clock of entry.synced and of the persistence table
	gone    func(k *Key, st ConnState)
	tplMiss func(svc *Service, k Key) int
	tplSend bool
	tplChg  bool
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
	c.sy.miss = miss
	c.sy.track = track
	r := (int64(refresh) + 1<<30 - 1) >> 30
	c.sy.refresh = uint16(min(max(r, 1), 1<<15))
}

// SetSyncRemovals connects the core's removals to connection sync: gone is called, during
// a Schedule, with the key and last state of an entry that leaves the table while its
// peers' copy would outlive it: a live connection (established, UDP, other) evicted for a
// new flow, a closed connection's tuple reused by a new one (the peers' copy would send
// the new connection's first packets after its SYN to the old backend), a flow dropped
// because no backend can take it. An entry that expires idle is not reported: its peers'
// copy, refreshed no later than the entry was last seen and aged by the same timeouts,
// has expired too; nor is a half-open connection (never sent) or a closing one that is
// evicted (its peers' copy runs out on the short closing timeout). k is valid only
// during the call. Owner only, before the core is used.
func (c *Core) SetSyncRemovals(gone func(k *Key, st ConnState)) { c.sy.gone = gone }

// SetSyncTemplates connects persistence to connection sync. A new flow of a persistent
// service whose client prefix this host does not remember asks miss (when not nil) for the
// position of the backend a peer's template names (-1: none); one that is up is taken and
// remembered as the client's. With send set, every Schedule notes whether it wrote a
// template the peers should hear about (read it with SyncTemplate): a new one, one moved
// to another backend, or one refreshed when they last heard of it min(refresh,
// timeout/4) ago, so that a long-lived client's template outlives its timeout on the peers
// too. Owner only, before the core is used.
func (c *Core) SetSyncTemplates(miss func(svc *Service, k Key) int, send bool) {
	c.sy.tplMiss, c.sy.tplSend = miss, send
}

// SyncTemplate reports whether the last Schedule wrote the client's persistence template
// in a way peers should hear about (see SetSyncTemplates); its backend is the position
// Schedule returned. It clears the note. Owner only.
func (c *Core) SyncTemplate() bool {
	chg := c.sy.tplChg
	c.sy.tplChg = false
	return chg
}

// remember stores client key pk's persistence (backend id, at persistence tick pn), only
// refreshing it when only is set, and notes a template for the peers when it is due.
func (c *Core) remember(svc *Service, pk uint64, id, pn uint32, only bool) {
	every := uint32(0)
	if c.sy.tplSend {
		every = min(uint32(c.sy.refresh), max(svc.pticks/4, 1))
	}
	if c.persist.storeSync(pk, id, pn, only, every) {
		c.sy.tplChg = true
	}
}

// templateFromPeer asks the template hook for the backend of a client new to this host;
// -1 when it has none, or one that is not up in svc.
func (c *Core) templateFromPeer(svc *Service, k *Key) int {
	if c.sy.tplMiss == nil {
		return -1
	}
	p := c.sy.tplMiss(svc, *k)
	if p < 0 || p >= len(svc.backends) || !svc.backends[p].Up {
		return -1
	}
	return p
}

// gone reports entry w of b, about to leave the table, to the removal hook when its peers
// should hear of it (see SetSyncRemovals): closing says whether an entry in fin_wait or
// close counts. Inlined: without sync an eviction pays one test.
func (c *Core) gone(b *bucket, w int, closing bool) {
	if c.sy.gone != nil {
		c.tellGone(b, w, closing)
	}
}

func (c *Core) tellGone(b *bucket, w int, closing bool) {
	switch st := b.state[w]; {
	case st == stSynRecv, !closing && (st == stFinWait || st == stClose):
	default:
		c.sy.gone(&b.ent[w].key, ConnState(st))
	}
}

// SyncChange reports whether the last Schedule changed the flow's entry in a way peers
// should hear about (see SetSync), and the entry's state; it clears the note. The
// backend is the position Schedule returned. Owner only.
func (c *Core) SyncChange() (ConnState, bool) {
	if !c.sy.chg {
		return 0, false
	}
	c.sy.chg = false
	return ConnState(c.sy.state), true
}

// noteSync records that the entry e (state st) changed (changed) or was merely seen at
// tick t, for SyncChange.
func (c *Core) noteSync(e *entry, st uint8, changed bool, t uint32) {
	now := uint16(t >> syncShift)
	if st == stSynRecv || (!changed && now-e.synced < c.sy.refresh) {
		return
	}
	e.synced = now
	c.sy.chg, c.sy.state = true, st
}

// fromPeer asks the sync hook for the backend of the new flow k; -1 when it has none, or
// one that is not up in svc.
func (c *Core) fromPeer(svc *Service, k *Key, tcpFlags uint8) int {
	if c.sy.miss == nil || (k.Proto == protoTCP && tcpFlags&(FlagSYN|FlagACK) == FlagSYN) {
		return -1
	}
	p := c.sy.miss(svc, *k) // by value: a pointer would make every caller's key escape
	if p < 0 || p >= len(svc.backends) || !svc.backends[p].Up {
		return -1
	}
	return p
}
