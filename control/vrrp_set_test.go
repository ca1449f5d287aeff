package control

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/ha"
	"github.com/xlb-dev/xlb/health"
)

// vrrpSetConfig has two instances, each holding the VIP of one service; B tracks script
// "alive" (fault when it fails) and A script "load" (priority -30 when it fails); B's notify
// programs write to LOG.
const vrrpSetConfig = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends: [{name: a, address: 198.18.0.11}]
    health: {kind: none}
  - name: api
    vip: 198.19.0.11
    port: 80
    backends: [{name: b, address: 198.18.0.12}]
    health: {kind: none}
vrrp_instances:
  - name: VI_A
    interface: eth0
    virtual_router_id: 9
    priority: 100
    advert_interval: 50ms
    vips: [198.19.0.10]
    track_scripts: [{name: load, weight: -30}]
  - name: VI_B
    interface: eth0
    virtual_router_id: 10
    priority: 100
    advert_interval: 50ms
    vips: [198.19.0.11]
    track_scripts: [{name: alive}]
    notify:
      master: [/bin/sh, -c, "echo master >> LOG"]
      fault: [/bin/sh, -c, "echo fault >> LOG"]
      stop: [/bin/sh, -c, "echo stop >> LOG"]
      any: [/bin/sh, -c, 'echo "any $*" >> LOG', sh]
vrrp_scripts:
  - {name: alive, command: [test, -e, ALIVE], interval: 300ms, rise: 1, fall: 1}
  - {name: load, command: [test, -e, LOAD], interval: 300ms}
