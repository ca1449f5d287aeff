package ha

import (
	"fmt"
	"net/netip"
	"time"
)

// State of a virtual router (RFC 5798 section 6.4).
type State uint8

const (
	// Initialize: not running (before Run and after it returns).
	Initialize State = iota
	// Backup: another router is master, or none has been heard from yet.
	Backup
	// Master: this router owns the VIPs and forwards for them.
	Master
	// Fault: a tracked script or interface failed (keepalived's FAULT): the router neither
	// advertises nor takes over, and leaves for Backup when the fault clears.
	Fault
)

func (s State) String() string {
	switch s {
	case Initialize:
		return "initialize"
	case Backup:
		return "backup"
	case Master:
		return "master"
	case Fault:
		return "fault"
	}
	return "unknown"
}

// MarshalText makes the state read as its name in JSON and YAML.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name (as an API client does).
func (s *State) UnmarshalText(b []byte) error {
	for _, st := range []State{Initialize, Backup, Master, Fault} {
		if st.String() == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("vrrp state %q: want initialize, backup, master or fault", b)
}

// action is what the IO loop must do after a machine step (bit set).
type action uint8

const (
	actSend       action = 1 << iota // send an advertisement with our priority
	actSendZero                      // send an advertisement with priority 0 (resign)
	actToMaster                      // call the master hook, announce the VIPs
	actToBackup                      // call the backup hook (stop forwarding)
	actAnnounce                      // announce the VIPs again (we stay master)
	actSplitBrain                    // another master advertised below us: report it
)

// machine is the RFC 5798 state machine, free of IO and of the clock: every step takes the
// current time and returns the actions to perform. Not safe for concurrent use.
type machine struct {
	priority     uint8
	advInt       time.Duration // our Advertisement_Interval
	preempt      bool
	preemptAfter time.Time // preemption is off before this (start + preempt delay)
	preemptDelay time.Duration
	primary      netip.Addr // our source address: the tie breaker

	state        State
	masterAdvInt time.Duration // Master_Adver_Interval (learnt from the master as backup)
	timer        time.Time     // Adver_Timer as master, Master_Down_Timer as backup
	demoted      bool          // do not preempt until this router is next master
	held         bool          // a sync group member is in fault: do not become master

	master     netip.Addr // the current master: us, or the source of the accepted advert
	masterPrio uint8

	splitBrainEvents uint64
	splitBrainUntil  time.Time
	splitBrainPeer   netip.Addr
	transitions      uint64
	lastTransition   time.Time
	resigns          uint64    // priority-0 advertisements received
	lastResign       time.Time // when the last one arrived
}

func newMachine(cfg *Config, primary netip.Addr) machine {
	return machine{
		priority:     cfg.Priority,
		advInt:       cfg.AdvertInterval,
		preempt:      cfg.PreemptEnabled(),
		preemptDelay: cfg.PreemptDelay,
		primary:      primary,
	}
}

// skew is Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
func (m *machine) skew() time.Duration {
	return time.Duration(256-int(m.priority)) * m.masterAdvInt / 256
}

// masterDown is Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
func (m *machine) masterDown() time.Duration { return 3*m.masterAdvInt + m.skew() }

func (m *machine) setState(now time.Time, s State) {
	if m.state != s {
		m.state = s
		m.transitions++
		m.lastTransition = now
	}
}

func (m *machine) becomeMaster(now time.Time) action {
	m.setState(now, Master)
	m.demoted = false
	m.master, m.masterPrio = m.primary, m.priority
	m.timer = now.Add(m.advInt)
	return actSend | actToMaster
}

func (m *machine) becomeBackup(now time.Time, masterAdvInt time.Duration) action {
	m.setState(now, Backup)
	m.masterAdvInt = masterAdvInt
	m.timer = now.Add(m.masterDown())
	return actToBackup
}

// start is the Startup event in Initialize.
func (m *machine) start(now time.Time) action {
	m.preemptAfter = now.Add(m.preemptDelay)
	m.master = netip.Addr{}
	if m.priority == 255 {
		return m.becomeMaster(now)
	}
	return m.becomeBackup(now, m.advInt)
}

// deadline is when timerFired must next be called.
func (m *machine) deadline() time.Time { return m.timer }

// timerFired handles the expiry of the Adver_Timer (master) or Master_Down_Timer (backup).
func (m *machine) timerFired(now time.Time) action {
	if m.state == Initialize || m.state == Fault || now.Before(m.timer) {
		return 0
	}
	if m.state == Master {
		m.timer = now.Add(m.advInt)
		return actSend
	}
	if m.held {
		m.timer = now.Add(m.masterDown()) // stay backup while a sync group member is in fault
		return 0
	}
	return m.becomeMaster(now)
}

// fault enters or leaves the Fault state: a master resigns (priority 0) and stops
// forwarding; a router leaving Fault starts over as backup.
func (m *machine) fault(now time.Time, on bool) action {
	switch {
	case on && m.state == Master:
		m.setState(now, Fault)
		m.master, m.timer = netip.Addr{}, time.Time{}
		return actSendZero | actToBackup
	case on && m.state == Backup:
		m.setState(now, Fault)
		m.timer = time.Time{}
	case !on && m.state == Fault:
		return m.becomeBackup(now, m.advInt)
	}
	return 0
}

// setPriority changes the priority this router advertises (tracked scripts and interfaces
// with a weight); a master advertises the new one at once.
func (m *machine) setPriority(now time.Time, p uint8) action {
	if p == m.priority {
		return 0
	}
	m.priority = p
	if m.state == Master {
		m.masterPrio = p
		m.timer = now.Add(m.advInt)
		return actSend
	}
	return 0
}

// force is a sync group's order: to Master (a member became master), to Backup (a member
// left master: resign without the sticky demotion), or held (a member is in fault: resign
// and do not take over until released).
func (m *machine) force(now time.Time, to State, held bool) action {
	m.held = held
	switch {
	case m.state == Fault || m.state == Initialize:
		return 0
	case to == Master && m.state == Backup && !held:
		return m.becomeMaster(now)
	case (to == Backup || held) && m.state == Master:
		m.master = netip.Addr{}
		return actSendZero | m.becomeBackup(now, m.advInt)
	}
	return 0
}

// canPreempt reports whether, as backup, a lower-priority master may be overridden now.
func (m *machine) canPreempt(now time.Time) bool {
	return m.preempt && !m.demoted && !now.Before(m.preemptAfter)
}

// advert handles a valid advertisement for our VRID from src.
func (m *machine) advert(now time.Time, adv *Advert, src netip.Addr) action {
	interval := fromCentis(adv.Interval)
	if adv.Priority == 0 {
		m.resigns++
		m.lastResign = now
	}
	switch m.state {
	case Backup:
		if adv.Priority == 0 {
			// The master resigned: take over after Skew_Time only.
			m.timer = now.Add(m.skew())
			return 0
		}
		if !m.canPreempt(now) || adv.Priority >= m.priority {
			m.masterAdvInt = interval
			m.timer = now.Add(m.masterDown())
			m.master, m.masterPrio = src, adv.Priority
		}
		// Otherwise preempt: ignore the lower-priority master and let Master_Down_Timer fire.
		return 0
	case Master:
		if adv.Priority == 0 {
			// Another router resigned: advertise at once so the backups hear a master.
			m.timer = now.Add(m.advInt)
			return actSend
		}
		if adv.Priority > m.priority || (adv.Priority == m.priority && addrGreater(src, m.primary)) {
			m.master, m.masterPrio = src, adv.Priority
			return m.becomeBackup(now, interval)
		}
		// A master with lower priority (or equal with a lower address): two masters at once.
		// Our advertisement makes it yield if it can hear us; say so and re-announce the VIPs.
		m.splitBrainEvents++
		m.splitBrainPeer = src
		m.splitBrainUntil = now.Add(3*m.advInt + m.advInt/2)
		m.timer = now.Add(m.advInt)
		return actSend | actAnnounce | actSplitBrain
	}
	return 0
}

// shutdown is the Shutdown event: a master resigns with priority 0.
func (m *machine) shutdown(now time.Time) action {
	var a action
	if m.state == Master {
		a = actSendZero | actToBackup
	}
	m.setState(now, Initialize)
	m.timer = time.Time{}
	m.master = netip.Addr{}
	return a
}

// demote makes a master resign (priority 0) and stay backup: it does not preempt again until it
// next becomes master, which it does only when no other master is heard. A backup just stops
// preempting. It reports whether this router was master.
func (m *machine) demote(now time.Time) action {
	m.demoted = true
	if m.state != Master {
		return 0
	}
	m.master = netip.Addr{}
	return actSendZero | m.becomeBackup(now, m.advInt)
}

// splitBrain reports whether another master was heard within the last few intervals.
func (m *machine) splitBrain(now time.Time) bool {
	return m.state == Master && now.Before(m.splitBrainUntil)
}

// addrGreater compares primary addresses as unsigned integers in network byte order.
func addrGreater(a, b netip.Addr) bool { return a.Compare(b) > 0 }
