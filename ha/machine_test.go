package ha

import (
	"net/netip"
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	peerA = netip.MustParseAddr("198.18.0.1")
	peerB = netip.MustParseAddr("198.18.0.2")
)

func newTestMachine(prio uint8, preempt bool, primary netip.Addr) machine {
	cfg := Config{Interface: "x", VirtualRouterID: 1, Priority: prio, AdvertInterval: time.Second,
		Preempt: &preempt, VIPs: []netip.Addr{netip.MustParseAddr("198.19.0.10")}}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return newMachine(&cfg, primary)
}

func adv(prio uint8) *Advert { return &Advert{VRID: 1, Priority: prio, Interval: 100} }

func TestMasterDownInterval(t *testing.T) {
	// RFC 5798: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
	for _, c := range []struct {
		prio uint8
		want time.Duration
	}{
		{100, 3*time.Second + 156*time.Second/256},
		{254, 3*time.Second + 2*time.Second/256},
		{1, 3*time.Second + 255*time.Second/256},
	} {
		m := newTestMachine(c.prio, true, peerA)
		if a := m.start(t0); a != actToBackup || m.state != Backup {
			t.Fatalf("prio %d start: action %b state %v", c.prio, a, m.state)
		}
		if got := m.deadline().Sub(t0); got != c.want {
			t.Fatalf("prio %d: Master_Down_Interval %v, want %v", c.prio, got, c.want)
		}
	}
}

func TestBackupTakesOverWhenMasterSilent(t *testing.T) {
	m := newTestMachine(100, true, peerA)
	m.start(t0)
	now := t0.Add(500 * time.Millisecond)
	m.advert(now, adv(200), peerB)
	down := m.deadline()
	if want := now.Add(m.masterDown()); !down.Equal(want) {
		t.Fatalf("timer %v, want %v", down, want)
	}
	if a := m.timerFired(down.Add(-time.Millisecond)); a != 0 || m.state != Backup {
		t.Fatalf("early fire: action %b state %v", a, m.state)
	}
	if a := m.timerFired(down); a != actSend|actToMaster || m.state != Master {
		t.Fatalf("down timer: action %b state %v", a, m.state)
	}
	if m.master != peerA {
		t.Fatalf("master %v, want self", m.master)
	}
	if a := m.timerFired(down.Add(time.Second)); a != actSend {
		t.Fatalf("adver timer: action %b", a)
	}
}

func TestBackupAdoptsMasterInterval(t *testing.T) {
	m := newTestMachine(100, true, peerA)
	m.start(t0)
	m.advert(t0, &Advert{VRID: 1, Priority: 200, Interval: 10}, peerB) // 100ms
	want := 300*time.Millisecond + 156*100*time.Millisecond/256
	if got := m.deadline().Sub(t0); got != want {
		t.Fatalf("down interval %v, want %v", got, want)
	}
}

func TestPriorityZeroMeansSkew(t *testing.T) {
	m := newTestMachine(100, true, peerA)
	m.start(t0)
	m.advert(t0, adv(200), peerB)
	now := t0.Add(time.Second)
	if a := m.advert(now, adv(0), peerB); a != 0 {
		t.Fatalf("action %b", a)
	}
	if got, want := m.deadline().Sub(now), 156*time.Second/256; got != want {
		t.Fatalf("after priority 0 the backup waits %v, want skew %v", got, want)
	}
	// A master that hears priority 0 from another router advertises at once.
	ms := newTestMachine(255, true, peerA)
	ms.start(t0)
	if a := ms.advert(now, adv(0), peerB); a != actSend {
		t.Fatalf("master on priority 0: action %b", a)
	}
}

func TestPreemption(t *testing.T) {
	for _, preempt := range []bool{true, false} {
		m := newTestMachine(200, preempt, peerA)
		m.start(t0)
		first := m.deadline()
		// A lower-priority master keeps advertising.
		m.advert(t0.Add(time.Second), adv(100), peerB)
		if preempt && !m.deadline().Equal(first) {
			t.Fatal("preempt on: a lower-priority advert must not reset the down timer")
		}
		if !preempt && m.deadline().Equal(first) {
			t.Fatal("preempt off: a lower-priority advert must reset the down timer")
		}
	}
}

func TestPreemptDelay(t *testing.T) {
	m := newTestMachine(200, true, peerA)
	m.preemptDelay = 10 * time.Second
	m.start(t0)
	m.advert(t0.Add(time.Second), adv(100), peerB)
	if !m.deadline().Equal(t0.Add(time.Second).Add(m.masterDown())) {
		t.Fatal("within preempt_delay a lower-priority master must be accepted")
	}
	late := t0.Add(11 * time.Second)
	m.advert(late, adv(100), peerB)
	if m.deadline().After(late) {
		t.Fatal("after preempt_delay a lower-priority advert must be ignored")
	}
}

