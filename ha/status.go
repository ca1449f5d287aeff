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
	Interface string
	VRID      uint8
	Priority  uint8
	State     State
	// Demoted: Demote was called and the router has not been master since.
	Demoted bool
	// Source is this router's primary address (valid once Run has opened the transport).
	Source netip.Addr
	// Master is the current master as far as this router knows (itself when master; invalid
	// when no master has been heard), with its priority and advertisement interval.
	Master               netip.Addr
	MasterPriority       uint8
	MasterAdvertInterval time.Duration
	// MasterDownInterval is 3*MasterAdvertInterval + skew: how long a backup waits.
	MasterDownInterval time.Duration
	Transitions        uint64
	LastTransition     time.Time
	// ResignsReceived counts priority-0 advertisements (a master resigning); LastResign is
	// when the last one arrived.
	ResignsReceived uint64
	LastResign      time.Time
	AdvertsSent     uint64
	AdvertsReceived uint64
	SendErrors      uint64
	Announcements   uint64
	HookErrors      uint64
	// AddrMismatches counts accepted advertisements whose address list differs from ours.
	AddrMismatches uint64
	// Drops counts received messages not used, by DropReason.
	Drops [NumDropReasons]uint64
	// SplitBrain: as master, this router heard another master with lower precedence within
	// the last three advertisement intervals. SplitBrainEvents counts such advertisements
	// and SplitBrainPeer is the last one's source.
	SplitBrain       bool
	SplitBrainEvents uint64
	SplitBrainPeer   netip.Addr
}

// Status returns a snapshot of the router's state and counters.
func (r *Router) Status() Status {
	now := time.Now()
	r.mu.Lock()
	m := &r.m
	s := Status{
		Interface:        r.cfg.Interface,
		VRID:             r.cfg.VirtualRouterID,
		Priority:         r.cfg.Priority,
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
