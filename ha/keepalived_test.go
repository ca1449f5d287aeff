package ha

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// Interoperability with keepalived (VRRP version 3) in the other LB namespace.

// keepalived is a keepalived process (VRRP subsystem only) with its own files in a temp dir.
type keepalived struct {
	cmd  *exec.Cmd
	out  *testnet.Output
	host *lab.Host
	vip  netip.Addr
}

func startKeepalived(t *testing.T, h *lab.Host, vip netip.Addr, prio uint8, master bool) *keepalived {
	t.Helper()
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived)")
	}
	dir := t.TempDir()
	state, preempt := "BACKUP", "nopreempt"
	if master {
		state, preempt = "MASTER", ""
	}
	conf := fmt.Sprintf(`global_defs {
    router_id xlb_interop
    vrrp_version 3
    vrrp_garp_master_repeat 1
    vrrp_garp_master_refresh 0
}
vrrp_instance xlb {
    state %s
    %s
    interface eth0
    virtual_router_id 42
    priority %d
    advert_int %.2f
    virtual_ipaddress {
        %s dev eth0
    }
}
`, state, preempt, prio, e2eInterval.Seconds(), vipPrefix(vip))
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &keepalived{out: &testnet.Output{}, host: h, vip: vip}
	k.cmd = exec.Command(bin, "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--dont-respawn", "-f", path,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"),
		"-c", filepath.Join(dir, "checkers.pid"), "-b", filepath.Join(dir, "bfd.pid"))
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.Start(k.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.kill()
		if t.Failed() {
			t.Logf("keepalived output:\n%s", k.out.String())
		}
	})
	return k
}

// kill SIGKILLs keepalived's process group (parent and VRRP child): no priority 0 goes out.
func (k *keepalived) kill() {
	if k.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	_ = k.cmd.Wait()
}

// stop sends SIGTERM: keepalived resigns with priority 0 and removes the VIP.
func (k *keepalived) stop(t *testing.T) {
	t.Helper()
	if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("keepalived did not exit on SIGTERM")
	}
}

// hasVIP reports whether keepalived put the VIP on its interface (it does so as master).
func (k *keepalived) hasVIP(t *testing.T) bool { return hasVIP(t, k.host, k.vip) }

