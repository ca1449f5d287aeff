package control

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/health"
)

const twoSvc = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - {name: a, address: 198.18.0.11}
      - {name: b, address: 198.18.0.12, weight: 50}
      - {name: c, address: 198.18.0.13}
    fallback:
      - {name: sorry, address: 198.18.0.20}
    health: {kind: tcp, interval: 1s, timeout: 500ms}
  - name: dns
    vip: 198.19.0.10
    port: 53
    protocol: udp
    method: nat
    backends:
      - {name: d1, address: 198.18.0.11, port: 5353}
    health: {kind: none}
`

func TestStartPublishesDownUntilProbed(t *testing.T) {
	r := newRig(t, twoSvc)
	if r.pub.count() != 1 {
		t.Fatalf("publishes = %d, want 1", r.pub.count())
	}
	for _, b := range r.backends("web") {
		if b.Up {
			t.Errorf("backend %s up before any probe", b.Name)
		}
	}
	if !r.backend("dns", "d1").Up {
		t.Error("kind none backend not up")
	}
	want := []string{"web/a", "web/b", "web/c", "web/sorry"}
	if got := r.prober.ids(); !slices.Equal(got, want) {
		t.Errorf("checks = %v, want %v", got, want)
	}
	sp := r.spec("dns")
	if sp.Targets[0].Port != 5353 || sp.Targets[0].Hop.IfIndex != 2 {
		t.Errorf("nat target = %+v", sp.Targets[0])
	}
}

func TestHealthTransitionsRepublish(t *testing.T) {
	r := newRig(t, twoSvc)
	for _, id := range []string{"web/a", "web/b", "web/c"} {
		r.prober.fire(id, health.StateUp)
	}
	if !r.backend("web", "a").Up || !r.backend("web", "c").Up {
		t.Fatal("backends not up after transitions")
	}
	r.prober.fire("web/c", health.StateDown)
	if r.backend("web", "c").Up {
		t.Error("c still up after going down")
	}
	if !r.backend("web", "a").Up {
		t.Error("a went down with c")
	}
	// A transition for a check the controller no longer knows is ignored.
	n := r.pub.count()
	r.prober.fire("web/zz", health.StateUp)
	if r.pub.count() != n {
		t.Error("unknown check republished")
	}
}

func TestFallbackOnlyWhenAllDown(t *testing.T) {
	r := newRig(t, twoSvc)
	r.prober.fire("web/sorry", health.StateUp)
	if !r.backend("web", "sorry").Up {
		t.Fatal("fallback not up while every primary is down")
	}
	r.prober.fire("web/a", health.StateUp)
	if r.backend("web", "sorry").Up {
		t.Error("fallback up while a primary is up")
	}
	must(t, r.c.Drain("web", "a"))
	if !r.backend("web", "sorry").Up {
		t.Error("fallback not up while the only healthy primary is drained")
	}
	sv := r.c.Services()[0]
	if !sv.Fallback || sv.Up != 1 {
		t.Errorf("service status = %+v", sv)
	}
}

func TestWeightDrainEnableDisable(t *testing.T) {
	r := newRig(t, twoSvc)
	for _, id := range []string{"web/a", "web/b", "web/c"} {
		r.prober.fire(id, health.StateUp)
	}
	must(t, r.c.SetWeight("web", "b", 7))
	if w := r.backend("web", "b").Weight; w != 7 {
		t.Errorf("weight = %d, want 7", w)
	}
	must(t, r.c.Drain("web", "198.18.0.12")) // by address
	if b := r.backend("web", "b"); b.Weight != 0 || !b.Up {
		t.Errorf("drained = %+v, want weight 0 and still up (existing flows stay)", b)
	}
	must(t, r.c.Disable("web", "a"))
	if r.backend("web", "a").Up {
		t.Error("disabled backend up")
	}
	must(t, r.c.Enable("web", "a"))
	if !r.backend("web", "a").Up {
		t.Error("enabled backend not up")
	}
	id := r.backend("web", "c").ID
	must(t, r.c.Disable("web", strconv.FormatUint(uint64(id), 10))) // by ID
	if r.backend("web", "c").Up {
		t.Error("disable by id failed")
	}
	wantErr(t, r.c.SetWeight("web", "nobody", 1), ErrNotFound)
	wantErr(t, r.c.SetWeight("nothing", "a", 1), ErrNotFound)
	wantErr(t, r.c.SetWeight("web", "a", config.MaxWeight+1), config.ErrValue)
}

func TestUnresolvedNextHopIsNotUp(t *testing.T) {
	r := newRig(t, twoSvc)
	r.res.mu.Lock()
	r.res.fail[netip.MustParseAddr("198.18.0.12")] = true
	r.res.mu.Unlock()
	r.prober.fire("web/b", health.StateUp)
	if !r.backend("web", "b").Up {
		t.Fatal("b not up")
	}
	if !r.c.resolveAll(r.c.ctx) {
		t.Fatal("resolveAll saw no change")
	}
	must(t, r.c.SetWeight("web", "a", 100)) // republish
	if r.backend("web", "b").Up {
		t.Error("backend with an unresolved next hop is up")
	}
	if r.spec("web").Targets[1].Hop.IfIndex != 0 {
		t.Error("unresolved target keeps a next hop")
	}
	bs, err := r.c.Backends("web")
	must(t, err)
	if !strings.HasPrefix(bs[1].NextHop, "unresolved") {
		t.Errorf("next hop = %q", bs[1].NextHop)
	}
}

// TestReloadKeepsIDsAndTable checks that a reload keeps backend IDs and
// health, and that unchanged Maglev inputs give the same table.
func TestReloadKeepsIDsAndTable(t *testing.T) {
	r := newRig(t, twoSvc)
	for _, id := range []string{"web/a", "web/b", "web/c"} {
		r.prober.fire(id, health.StateUp)
	}
	before := r.backends("web")
	table := r.spec("web").Sched.Table()

	must(t, r.c.Reload(r.parse(twoSvc)))
	after := r.backends("web")
	if !slices.Equal(before, after) {
		t.Fatalf("backends changed by a no-op reload:\n%v\n%v", before, after)
	}
	if !slices.Equal(table, r.spec("web").Sched.Table()) {
		t.Fatal("maglev table changed by a no-op reload")
	}

	// Add a backend and change a weight: others keep their IDs and state.
	y := strings.Replace(twoSvc, "      - {name: c, address: 198.18.0.13}\n",
		"      - {name: c, address: 198.18.0.13, weight: 200}\n      - {name: e, address: 198.18.0.14}\n", 1)
	must(t, r.c.Reload(r.parse(y)))
	ids := map[string]uint32{}
	for _, b := range before {
		ids[b.Name] = b.ID
	}
	for _, name := range []string{"a", "b", "c"} {
		if b := r.backend("web", name); b.ID != ids[name] || !b.Up {
			t.Errorf("backend %s after reload = %+v, want id %d and up", name, b, ids[name])
		}
	}
	if w := r.backend("web", "c").Weight; w != 200 {
		t.Errorf("c weight = %d, want 200", w)
	}
	e := r.backend("web", "e")
	if e.Up {
		t.Error("new backend up before its first probe")
	}
	if !slices.Contains(r.prober.ids(), "web/e") {
		t.Error("no check started for the new backend")
	}
	// Remove e, add it back: it gets a new ID (IDs are never reused).
	must(t, r.c.Reload(r.parse(twoSvc)))
	if slices.Contains(r.prober.ids(), "web/e") {
		t.Error("check of a removed backend still runs")
	}
	must(t, r.c.Reload(r.parse(y)))
	if e2 := r.backend("web", "e"); e2.ID == e.ID {
		t.Errorf("backend re-added with its old ID %d", e.ID)
	}
}

func TestReloadKeepsAPIOverrides(t *testing.T) {
	r := newRig(t, twoSvc)
	must(t, r.c.Drain("web", "a"))
	must(t, r.c.Reload(r.parse(twoSvc)))
	if w := r.backend("web", "a").Weight; w != 0 {
		t.Errorf("drain undone by an unrelated reload: weight %d", w)
	}
	// A changed configured weight wins over the override.
	must(t, r.c.Reload(r.parse(strings.Replace(twoSvc, "{name: a, address: 198.18.0.11}", "{name: a, address: 198.18.0.11, weight: 9}", 1))))
	if w := r.backend("web", "a").Weight; w != 9 {
		t.Errorf("weight = %d, want the new configured 9", w)
	}
}

func TestBadReloadKeepsOldConfig(t *testing.T) {
	r := newRig(t, twoSvc)
	old := r.c.Config()
	n := r.pub.count()

	path := filepath.Join(r.dir, "bad.yaml")
	must(t, os.WriteFile(path, []byte(strings.Replace(twoSvc, "port: 80", "port: eighty", 1)), 0o600))
	err := r.c.ReloadFile(path)
	var ce config.ConfigErrors
	if !errors.As(err, &ce) || ce[0].Line != 5 || ce[0].File != path {
		t.Fatalf("err = %v, want a ConfigErrors at %s:5", err, path)
	}
	if r.c.Config() != old || r.pub.count() != n {
		t.Error("a bad reload changed the running config or published")
	}

	// Interfaces need a restart.
	err = r.c.Reload(r.parse(strings.Replace(twoSvc, "name: eth0", "name: eth1", 1)))
	wantErr(t, err, ErrRestartRequired)
	if !strings.Contains(err.Error(), "restart") {
		t.Errorf("error does not say to restart: %v", err)
	}
	if r.c.Config() != old {
		t.Error("refused reload changed the config")
	}
	st := r.c.Status()
	if st.ReloadErrors != 2 || st.LastReloadErr == "" {
		t.Errorf("status = %+v", st)
	}
}

func TestHealthKindChangeOnReload(t *testing.T) {
	r := newRig(t, twoSvc)
	r.prober.fire("web/a", health.StateUp)
	y := strings.Replace(twoSvc, "health: {kind: tcp, interval: 1s, timeout: 500ms}", "health: {kind: tcp, interval: 2s, timeout: 500ms}", 1)
	must(t, r.c.Reload(r.parse(y)))
	r.prober.mu.Lock()
	chk := r.prober.checks["web/a"]
	r.prober.mu.Unlock()
	if chk.Interval.Seconds() != 2 || chk.Initial != health.StateUp {
		t.Errorf("replaced check = %+v, want interval 2s and initial up", chk)
	}
	if !r.backend("web", "a").Up {
		t.Error("a changed check took a healthy backend out")
	}
	// Health none: the checks go and the backends are up.
	must(t, r.c.Reload(r.parse(strings.Replace(y, "kind: tcp, interval: 2s, timeout: 500ms", "kind: none", 1))))
	if len(r.prober.ids()) != 0 || !r.backend("web", "b").Up {
		t.Errorf("checks %v, b up %v", r.prober.ids(), r.backend("web", "b").Up)
	}
}

// TestUnchangedServiceNotRebuilt checks that a change to one service reuses
// the other's scheduler snapshot, and that a real change rebuilds it.
func TestUnchangedServiceNotRebuilt(t *testing.T) {
	r := newRig(t, twoSvc)
	dns := r.spec("dns").Sched
	web := r.spec("web").Sched
	must(t, r.c.SetWeight("web", "a", 5))
	if r.spec("dns").Sched != dns {
		t.Error("dns rebuilt by a change to web")
	}
	if r.spec("web").Sched == web {
		t.Error("web not rebuilt by its weight change")
	}
	must(t, r.c.Reload(r.parse(twoSvc)))
	if r.spec("dns").Sched != dns {
		t.Error("dns rebuilt by a no-op reload")
	}
}

// TestReloadResolvesOnlyNewBackends: a reload does not wait on the next
// hops it already knows (a dead host's resolution is the follower's job).
func TestReloadResolvesOnlyNewBackends(t *testing.T) {
	r := newRig(t, twoSvc)
	a, e := netip.MustParseAddr("198.18.0.13"), netip.MustParseAddr("198.18.0.14")
	r.res.mu.Lock()
	before := r.res.calls[a]
	r.res.mu.Unlock()
	y := strings.Replace(twoSvc, "      - {name: c, address: 198.18.0.13}\n",
		"      - {name: c, address: 198.18.0.13}\n      - {name: e, address: 198.18.0.14}\n", 1)
	must(t, r.c.Reload(r.parse(y)))
	r.res.mu.Lock()
	defer r.res.mu.Unlock()
	if r.res.calls[a] != before || r.res.calls[e] != 1 {
		t.Errorf("resolutions: c %d -> %d, e %d; want c unchanged and e once", before, r.res.calls[a], r.res.calls[e])
	}
}

// TestNewNormalizesGoConfig: a Config built in Go, with only what matters set,
// runs as its YAML twin would: New fills the defaults.
func TestNewNormalizesGoConfig(t *testing.T) {
	cfg := &config.Config{
		Interfaces: []config.Interface{{Name: "eth0"}},
		Services: []config.Service{{
			Name: "web", VIP: netip.MustParseAddr("198.19.0.10"), Port: 80,
			Backends: []config.Backend{{Address: netip.MustParseAddr("198.18.0.11")}},
		}},
	}
	r := startRig(t, cfg)
	s := cfg.Services[0]
	if s.Method != config.MethodDR || s.Protocol != config.TCP || s.Health.Kind != config.HealthTCP ||
		s.Backends[0].Name != "198.18.0.11" || s.Backends[0].WeightOf() != config.DefaultWeight {
		t.Errorf("defaults not filled: %+v", s)
	}
	sp := r.spec("web")
	if sp.Method != config.MethodDR || sp.Proto != uint8(config.TCP) || sp.Sched.Len() != 1 {
		t.Errorf("published spec = %+v", sp)
	}
	if got := r.prober.ids(); !slices.Equal(got, []string{"web/198.18.0.11"}) {
		t.Errorf("checks = %v", got)
	}
}

// TestReloadReportsChecksNotStarted: a check the prober refuses on a
// reload (a changed check it had dropped, or a new one) fails the reload
// with the check's name instead of leaving the backend unprobed silently.
func TestReloadReportsChecksNotStarted(t *testing.T) {
	r := newRig(t, twoSvc)
	boom := errors.New("prober full")
	must(t, r.prober.Remove("web/a")) // the prober lost it
	r.prober.mu.Lock()
	r.prober.failAdd = boom
	r.prober.mu.Unlock()
	y := strings.Replace(twoSvc, "health: {kind: tcp, interval: 1s, timeout: 500ms}", "health: {kind: tcp, interval: 2s, timeout: 500ms}", 1)
	err := r.c.Reload(r.parse(y))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "web/a") {
		t.Fatalf("reload with a refused re-add: %v, want %v naming web/a", err, boom)
	}
	if st := r.c.Status(); st.ReloadErrors != 1 || !strings.Contains(st.LastReloadErr, "web/a") {
		t.Errorf("status = %+v, want the reload error recorded", st)
	}
	// A new backend whose check is refused.
	y2 := strings.Replace(y, "      - {name: c, address: 198.18.0.13}\n", "      - {name: c, address: 198.18.0.13}\n      - {name: d, address: 198.18.0.14}\n", 1)
	if y2 == y {
		t.Fatal("test config has no backend c line to extend")
	}
	if err := r.c.Reload(r.parse(y2)); !errors.Is(err, boom) || !strings.Contains(err.Error(), "web/d") {
		t.Errorf("reload with a refused add: %v, want %v naming web/d", err, boom)
	}
}

// TestReloadComparesCheckValues: a reload replaces exactly the checks whose
// settings changed; the same settings on other lines of the file change
// nothing.
func TestReloadComparesCheckValues(t *testing.T) {
	r := newRig(t, twoSvc)
	must(t, r.c.Reload(r.parse("# moved down two lines\n\n"+twoSvc)))
	if r.prober.replaced != 0 {
		t.Errorf("a reload that only moved lines replaced %d checks", r.prober.replaced)
	}
	y := strings.Replace(twoSvc, "health: {kind: tcp, interval: 1s, timeout: 500ms}", "health: {kind: tcp, interval: 1s, timeout: 500ms, rise: 5}", 1)
	must(t, r.c.Reload(r.parse(y)))
	if want := len(r.prober.ids()); r.prober.replaced != want {
		t.Errorf("a changed rise replaced %d checks, want %d", r.prober.replaced, want)
	}
}

// TestReloadBusyPollNeedsRestart: busy_poll is applied when the workers
// start, so a reload that changes it is refused, not silently ignored.
func TestReloadBusyPollNeedsRestart(t *testing.T) {
	r := newRig(t, twoSvc)
	y := strings.Replace(twoSvc, "interfaces: [{name: eth0}]", "interfaces: [{name: eth0, busy_poll: true}]", 1)
	if err := r.c.Reload(r.parse(y)); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("reload changing busy_poll: %v, want ErrRestartRequired", err)
	}
}