func TestMasterYields(t *testing.T) {
	for _, c := range []struct {
		name  string
		prio  uint8
		src   netip.Addr
		yield bool
	}{
		{"higher priority", 150, peerA, true},
		{"lower priority", 50, peerB, false},
		{"tie, higher address", 100, peerB, true},
		{"tie, lower address", 100, netip.MustParseAddr("198.18.0.0"), false},
	} {
		m := newTestMachine(100, true, peerA)
		m.start(t0)
		m.timerFired(m.deadline())
		a := m.advert(t0.Add(5*time.Second), adv(c.prio), c.src)
		if c.yield {
			if a != actToBackup || m.state != Backup || m.master != c.src {
				t.Errorf("%s: action %b state %v master %v", c.name, a, m.state, m.master)
			}
			continue
		}
		if a != actSend|actAnnounce|actSplitBrain || m.state != Master {
			t.Errorf("%s: action %b state %v", c.name, a, m.state)
		}
		if !m.splitBrain(t0.Add(5*time.Second)) || m.splitBrainEvents != 1 || m.splitBrainPeer != c.src {
			t.Errorf("%s: split brain not recorded", c.name)
		}
		if m.splitBrain(t0.Add(10 * time.Second)) {
			t.Errorf("%s: split brain still reported long after the last advert", c.name)
		}
	}
}

func TestOwnerStartsMaster(t *testing.T) {
	m := newTestMachine(255, true, peerA)
	if a := m.start(t0); a != actSend|actToMaster || m.state != Master {
		t.Fatalf("owner start: action %b state %v", a, m.state)
	}
}

func TestShutdownAndDemote(t *testing.T) {
	m := newTestMachine(200, true, peerA)
	m.start(t0)
	m.timerFired(m.deadline())
	if a := m.shutdown(t0.Add(10 * time.Second)); a != actSendZero|actToBackup || m.state != Initialize {
		t.Fatalf("shutdown as master: action %b state %v", a, m.state)
	}
	b := newTestMachine(200, true, peerA)
	b.start(t0)
	if a := b.shutdown(t0); a != 0 {
		t.Fatalf("shutdown as backup: action %b", a)
	}

	m = newTestMachine(200, true, peerA)
	m.start(t0)
	m.timerFired(m.deadline())
	now := t0.Add(10 * time.Second)
	if a := m.demote(now); a != actSendZero|actToBackup || m.state != Backup {
		t.Fatalf("demote: action %b state %v", a, m.state)
	}
	// The peer (priority 100) takes over; the demoted router does not preempt it.
	now = now.Add(time.Second)
	m.advert(now, adv(100), peerB)
	if !m.deadline().Equal(now.Add(m.masterDown())) {
		t.Fatal("demoted backup preempts a lower-priority master")
	}
	// When the peer goes silent the demoted router takes over again and is no longer demoted.
	if a := m.timerFired(m.deadline()); a&actToMaster == 0 || m.demoted {
		t.Fatalf("demoted backup did not take over from a silent master: %b", a)
	}
}

func TestFaultPriorityForce(t *testing.T) {
	m := newTestMachine(100, true, peerA)
	m.start(t0)
	m.timerFired(m.deadline())
	if m.state != Master {
		t.Fatal("not master")
	}
	// A lower priority is advertised at once.
	if a := m.setPriority(t0, 80); a != actSend || m.priority != 80 || m.masterPrio != 80 {
		t.Fatalf("setPriority as master: action %b prio %d", a, m.priority)
	}
	// Fault: a master resigns and stops forwarding; no timer, adverts and timers ignored.
	if a := m.fault(t0, true); a != actSendZero|actToBackup || m.state != Fault || !m.deadline().IsZero() {
		t.Fatalf("fault: action %b state %v", a, m.state)
	}
	if a := m.timerFired(t0.Add(time.Hour)); a != 0 || m.state != Fault {
		t.Fatalf("timer in fault: %b %v", a, m.state)
	}
	if a := m.advert(t0, adv(50), peerB); a != 0 || m.state != Fault {
		t.Fatalf("advert in fault: %b %v", a, m.state)
	}
	// Leaving fault starts over as backup.
	if a := m.fault(t0, false); a != actToBackup || m.state != Backup {
		t.Fatalf("fault cleared: action %b state %v", a, m.state)
	}
	// Held (a sync group member in fault): the down timer does not make it master.
	m.force(t0, Initialize, true)
	if a := m.timerFired(m.deadline()); a != 0 || m.state != Backup {
		t.Fatalf("held backup took over: %b %v", a, m.state)
	}
	// Released and ordered to master (a member became master): at once.
	if a := m.force(t0, Master, false); a != actSend|actToMaster || m.state != Master {
		t.Fatalf("forced master: %b %v", a, m.state)
	}
	// Ordered to backup: resigns, without the sticky demotion.
	if a := m.force(t0, Backup, false); a != actSendZero|actToBackup || m.state != Backup || m.demoted {
		t.Fatalf("forced backup: %b %v demoted %v", a, m.state, m.demoted)
	}
}

func TestStateText(t *testing.T) {
	for _, st := range []State{Initialize, Backup, Master, Fault} {
		b, err := st.MarshalText()
		var back State
		if err != nil || back.UnmarshalText(b) != nil || back != st {
			t.Errorf("%v: %q %v -> %v", st, b, err, back)
		}
	}
	var s State
	if s.UnmarshalText([]byte("bogus")) == nil {
		t.Error("bogus state accepted")
	}
}
