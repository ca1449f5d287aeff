package sched

// persistTickShift turns a connection-table tick into the persistence clock's resolution
// (2^14 ticks of 2^16 ns: 1.07 s): a hit of a persistent flow refreshes the client's
// persistence entry when the two differ, so at most once a second per live flow.
const persistTickShift = persistShift - tickShift

// choose picks the backend for a new flow of svc: the client prefix's remembered backend
// when svc is persistent and that backend is in svc and up (a drained one, weight 0,
// included: as in IPVS it keeps its persistent clients), else the strategy's pick, which
// a persistent service then remembers for the prefix. A client this host does not know
// takes the backend a peer's template names, when connection sync has one (SetSyncTemplates)
// and that backend is up.
func (c *Core) choose(st *svcState, svc *Service, k *Key, now int64) int {
	if svc.pticks == 0 {
		return c.pick(st, svc, k)
	}
	pk, pn := c.persist.persistKey(svc, k), persistNow(now)
	if id, seen, ok := c.persist.lookup(pk, pn, svc.pticks); ok {
		if p := svc.ids.lookup(id); p >= 0 && svc.backends[p].Up {
			if seen != pn { // refreshed at most once a tick (1.07 s): a shared line is written rarely
				c.remember(svc, pk, id, pn, true)
			}
			c.c[cPersisted]++
			return int(p)
		}
	}
	p := c.templateFromPeer(svc, k)
	if p < 0 {
		p = c.pick(st, svc, k)
	}
	if p < 0 {
		return p
	}
	c.remember(svc, pk, svc.backends[p].ID, pn, false)
	// Another core may have remembered the same new client at the same moment, with its own
	// pick: every core reads the bucket in one order, so following what the table holds now
	// makes them agree (nearly always: both writes usually land before both reads).
	if id, _, ok := c.persist.lookup(pk, pn, svc.pticks); ok && id != svc.backends[p].ID {
		if q := svc.ids.lookup(id); q >= 0 && svc.backends[q].Up {
			return int(q)
		}
	}
	return p
}

// onePacket schedules one packet of a one-packet service: a new flow every time, nothing
// recorded in the connection table.
func (c *Core) onePacket(svc *Service, k *Key, now int64) int {
	c.c[cMisses]++
	c.c[cOnePacket]++
	p := c.choose(&c.svcs[svc.index], svc, k, now)
	if p < 0 {
		c.c[cNoBackend]++
	}
	return p
}
