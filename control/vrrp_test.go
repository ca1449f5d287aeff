package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/ha"
	"github.com/xlb-dev/xlb/health"
)

// memTransport is a VRRP link with nobody else on it: sends are counted,
// Recv blocks until Close.
type memTransport struct {
	src       netip.Addr
	mu        sync.Mutex
	sent      []uint8 // priority of each advertisement sent
	announced int
	closed    chan struct{}
	once      sync.Once
}

func newMemTransport() *memTransport {
	return &memTransport{src: netip.MustParseAddr("198.18.0.1"), closed: make(chan struct{})}
}

func (m *memTransport) Source() netip.Addr { return m.src }
func (m *memTransport) Send(msg []byte, dst netip.Addr) error {
	var adv ha.Advert
	if err := ha.ParseAdvert(msg, m.src, dst, &adv); err != nil {
		return err
	}
	m.mu.Lock()
	m.sent = append(m.sent, adv.Priority)
	m.mu.Unlock()
	return nil
}
func (m *memTransport) Recv(buf []byte) ([]byte, ha.RecvInfo, error) {
	<-m.closed
	return nil, ha.RecvInfo{}, errors.New("closed")
}
func (m *memTransport) Announce(netip.Addr) error {
	m.mu.Lock()
	m.announced++
	m.mu.Unlock()
	return nil
}
func (m *memTransport) Close() error { m.once.Do(func() { close(m.closed) }); return nil }

const vrrpRigConfig = twoSvc + `vrrp:
  interface: eth0
  virtual_router_id: 9
  priority: 100
  advert_interval: 50ms
  vips: [198.19.0.10]
`

// vrrpRig is a controller publishing through a Standby to a fake data path,
// with a real ha.Router on an in-memory link and a recorder for the VIPs.
type vrrpRig struct {
	*rig
	node  *VRRPNode
	tr    *memTransport
	mu    sync.Mutex
	vipOn bool
}

func (v *vrrpRig) vips() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.vipOn
}

func newVRRPRig(t *testing.T) *vrrpRig {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(vrrpRigConfig))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, pub: &fakePublisher{}, res: &fakeResolver{fail: map[netip.Addr]bool{}}, dir: t.TempDir()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v := &vrrpRig{rig: r, tr: newMemTransport()}
	sb := NewStandby(r.pub)
	v.node, err = newVRRPNode(cfg.VRRP, sb, log, ha.WithTransport(v.tr))
	if err != nil {
		t.Fatal(err)
	}
	v.node.addrs = func(on bool) error {
		v.mu.Lock()
		v.vipOn = on
		v.mu.Unlock()
		return nil
	}
	r.c, err = New(cfg, Options{Publisher: sb, Resolver: r.res, Logger: log,
		NewProber: func(ctx context.Context, o health.Options) Prober {
			r.prober = &fakeProber{opts: o, checks: map[string]health.Check{}}
			return r.prober
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.c.Close() })
	return v
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStandbyPublishesNoServicesUntilForwarding(t *testing.T) {
	v := newVRRPRig(t)
	sb := v.node.standby
	if sb.Forwarding() {
		t.Fatal("a new Standby forwards")
	}
	if s := v.pub.last(); s == nil || s.NumServices() != 0 {
		t.Fatalf("standby published %v, want a snapshot without services", s)
	}
	full := v.c.Snapshot()
	if full.NumServices() != 2 {
		t.Fatalf("controller snapshot has %d services, want 2", full.NumServices())
	}
	n := v.pub.count()
	must(t, sb.SetForwarding(true))
	if v.pub.last() != full {
		t.Fatal("forwarding did not publish the controller's snapshot")
	}
	must(t, sb.SetForwarding(true))
	if v.pub.count() != n+1 {
		t.Errorf("a repeated SetForwarding(true) published again (%d publishes)", v.pub.count()-n)
	}
	// A health change while forwarding goes through as is.
	v.prober.fire("web/a", health.StateUp)
	if s := v.pub.last(); s != v.c.Snapshot() || s.NumServices() != 2 {
		t.Fatal("a snapshot published while forwarding did not reach the data path")
	}
	must(t, sb.SetForwarding(false))
	if s := v.pub.last(); s.NumServices() != 0 {
		t.Fatalf("backup published %d services", s.NumServices())
	}
	// While standby, a new snapshot is held back, and forwarding again
	// publishes the latest one: same backend IDs as the controller's.
	v.prober.fire("web/b", health.StateUp)
	if s := v.pub.last(); s.NumServices() != 0 {
		t.Fatal("a health change leaked services to a backup's data path")
	}
	must(t, sb.SetForwarding(true))
	if s := v.pub.last(); s != v.c.Snapshot() {
		t.Fatal("forwarding again did not publish the latest snapshot")
	}
	if b := v.backend("web", "b"); !b.Up {
		t.Errorf("backend b after standby = %+v, want up", b)
	}
}

func TestVRRPNodeDrivesForwardingAndAPI(t *testing.T) {
	v := newVRRPRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	v.node.Start(ctx)
	t.Cleanup(func() { cancel(); v.node.Stop() })
	cl := &Client{Base: serve(t, NewHandler(v.c, HandlerOptions{VRRP: v.node}))}

	// Nobody else on the link: master after Master_Down_Interval.
	waitFor(t, "master", func() bool { return v.node.r.Status().State == ha.Master })
	waitFor(t, "forwarding", func() bool { return v.node.standby.Forwarding() })
	if !v.vips() {
		t.Error("master without the VIPs on the interface")
	}
	if s := v.pub.last(); s.NumServices() != 2 {
		t.Errorf("master's data path has %d services, want 2", s.NumServices())
	}
	st, err := cl.VRRP(context.Background())
	must(t, err)
	if st.State != ha.Master || !st.Forwarding || st.VRID != 9 || st.Priority != 100 || st.Interface != "eth0" ||
		st.Source != v.tr.src || st.Master != v.tr.src || st.MasterAdvertInterval != 50*time.Millisecond || st.Transitions < 2 ||
		len(st.VIPs) != 1 || st.VIPs[0] != netip.MustParseAddr("198.19.0.10") {
		t.Errorf("GET /vrrp = %+v", st)
	}

	// Metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(vrrpCollector{v.node})
	fams, err := reg.Gather()
	must(t, err)
	got := map[string]float64{}
	drops := 0
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			if f.GetName() == "xlb_vrrp_drops_total" {
				drops++
			}
			if g := m.GetGauge(); g != nil {
				got[f.GetName()] = g.GetValue()
			}
		}
	}
	if got["xlb_vrrp_state"] != 2 || got["xlb_vrrp_master"] != 1 || got["xlb_vrrp_forwarding"] != 1 || got["xlb_vrrp_priority"] != 100 {
		t.Errorf("vrrp gauges = %v", got)
	}
	if drops != int(ha.NumDropReasons)-1 {
		t.Errorf("drop reasons exported = %d, want %d", drops, ha.NumDropReasons-1)
	}

	// Demote: the master resigns with priority 0 and stops forwarding.
	st, err = cl.Demote(context.Background())
	must(t, err)
	if st.State != ha.Backup || st.Forwarding || !st.Demoted {
		t.Errorf("after demote = %+v", st)
	}
	if v.vips() {
		t.Error("demoted master kept the VIPs")
	}
	if s := v.pub.last(); s.NumServices() != 0 {
		t.Errorf("demoted master's data path has %d services", s.NumServices())
	}
	v.tr.mu.Lock()
	zero := false
	for _, p := range v.tr.sent {
		zero = zero || p == 0
	}
	v.tr.mu.Unlock()
	if !zero {
		t.Error("no priority-0 advertisement sent on demote")
	}
	// With no other router it takes over again after Master_Down_Interval.
	waitFor(t, "master again", func() bool { return v.node.standby.Forwarding() })

	// Stop: resign, stop forwarding, VIPs off.
	cancel()
	v.node.Stop()
	if v.node.standby.Forwarding() || v.vips() {
		t.Error("stopped router still forwards or holds the VIPs")
	}
}

