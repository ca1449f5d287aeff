package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestE2EVRRPInstances runs two real `xlb run` hosts with two VRRP instances each (VI_A holds
// the VIP of service web, VI_B a second VIP of service api) as keepalived users run them:
// VI_A tracks a script, VI_B an interface with weight -150, both notify a log. When lb0's
// script fails, VI_A goes to fault on lb0 and lb1 takes its VIP while lb0 stays master of
// VI_B: each host forwards one VIP, and the client reaches both; in a sync group VI_B follows
// VI_A to lb1 instead. The notify programs log the changes with keepalived's arguments; when
// the script recovers lb0 takes VI_A back. Then lb0's tracked interface goes down: VI_B's
// priority drops to 50 and lb1 preempts it, until the interface is back (root only; skips
// otherwise).
func TestE2EVRRPInstances(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed (Debian package nftables): the crash guard needs it")
	}
	testnet.Skip(t)
	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sync := range []bool{false, true} {
		name := "independent"
		if sync {
			name = "sync group"
		}
		t.Run(name, func(t *testing.T) { e2eInstances(t, bin, sync) })
	}
}

func e2eInstances(t *testing.T, bin string, sync bool) {
	tn := testnet.New(t, lab.Config{LBs: 2, Backends: 2, NoVIPOnLB: true, DisableIPv6: true})
	vip2 := netip.MustParseAddr("198.18.0.101")
	for _, h := range tn.LBs { // the interface VI_B tracks: a veth pair inside the namespace
		if err := h.Handle().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "trk0"}, PeerName: "trk1"}); err != nil {
			t.Fatal(err)
		}
		setLink(t, h, "trk1", true)
		setLink(t, h, "trk0", true)
	}
	for _, be := range tn.Backends {
		if err := be.AddAddr("lo", netip.PrefixFrom(vip2, 32)); err != nil { // a DR backend holds every VIP
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	logs := &testnet.Output{}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("xlb run logs:\n%s", logs.String())
		}
	})
	alive := filepath.Join(dir, "alive0")
	if err := os.WriteFile(alive, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	lbs := make([]*vrrpLB, 2)
	notes := make([]string, 2)
	for i, prio := range []int{200, 100} {
		notes[i] = filepath.Join(dir, fmt.Sprintf("notify%d.log", i))
		conf := filepath.Join(dir, fmt.Sprintf("lb%d.yaml", i))
		y := instancesConfig(tn, vip2, prio, filepath.Join(dir, fmt.Sprintf("alive%d", i)), notes[i], sync)
		y += fmt.Sprintf("api: {socket: %s}\n", filepath.Join(dir, fmt.Sprintf("lb%d.sock", i)))
		if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		h := tn.LBs[i]
		lbs[i] = &vrrpLB{t: t, host: h, bin: bin, conf: conf, logs: logs,
			api: &control.Client{Base: "http://" + config.DefaultAPIListen, HTTP: h.HTTPClient(lab.ClientOptions{Timeout: time.Second})}}
	}
	if err := os.WriteFile(filepath.Join(dir, "alive1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	states := func(lb *vrrpLB) string {
		var s []string
		for _, in := range lb.status().Instances {
			s = append(s, in.Name+"="+in.State.String())
		}
		return strings.Join(s, " ")
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				for i, lb := range lbs {
					select {
					case err := <-lb.exited:
						t.Errorf("lb%d exited: %v", i, err)
					default:
					}
				}
				t.Fatalf("timed out waiting for %s: lb0 %s, lb1 %s\nlb0 %+v\nlb1 %+v", what, states(lbs[0]), states(lbs[1]),
					lbs[0].status().Instances, lbs[1].status().Instances)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	client := tn.Client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	reach := func(vip netip.Addr) bool {
		resp, err := client.Get("http://" + vip.String() + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}

	lbs[0].start()
	waitFor("lb0 master of both", func() bool { return states(lbs[0]) == "VI_A=master VI_B=master" })
	lbs[1].start()
	waitFor("lb1 backup of both", func() bool { return states(lbs[1]) == "VI_A=backup VI_B=backup" })
	waitFor("both VIPs through lb0", func() bool { return reach(tn.VIP) && reach(vip2) })

	// lb0's tracked script fails: VI_A to fault there, lb1 takes VI_A only.
	if err := os.Remove(alive); err != nil {
		t.Fatal(err)
	}
	want0, want1 := "VI_A=fault VI_B=master", "VI_A=master VI_B=backup"
	if sync {
		want0, want1 = "VI_A=fault VI_B=backup", "VI_A=master VI_B=master"
	}
	waitFor("VI_A moved to lb1", func() bool { return states(lbs[0]) == want0 && states(lbs[1]) == want1 })
	// The state turns before the new master's hook has added the VIPs: wait for them.
	waitFor("the VIPs where the states put them", func() bool {
		return lbs[1].hasVIP(tn.VIP.String()) && !lbs[0].hasVIP(tn.VIP.String()) && lbs[0].hasVIP(vip2.String()) != sync
	})
	waitFor("both services reachable", func() bool { return reach(tn.VIP) && reach(vip2) })
	waitFor("notified", func() bool {
		n0, _ := os.ReadFile(notes[0])
		n1, _ := os.ReadFile(notes[1])
		return strings.Contains(string(n0), "INSTANCE VI_A FAULT 200") && strings.Contains(string(n1), "INSTANCE VI_A MASTER 100")
	})

	// The script recovers: lb0 (priority 200, preempting) takes VI_A back.
	if err := os.WriteFile(alive, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("lb0 master of both again", func() bool {
		return states(lbs[0]) == "VI_A=master VI_B=master" && states(lbs[1]) == "VI_A=backup VI_B=backup"
	})
	waitFor("both VIPs through lb0 again", func() bool { return reach(tn.VIP) && reach(vip2) })

	if !sync {
		// lb0's tracked interface goes down: VI_B at 200-150 = 50 < 100, lb1 preempts it.
		setLink(t, tn.LBs[0], "trk0", false)
		waitFor("VI_B moved to lb1", func() bool {
			st := lbs[0].status()
			return states(lbs[0]) == "VI_A=master VI_B=backup" && states(lbs[1]) == "VI_A=backup VI_B=master" &&
				len(st.Instances) == 2 && st.Instances[1].Priority == 50
		})
		waitFor("both services reachable", func() bool { return reach(tn.VIP) && reach(vip2) })
		setLink(t, tn.LBs[0], "trk0", true)
		waitFor("VI_B back on lb0", func() bool { return states(lbs[0]) == "VI_A=master VI_B=master" })
	}
	for i, lb := range lbs {
		if err := lb.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := <-lb.exited; err != nil {
			t.Errorf("lb%d exit: %v", i, err)
		}
	}
	for i, f := range notes {
		b, _ := os.ReadFile(f)
		t.Logf("lb%d notify log:\n%s", i, b)
		if !strings.Contains(string(b), "INSTANCE VI_A STOP") || !strings.Contains(string(b), "INSTANCE VI_B STOP") {
			t.Errorf("lb%d: no stop notification", i)
		}
	}
}

// setLink sets interface name of host h up or down.
func setLink(t *testing.T, h *lab.Host, name string, up bool) {
	t.Helper()
	l, err := h.Handle().LinkByName(name)
	if err == nil {
		if up {
			err = h.Handle().LinkSetUp(l)
		} else {
			err = h.Handle().LinkSetDown(l)
		}
	}
	if err != nil {
		t.Fatalf("%s %s up=%v: %v", h.Name(), name, up, err)
	}
}

// instancesConfig is one host's configuration for TestE2EVRRPInstances.
func instancesConfig(tn *lab.Net, vip2 netip.Addr, prio int, alive, notes string, sync bool) string {
	var b strings.Builder
	b.WriteString("interfaces: [{name: eth0}]\nservices:\n")
	for _, s := range []struct {
		name string
		vip  netip.Addr
	}{{"web", tn.VIP}, {"api", vip2}} {
		fmt.Fprintf(&b, "  - name: %s\n    vip: %s\n    port: 80\n    backends:\n", s.name, s.vip)
		for _, be := range tn.Backends {
			fmt.Fprintf(&b, "      - {name: %s, address: %s}\n", be.Name, be.Addr())
		}
		b.WriteString("    health: {kind: tcp, interval: 200ms, timeout: 150ms, rise: 1}\n")
	}
	notify := fmt.Sprintf("    notify: {any: [/bin/sh, -c, 'echo \"$*\" >> %s', sh]}\n", notes)
	b.WriteString("vrrp_instances:\n")
	for i, vip := range []netip.Addr{tn.VIP, vip2} {
		fmt.Fprintf(&b, "  - name: VI_%c\n    interface: eth0\n    virtual_router_id: %d\n    priority: %d\n"+
			"    advert_interval: %v\n    vips: [%s]\n%s", 'A'+i, 51+i, prio, vrrpInterval, vip, notify)
		if i == 0 {
			b.WriteString("    track_scripts: [{name: alive}]\n")
		} else {
			b.WriteString("    track_interfaces: [{name: trk0, weight: -150}]\n")
		}
	}
	if sync {
		b.WriteString("vrrp_sync_groups: [{name: G, instances: [VI_A, VI_B]}]\n")
	}
	fmt.Fprintf(&b, "vrrp_scripts:\n  - {name: alive, command: [test, -e, %s], interval: 200ms}\n", alive)
	return b.String()
}