`

type vrrpSetRig struct {
	*rig
	set             *VRRPSet
	sb              *Standby
	log, alive, low string
	mu              sync.Mutex
	vipOn           map[string]bool
}

func newVRRPSetRig(t *testing.T, extra string) *vrrpSetRig {
	t.Helper()
	dir := t.TempDir()
	v := &vrrpSetRig{log: filepath.Join(dir, "log"), alive: filepath.Join(dir, "alive"), low: filepath.Join(dir, "load"),
		vipOn: map[string]bool{}}
	y := strings.NewReplacer("LOG", v.log, "ALIVE", v.alive, "LOAD", v.low).Replace(vrrpSetConfig + extra)
	cfg, err := config.Parse("test.yaml", []byte(y))
	must(t, err)
	must(t, os.WriteFile(v.alive, nil, 0o600))
	must(t, os.WriteFile(v.low, nil, 0o600))
	r := &rig{t: t, pub: &fakePublisher{}, res: &fakeResolver{fail: map[netip.Addr]bool{}}, dir: dir}
	v.rig = r
	var w io.Writer = io.Discard
	if os.Getenv("XLB_TEST_LOG") != "" {
		w = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(w, nil))
	v.sb = NewStandby(r.pub)
	v.set, err = newVRRPSet(cfg, v.sb, log, func(string) []ha.Option { return []ha.Option{ha.WithTransport(newMemTransport())} })
	must(t, err)
	for _, n := range v.set.nodes {
		n.addrs = func(on bool) error {
			v.mu.Lock()
			v.vipOn[n.name] = on
			v.mu.Unlock()
			return nil
		}
	}
	r.c, err = New(cfg, Options{Publisher: v.sb, Resolver: r.res, Logger: log,
		NewProber: func(ctx context.Context, o health.Options) Prober {
			r.prober = &fakeProber{opts: o, checks: map[string]health.Check{}}
			return r.prober
		}})
	must(t, err)
	must(t, r.c.Start(context.Background()))
	t.Cleanup(func() { r.c.Close() })
	v.set.Start(context.Background())
	t.Cleanup(v.set.Stop)
	return v
}

// published lists the services in the data path's latest snapshot.
func (v *vrrpSetRig) published() []string {
	s := v.pub.last()
	var out []string
	for i := range s.NumServices() {
		out = append(out, s.Service(i).Name)
	}
	slices.Sort(out)
	return out
}

func (v *vrrpSetRig) state(name string) ha.State {
	for _, n := range v.set.nodes {
		if n.name == name {
			return n.r.Status().State
		}
	}
	return ha.Initialize
}

func (v *vrrpSetRig) notes() string {
	b, _ := os.ReadFile(v.log)
	return string(b)
}

func servicesAre(v *vrrpSetRig, want ...string) func() bool {
	return func() bool { return slices.Equal(v.published(), want) }
}

// TestVRRPInstancesTrackAndNotify: two instances in one process each forward their own
// VIP's service; B's tracked script failing puts B in fault (its service leaves the data
// path, A's stays) and runs B's notify programs with keepalived's arguments; A's weighted
// script lowers A's priority; stopping runs the stop programs.
func TestVRRPInstancesTrackAndNotify(t *testing.T) {
	v := newVRRPSetRig(t, "")
	waitFor(t, "both masters", func() bool { return v.state("VI_A") == ha.Master && v.state("VI_B") == ha.Master })
	waitFor(t, "both services", servicesAre(v, "api", "web"))
	waitFor(t, "master notified", func() bool {
		return strings.Contains(v.notes(), "master\n") && strings.Contains(v.notes(), "any INSTANCE VI_B MASTER 100\n")
	})

	must(t, os.Remove(v.alive))
	waitFor(t, "B in fault", func() bool { return v.state("VI_B") == ha.Fault })
	waitFor(t, "only web forwarded", servicesAre(v, "web"))
	if v.state("VI_A") != ha.Master {
		t.Errorf("A left master with B: %v", v.state("VI_A"))
	}
	v.mu.Lock()
	if v.vipOn["VI_B"] || !v.vipOn["VI_A"] {
		t.Errorf("VIPs on the interface: %v", v.vipOn)
	}
	v.mu.Unlock()
	waitFor(t, "fault notified", func() bool {
		return strings.Contains(v.notes(), "fault\n") && strings.Contains(v.notes(), "any INSTANCE VI_B FAULT 100\n")
	})

	must(t, os.Remove(v.low))
	waitFor(t, "A's priority lowered", func() bool { return v.set.nodes[0].r.Status().Priority == 70 })
	if v.state("VI_A") != ha.Master {
		t.Errorf("A at priority 70 with no peer: %v", v.state("VI_A"))
	}
	st := v.set.VRRPStatus()
	if len(st.Instances) != 2 || st.Instances[1].Name != "VI_B" || st.Instances[1].State != ha.Fault || st.Instances[0].Priority != 70 {
		t.Errorf("status: %+v", st.Instances)
	}

	must(t, os.WriteFile(v.alive, nil, 0o600))
	waitFor(t, "B master again", func() bool { return v.state("VI_B") == ha.Master })
	waitFor(t, "both services again", servicesAre(v, "api", "web"))

	v.set.Stop()
	if !strings.Contains(v.notes(), "stop\n") || !strings.Contains(v.notes(), "any INSTANCE VI_B STOP ") {
		t.Errorf("stop not notified:\n%s", v.notes())
	}
	t.Logf("notify log:\n%s", v.notes())
}

// TestVRRPSyncGroupInProcess: in a sync group, B's fault takes A out of master too (and
// neither forwards); when B recovers both come back.
func TestVRRPSyncGroupInProcess(t *testing.T) {
	v := newVRRPSetRig(t, "vrrp_sync_groups:\n  - {name: G, instances: [VI_A, VI_B], notify: {any: [/bin/sh, -c, 'echo \"group $*\" >> "+"LOGG"+"', sh]}}\n")
	waitFor(t, "both masters", func() bool { return v.state("VI_A") == ha.Master && v.state("VI_B") == ha.Master })
	must(t, os.Remove(v.alive))
	waitFor(t, "A follows B out of master", func() bool { return v.state("VI_B") == ha.Fault && v.state("VI_A") == ha.Backup })
	waitFor(t, "nothing forwarded", servicesAre(v))
	must(t, os.WriteFile(v.alive, nil, 0o600))
	waitFor(t, "both masters again", func() bool { return v.state("VI_A") == ha.Master && v.state("VI_B") == ha.Master })
	waitFor(t, "both services again", servicesAre(v, "api", "web"))
	defer func() { b, _ := os.ReadFile(v.log + "G"); t.Logf("group log:\n%s", b) }()
	waitFor(t, "group notified", func() bool {
		b, _ := os.ReadFile(v.log + "G")
		return strings.Contains(string(b), "group GROUP G FAULT ") && strings.Count(string(b), "group GROUP G MASTER ") == 2
	})
}
