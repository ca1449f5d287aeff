package ha

import (
	"errors"
	"net/netip"
	"time"
)

// DropReason says why a received VRRP message was not used. Reasons are small consecutive
// integers so they can index Status.Drops.
type DropReason uint8

const (
	dropNone DropReason = iota
	// DropTruncated: shorter than the VRRP header.
	DropTruncated
	// DropVersion: not VRRP version 3.
	DropVersion
	// DropType: not an advertisement.
	DropType
	// DropAddrCount: the address count disagrees with the length.
	DropAddrCount
	// DropChecksum: the checksum (with the pseudo-header) is wrong.
	DropChecksum
	// DropFamily: source and destination addresses are not of one family.
	DropFamily
	// DropInterval: a zero advertisement interval.
	DropInterval
	// DropTTL: TTL or hop limit not 255 (the sender is not on the link).
	DropTTL
	// DropVRID: for another virtual router on the same link (normal, not an error).
	DropVRID
	// DropPeer: with unicast peers configured, from an address that is not one of them.
	DropPeer
	// DropSelf: our own advertisement.
	DropSelf
	// NumDropReasons is the number of reasons (the length of Status.Drops).
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"none", "truncated", "version", "type", "addr_count",
	"checksum", "family", "interval", "ttl", "vrid", "peer", "self"}

// String is the reason's metric label.
func (d DropReason) String() string {
	if d < NumDropReasons {
		return dropNames[d]
	}
	return "unknown"
}

func reasonOf(err error) DropReason {
	switch {
	case errors.Is(err, ErrTruncated):
		return DropTruncated
	case errors.Is(err, ErrVersion):
		return DropVersion
	case errors.Is(err, ErrType):
		return DropType
	case errors.Is(err, ErrAddrCount):
		return DropAddrCount
	case errors.Is(err, ErrChecksum):
		return DropChecksum
	case errors.Is(err, ErrFamily):
		return DropFamily
	case errors.Is(err, ErrBadInterval):
		return DropInterval
	}
	return DropTruncated
}

// Status is a snapshot of a Router for the API and metrics.
type Status struct {
	Interface string `json:"interface"`
	VRID      uint8  `json:"vrid"`
	Priority  uint8  `json:"priority"`
	State     State  `json:"state"`
	// Demoted: Demote was called and the router has not been master since.
	Demoted bool `json:"demoted"`
	// Source is this router's primary address (valid once Run has opened the transport).
	Source netip.Addr `json:"source"`
	// Master is the current master as far as this router knows (itself when master; invalid
	// when no master has been heard), with its priority and advertisement interval.
	Master               netip.Addr    `json:"master"`
	MasterPriority       uint8         `json:"master_priority"`
	MasterAdvertInterval time.Duration `json:"master_advert_interval"`
	// MasterDownInterval is 3*MasterAdvertInterval + skew: how long a backup waits.
	MasterDownInterval time.Duration `json:"master_down_interval"`
	Transitions        uint64        `json:"transitions"`
	LastTransition     time.Time     `json:"last_transition"`
	// ResignsReceived counts priority-0 advertisements (a master resigning); LastResign is
	// when the last one arrived.
	ResignsReceived uint64    `json:"resigns_received"`
	LastResign      time.Time `json:"last_resign"`
	AdvertsSent     uint64    `json:"adverts_sent"`
	AdvertsReceived uint64    `json:"adverts_received"`
	SendErrors      uint64    `json:"send_errors"`
	Announcements   uint64    `json:"announcements"`
	HookErrors      uint64    `json:"hook_errors"`
	// AddrMismatches counts accepted advertisements whose address list differs from ours.
	AddrMismatches uint64 `json:"addr_mismatches"`
	// Drops counts received messages not used, indexed by DropReason (see DropCounts).
	Drops [NumDropReasons]uint64 `json:"drops"`
	// SplitBrain: as master, this router heard another master with lower precedence within
	// the last three advertisement intervals. SplitBrainEvents counts such advertisements
	// and SplitBrainPeer is the last one's source.
	SplitBrain       bool       `json:"split_brain"`
	SplitBrainEvents uint64     `json:"split_brain_events"`
	SplitBrainPeer   netip.Addr `json:"split_brain_peer"`
}

// DropCounts returns the non-zero drop counters by reason name (for an API).
func (s *Status) DropCounts() map[string]uint64 {
	m := make(map[string]uint64)
	for r, n := range s.Drops {
		if n != 0 {
			m[DropReason(r).String()] = n
		}
	}
	return m
}

// Status returns a snapshot of the router's state and counters.
func (r *Router) Status() Status {
	now := time.Now()
	r.mu.Lock()
	m := &r.m
	s := Status{
		Interface:        r.cfg.Interface,
		VRID:             r.cfg.VirtualRouterID,
		Priority:         m.priority,
		State:            m.state,
		Demoted:          m.demoted,
		Source:           m.primary,
		Master:           m.master,
		MasterPriority:   m.masterPrio,
		Transitions:      m.transitions,
		LastTransition:   m.lastTransition,
		ResignsReceived:  m.resigns,
		LastResign:       m.lastResign,
		AdvertsSent:      r.sent,
		SendErrors:       r.sendErr,
		Announcements:    r.annc,
		HookErrors:       r.hookErr,
		SplitBrain:       m.splitBrain(now),
		SplitBrainEvents: m.splitBrainEvents,
		SplitBrainPeer:   m.splitBrainPeer,
	}
	switch m.state {
	case Master:
		s.MasterAdvertInterval = r.cfg.AdvertInterval
	case Backup:
		s.MasterAdvertInterval = m.masterAdvInt
		s.MasterDownInterval = m.masterDown()
	}
	r.mu.Unlock()
	s.AdvertsReceived = r.recvd.Load()
	s.AddrMismatches = r.mismat.Load()
	for i := range s.Drops {
		s.Drops[i] = r.drops[i].Load()
	}
	return s
}