func TestKeepalivedInterop(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived)")
	}
	skew := func(prio int) time.Duration { return time.Duration(256-prio) * e2eInterval / 256 }
	down := func(prio int) time.Duration { return 3*e2eInterval + skew(prio) }

	t.Run("xlb master, keepalived backup", func(t *testing.T) {
		n := e2eNet(t, false)
		x := startLBRouter(t, n.LBs[0], e2eConfig(n, false, 200, true))
		waitMaster(t, x.r, time.Now(), 5*time.Second)
		k := startKeepalived(t, n.LBs[1], n.VIP, 100, false)
		// keepalived accepts xlb's advertisements (version, checksum, addresses): it stays
		// backup and never takes the VIP.
		time.Sleep(2*time.Second + 5*down(100))
		if k.hasVIP(t) {
			t.Fatalf("keepalived took the VIP while xlb was master:\n%s", k.out.String())
		}
		if !strings.Contains(k.out.String(), "Entering BACKUP STATE") {
			t.Fatalf("keepalived never entered BACKUP:\n%s", k.out.String())
		}
		// Clean stop: xlb resigns with priority 0, keepalived takes over after its skew.
		at := time.Now()
		if err := x.stop(); err != nil {
			t.Fatal(err)
		}
		took := waitFor2(t, "keepalived takes the VIP", 5*time.Second, k.hasVIP)
		t.Logf("keepalived took over from a stopped xlb (priority 0) in %v (skew %v)", took.Sub(at), skew(100))
		// The timing is only logged (keepalived's own reaction time under load varies); its log
		// proves it took over because of the priority-0 advertisement, not a timeout.
		waitFor(t, "keepalived logs the priority-0 advert", 2*time.Second, func() bool {
			return strings.Contains(k.out.String(), "Backup received priority 0 advertisement")
		})
		// xlb comes back with the higher priority and preempts keepalived.
		x = startLBRouter(t, n.LBs[0], e2eConfig(n, false, 200, true))
		waitMaster(t, x.r, time.Now(), 5*time.Second)
		waitFor(t, "keepalived drops the VIP", 5*time.Second, func() bool { return !k.hasVIP(t) })
		time.Sleep(3 * e2eInterval)

		at = time.Now()
		if err := x.crash(); err == nil {
			t.Fatal("Run returned nil after its transport was closed")
		}
		took = waitFor2(t, "keepalived takes the VIP", 5*time.Second, k.hasVIP)
		t.Logf("keepalived took over from a crashed xlb in %v (Master_Down_Interval %v)", took.Sub(at), down(100))
		if took.Sub(at) > down(100)+2*e2eInterval {
			t.Errorf("keepalived took %v to take over, want about %v", took.Sub(at), down(100))
		}

		// xlb returns without preemption: it hears keepalived's advertisements and stays backup.
		x = startLBRouter(t, n.LBs[0], e2eConfig(n, false, 200, false))
		time.Sleep(5 * down(200))
		st := x.r.Status()
		if st.State != Backup || st.AdvertsReceived == 0 || st.Master != n.LBs[1].Addr() || st.MasterPriority != 100 {
			t.Fatalf("xlb did not follow keepalived's adverts: %+v", st)
		}
		// keepalived dies (SIGKILL): xlb takes over.
		at = time.Now()
		k.kill()
		tookX := waitMaster(t, x.r, at, 5*time.Second)
		t.Logf("xlb took over from a killed keepalived in %v (Master_Down_Interval %v)", tookX, down(200))
		waitFor(t, "VIP on xlb's LB", 5*time.Second, func() bool { return hasVIP(t, n.LBs[0], n.VIP) })
	})

	t.Run("keepalived master, xlb backup", func(t *testing.T) {
		n := e2eNet(t, false)
		k := startKeepalived(t, n.LBs[1], n.VIP, 200, true)
		waitFor2(t, "keepalived master with the VIP", 10*time.Second, k.hasVIP)
		x := startLBRouter(t, n.LBs[0], e2eConfig(n, false, 100, true))
		time.Sleep(5 * down(100))
		st := x.r.Status()
		if st.State != Backup || st.Master != n.LBs[1].Addr() || st.MasterPriority != 200 || st.AdvertsReceived < 5 {
			t.Fatalf("xlb backup status: %+v", st)
		}
		for r, c := range st.Drops {
			if DropReason(r) != DropSelf && c != 0 {
				t.Errorf("xlb dropped %d of keepalived's messages: %v", c, DropReason(r))
			}
		}
		// Clean stop: keepalived sends priority 0, xlb takes over after its skew.
		at := time.Now()
		k.stop(t)
		took := waitMaster(t, x.r, at, 5*time.Second)
		st = x.r.Status()
		if st.ResignsReceived != 1 {
			t.Fatalf("xlb received %d priority-0 adverts from keepalived, want 1", st.ResignsReceived)
		}
		// keepalived needs about a second from SIGTERM to its priority-0 advert: measure from
		// the advert's arrival.
		fromResign := st.LastTransition.Sub(st.LastResign)
		t.Logf("xlb took over from a stopped keepalived in %v after SIGTERM, %v after its priority-0 advert (skew %v)",
			took, fromResign, skew(100))
		if fromResign > skew(100)+e2eInterval {
			t.Errorf("takeover %v after priority 0, want about the skew %v", fromResign, skew(100))
		}
		waitFor(t, "VIP on xlb's LB", 5*time.Second, func() bool { return hasVIP(t, n.LBs[0], n.VIP) })

		// keepalived returns with the higher priority and preempts xlb; then it is killed and
		// xlb takes over again after Master_Down_Interval.
		k = startKeepalived(t, n.LBs[1], n.VIP, 200, true)
		waitFor(t, "xlb yields to keepalived", 10*time.Second, func() bool { return x.r.State() == Backup })
		waitFor2(t, "keepalived has the VIP", 5*time.Second, k.hasVIP)
		if !vipSettles(t, n.LBs[0], n.VIP, false) {
			t.Fatal("xlb kept the VIP as backup")
		}
		time.Sleep(3 * e2eInterval)
		at = time.Now()
		k.kill()
		took = waitMaster(t, x.r, at, 5*time.Second)
		t.Logf("xlb took over from a killed keepalived in %v (Master_Down_Interval %v)", took, down(100))
		if took > down(100)+e2eInterval {
			t.Errorf("takeover took %v, want within %v", took, down(100))
		}
	})
}

func TestKeepalivedInteropIPv6(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived)")
	}
	n := e2eNet(t, true)
	// keepalived master over IPv6 (ff02::12, link-local sources), xlb backup.
	k := startKeepalived(t, n.LBs[1], n.VIP6, 200, true)
	waitFor2(t, "keepalived master with the IPv6 VIP", 10*time.Second, k.hasVIP)
	x := startLBRouter(t, n.LBs[0], e2eConfig(n, true, 150, true))
	time.Sleep(10 * e2eInterval)
	st := x.r.Status()
	if st.State != Backup || st.MasterPriority != 200 || !st.Master.IsLinkLocalUnicast() || st.AdvertsReceived < 5 {
		t.Fatalf("xlb backup status: %+v", st)
	}
	at := time.Now()
	k.kill()
	took := waitMaster(t, x.r, at, 5*time.Second)
	t.Logf("IPv6: xlb took over from a killed keepalived in %v", took)
	waitFor(t, "IPv6 VIP on xlb's LB", 5*time.Second, func() bool { return hasVIP(t, n.LBs[0], n.VIP6) })

	// keepalived returns as a lower-priority backup and must accept xlb's IPv6 adverts: it
	// settles as backup without the VIP (if a stalled start let it time out once, xlb's
	// higher priority makes it yield), and xlb stays master.
	k = startKeepalived(t, n.LBs[1], n.VIP6, 100, false)
	time.Sleep(2*time.Second + 10*e2eInterval)
	waitFor(t, "keepalived backup without the VIP", 5*time.Second, func() bool { return !k.hasVIP(t) })
	if !strings.Contains(k.out.String(), "Entering BACKUP STATE") {
		t.Fatalf("keepalived never entered BACKUP:\n%s", k.out.String())
	}
	if x.r.State() != Master || !hasVIP(t, n.LBs[0], n.VIP6) {
		t.Fatalf("xlb lost mastership: %v", x.r.State())
	}
}

// waitFor2 polls cond and returns the time it first held.
func waitFor2(t *testing.T, what string, within time.Duration, cond func(*testing.T) bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Now()
}
