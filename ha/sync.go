package ha

import (
	"sync"
	"time"
)

// SyncGroup makes virtual routers change state together, as keepalived's vrrp_sync_group:
// when one member becomes master the others become master too; when one leaves master for
// backup the other masters resign; while one is in fault the others resign and do not take
// over until no member is in fault. Give each member's Hooks.OnState a call to Changed.
// Its methods are safe for concurrent use.
type SyncGroup struct {
	mu      sync.Mutex
	members []*Router
	states  map[*Router]State
}

// NewSyncGroup returns an empty group; Add the members before they run.
func NewSyncGroup() *SyncGroup { return &SyncGroup{states: map[*Router]State{}} }

// Add makes r a member.
func (g *SyncGroup) Add(r *Router) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = append(g.members, r)
	g.states[r] = Initialize
}

// Changed tells the group that member r went from one state to another (call it from r's
// Hooks.OnState) and orders the other members accordingly. The orders are queued on their
// Run loops, so it never waits for them.
func (g *SyncGroup) Changed(r *Router, from, to State) {
	g.mu.Lock()
	g.states[r] = to
	fault := false
	for _, st := range g.states {
		fault = fault || st == Fault
	}
	others := make([]*Router, 0, len(g.members))
	for _, o := range g.members {
		if o != r {
			others = append(others, o)
		}
	}
	g.mu.Unlock()
	var order State // Initialize: only set or release the hold
	switch {
	case to == Master:
		order = Master
	case from == Master && to == Backup, to == Fault:
		order = Backup
	}
	for _, o := range others {
		o.command(func(m *machine, now time.Time) action { return m.force(now, order, fault) })
	}
}