func TestVRRPAPIWithoutVRRP(t *testing.T) {
	r := newRig(t, twoSvc)
	cl := &Client{Base: serve(t, NewHandler(r.c, HandlerOptions{}))}
	var ae *APIError
	if _, err := cl.VRRP(context.Background()); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "no vrrp section") {
		t.Errorf("GET /vrrp without vrrp: %v", err)
	}
	if _, err := cl.Demote(context.Background()); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("POST /vrrp/demote without vrrp: %v", err)
	}
	var nilNode *VRRPNode
	if nilNode.Err() != nil {
		t.Error("a nil node must give a nil error channel")
	}
}

func TestCrashGuardFollowsSnapshots(t *testing.T) {
	v := newVRRPRig(t)
	var applied [][]ha.Drop
	vip := netip.MustParseAddr("198.19.0.10")
	g := &crashGuard{vrid: 9, vips: []netip.Addr{vip}, log: v.c.log,
		apply: func(d []ha.Drop) error { applied = append(applied, d); return nil }}
	v.node.standby.mu.Lock()
	v.node.standby.guards = []*crashGuard{g}
	v.node.guard = g
	v.node.standby.mu.Unlock()

	v.prober.fire("web/a", health.StateUp) // a publish
	want := []ha.Drop{{VIP: vip, Port: 80, Proto: 6}, {VIP: vip, Port: 53, Proto: 17}}
	if len(applied) != 1 || !slices.Equal(applied[0], want) {
		t.Fatalf("guard applied %v\nwant once %v", applied, want)
	}
	v.prober.fire("web/b", health.StateUp) // same services: nothing to do
	if len(applied) != 1 {
		t.Errorf("unchanged services re-applied the guard: %d applies", len(applied))
	}
	// A reload with another dns port changes the guard.
	must(t, v.c.Reload(v.parse(strings.Replace(vrrpRigConfig, "    port: 53\n", "    port: 54\n", 1))))
	if n := len(applied); n != 2 || !slices.Contains(applied[1], ha.Drop{VIP: vip, Port: 54, Proto: 17}) {
		t.Fatalf("after reload: %v", applied[n-1])
	}
	v.node.Stop()
	if n := len(applied); applied[n-1] != nil {
		t.Errorf("stop applied %v, want the removal (nil)", applied[n-1])
	}
	// A failing apply is retried on the next snapshot.
	g.apply = func([]ha.Drop) error { return errors.New("nftables: operation not permitted") }
	v.prober.fire("web/c", health.StateUp)
	if g.valid {
		t.Error("a failed apply was recorded as in place")
	}
	g.apply = func(d []ha.Drop) error { applied = append(applied, d); return nil }
	n := len(applied)
	v.prober.fire("web/a", health.StateDown)
	if len(applied) != n+1 {
		t.Error("the guard was not retried after a failure")
	}
}
