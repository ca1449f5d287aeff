package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/health"
)

// bgpRouter is a GoBGP server on loopback standing in for the router.
type bgpRouter struct {
	srv  *server.BgpServer
	port int
}

func newBGPRouter(t *testing.T) *bgpRouter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &bgpRouter{srv: server.NewBgpServer(), port: port}
	go r.srv.Serve()
	ctx := context.Background()
	must(t, r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "198.18.0.250",
		ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}))
	t.Cleanup(r.srv.Stop)
	fam := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}
	}
	must(t, r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65001},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
		AfiSafis:  []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
	}}))
	return r
}

// prefixes returns the prefixes the router learnt, sorted.
func (r *bgpRouter) prefixes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		must(t, r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL,
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}}, func(d *api.Destination) {
			out = append(out, d.Prefix)
		}))
	}
	slices.Sort(out)
	return out
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bgpRigConfig(port int) string {
	return fmt.Sprintf(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    backends: [{name: a, address: 198.18.0.11}]
  - name: web-alt
    vip: 198.18.0.100
    port: 8080
    backends: [{name: a, address: 198.18.0.11}]
  - name: web6
    vip: 2001:2::100
    port: 80
    backends: [{name: a, address: 2001:2::11}]
bgp:
  local_as: 65001
  router_id: 198.18.0.2
  next_hop: 198.18.0.2
  next_hop6: 2001:2::2
  withdraw_wait: 300ms
  neighbors: [{address: 127.0.0.1, as: 65000, hold_time: 3s, port: %d}]
`, port)
}

// TestBGPAnnouncer: a VIP is announced while its service has an active
// backend and the host forwards, withdrawn when none is left, on
// drain-host (through the API) and on Shutdown, which waits withdraw_wait
// after withdrawing; state in the API and the metrics.
func TestBGPAnnouncer(t *testing.T) {
	rt := newBGPRouter(t)
	r := newRig(t, bgpRigConfig(rt.port))
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := StartBGP(ctx, r.c.cfg.BGP, r.c, quiet)
	must(t, err)
	t.Cleanup(a.Shutdown)
	eventually(t, "the session", func() bool {
		st := a.Status(ctx)
		return len(st.Neighbors) == 1 && st.Neighbors[0].Established()
	})

	// Up backends but not forwarding yet: nothing announced.
	r.prober.fire("web/a", health.StateUp)
	time.Sleep(3 * bgpPoll)
	if got := rt.prefixes(t); len(got) != 0 {
		t.Fatalf("announced before forwarding: %v", got)
	}
	a.SetForwarding(true)
	eventually(t, "the IPv4 VIP at the router", func() bool {
		return slices.Equal(rt.prefixes(t), []string{"198.18.0.100/32"})
	})
	r.prober.fire("web6/a", health.StateUp)
	eventually(t, "both VIPs", func() bool {
		return slices.Equal(rt.prefixes(t), []string{"198.18.0.100/32", "2001:2::100/128"})
	})

	// The VIP stays while another service on it (web-alt) has an active backend.
	r.prober.fire("web-alt/a", health.StateUp)
	r.prober.fire("web/a", health.StateDown)
	time.Sleep(3 * bgpPoll)
	if got := rt.prefixes(t); len(got) != 2 {
		t.Fatalf("VIP withdrawn while web-alt is up: %v", got)
	}
	r.prober.fire("web-alt/a", health.StateDown)
	eventually(t, "the IPv4 VIP withdrawn", func() bool {
		return slices.Equal(rt.prefixes(t), []string{"2001:2::100/128"})
	})
	r.prober.fire("web/a", health.StateUp)

	// drain-host and undrain-host through the API.
	srv := httptest.NewServer(NewHandler(r.c, HandlerOptions{BGP: a, Token: "t"}))
	defer srv.Close()
	cl := &Client{Base: srv.URL, Token: "t"}
	st, err := cl.DrainHost(ctx)
	must(t, err)
	if !st.Drained || len(st.Announced) != 0 {
		t.Errorf("after drain-host: %+v", st)
	}
	eventually(t, "the router to lose every route", func() bool { return len(rt.prefixes(t)) == 0 })
	time.Sleep(3 * bgpPoll)
	if got := rt.prefixes(t); len(got) != 0 {
		t.Fatalf("re-announced while drained: %v", got)
	}
	st, err = cl.UndrainHost(ctx)
	must(t, err)
	if st.Drained || !slices.Equal(st.Announced, []string{"198.18.0.100/32", "2001:2::100/128"}) {
		t.Errorf("after undrain-host: %+v", st)
	}
	eventually(t, "both VIPs back", func() bool { return len(rt.prefixes(t)) == 2 })
	st, err = cl.BGP(ctx)
	must(t, err)
	if st.LocalAS != 65001 || st.RouterID != "198.18.0.2" || !st.Forwarding || len(st.Neighbors) != 1 ||
		!st.Neighbors[0].Established() || st.Neighbors[0].Advertised != 2 || st.Changed.IsZero() {
		t.Errorf("GET bgp: %+v", st)
	}

	// Metrics.
	reg := prometheus.NewRegistry()
	must(t, reg.Register(a))
	mfs, err := reg.Gather()
	must(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	for name, v := range map[string]float64{"xlb_bgp_routes_announced": 2, "xlb_bgp_session_up/127.0.0.1": 1,
		"xlb_bgp_session_state/127.0.0.1": 6, "xlb_bgp_route_announced/198.18.0.100/32": 1, "xlb_bgp_host_drained": 0,
		"xlb_bgp_host_forwarding": 1} {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("metric %s = %v (present %v), want %v", name, g, ok, v)
		}
	}

	// Shutdown: routes withdrawn first, then withdraw_wait, then the session ends.
	start := time.Now()
	done := make(chan struct{})
	go func() { a.Shutdown(); close(done) }()
	eventually(t, "the routes withdrawn on shutdown", func() bool { return len(rt.prefixes(t)) == 0 })
	withdrawn := time.Since(start)
	<-done
	if took := time.Since(start); took < 300*time.Millisecond || withdrawn > 250*time.Millisecond {
		t.Errorf("shutdown: routes gone after %v, returned after %v (want withdraw first, then a 300ms wait)", withdrawn, took)
	}
	if _, err := cl.DrainHost(ctx); err == nil {
		t.Error("drain-host after shutdown accepted")
	}
}

// TestBGPNotConfigured: the API answers 404 without a bgp section.
func TestBGPNotConfigured(t *testing.T) {
	r := newRig(t, twoSvc)
	srv := httptest.NewServer(NewHandler(r.c, HandlerOptions{Token: "t"}))
	defer srv.Close()
	cl := &Client{Base: srv.URL, Token: "t"}
	var ae *APIError
	if _, err := cl.BGP(context.Background()); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "no bgp section") {
		t.Errorf("GET bgp without a section: %v", err)
	}
	if _, err := cl.DrainHost(context.Background()); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("drain-host without a section: %v", err)
	}
	if _, err := StartBGP(context.Background(), nil, r.c, nil); !errors.Is(err, ErrNoBGP) {
		t.Errorf("StartBGP(nil): %v", err)
	}
	var a *BGPAnnouncer
	a.Shutdown() // nil-safe
}

// TestBGPWaitsForFirstHealthRound: a VIP is first announced only once every backend of its
// service has a check result, so a joining host builds the same Maglev table as its peers
// before the routers send it flows; afterwards a backend that starts unknown (a reload
// adding it) does not withdraw it.
func TestBGPWaitsForFirstHealthRound(t *testing.T) {
	rt := newBGPRouter(t)
	cfg := strings.Replace(bgpRigConfig(rt.port), "    backends: [{name: a, address: 198.18.0.11}]\n  - name: web-alt",
		"    backends: [{name: a, address: 198.18.0.11}, {name: b, address: 198.18.0.12}]\n  - name: web-alt", 1)
	r := newRig(t, cfg)
	ctx := context.Background()
	a, err := StartBGP(ctx, r.c.cfg.BGP, r.c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	t.Cleanup(a.Shutdown)
	a.SetForwarding(true)
	r.prober.fire("web/a", health.StateUp)
	r.prober.fire("web6/a", health.StateUp)
	eventually(t, "the IPv6 VIP (its only backend answered)", func() bool {
		return slices.Equal(rt.prefixes(t), []string{"2001:2::100/128"})
	})
	time.Sleep(3 * bgpPoll)
	if got := rt.prefixes(t); !slices.Equal(got, []string{"2001:2::100/128"}) {
		t.Fatalf("web's VIP announced while backend b has no result yet: %v", got)
	}
	r.prober.fire("web/b", health.StateDown) // a result, even a failure, settles it
	eventually(t, "both VIPs", func() bool {
		return slices.Equal(rt.prefixes(t), []string{"198.18.0.100/32", "2001:2::100/128"})
	})
	r.prober.fire("web/b", health.StateUnknown)
	time.Sleep(3 * bgpPoll)
	if got := rt.prefixes(t); len(got) != 2 {
		t.Fatalf("an announced VIP withdrawn for a backend without a result: %v", got)
	}
}
