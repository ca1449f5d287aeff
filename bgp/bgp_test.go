package bgp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// router is a second GoBGP server standing in for a router: it listens on
// 127.0.0.1 and accepts the speaker under test as a passive neighbour.
type router struct {
	srv  *server.BgpServer
	port uint16
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRouter(t *testing.T) *router {
	t.Helper()
	r := &router{srv: server.NewBgpServer(server.LoggerOption(slogAdapter{quiet()})), port: freePort(t)}
	go r.srv.Serve()
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "198.18.0.250",
		ListenPort: int32(r.port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.srv.Stop)
	peer := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65001},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: family6, Enabled: true}}},
	}
	if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
		t.Fatal(err)
	}
	return r
}

// routes returns what the router learnt: "prefix via next hop", sorted.
func (r *router) routes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, fam := range []*api.Family{family4, family6} {
		err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam},
			func(d *api.Destination) {
				for _, p := range d.Paths {
					out = append(out, d.Prefix+" via "+nextHop(t, p))
				}
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

func nextHop(t *testing.T, p *api.Path) string {
	for _, a := range p.Pattrs {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		switch v := m.(type) {
		case *api.NextHopAttribute:
			return v.NextHop
		case *api.MpReachNLRIAttribute:
			return strings.Join(v.NextHops, ",")
		}
	}
	return "?"
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testConfig(port uint16) Config {
	return Config{
		LocalAS: 65001, RouterID: netip.MustParseAddr("198.18.0.2"),
		Neighbors: []Neighbor{{Address: netip.MustParseAddr("127.0.0.1"), AS: 65000, HoldTime: 3 * time.Second, Port: port}},
		NextHop:   netip.MustParseAddr("198.18.0.2"), NextHop6: netip.MustParseAddr("2001:2::2"),
		Logger: quiet(),
	}
}

// TestAnnounceWithdraw runs the speaker against a GoBGP router on loopback:
// the session comes up, routes are announced with the configured next hops
// (IPv4 and IPv6 over one IPv4 session), synced, withdrawn, and Stop ends
// the session.
func TestAnnounceWithdraw(t *testing.T) {
	r := newRouter(t)
	ctx := context.Background()
	s, err := Start(ctx, testConfig(r.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitFor(t, "the session", func() bool {
		ps, err := s.Peers(ctx)
		return err == nil && len(ps) == 1 && ps[0].Established()
	})
	ps, _ := s.Peers(ctx)
	if ps[0].HoldTime != 3*time.Second || ps[0].AS != 65000 || ps[0].Since.IsZero() || ps[0].StateIndex() != 6 {
		t.Errorf("peer status: %+v", ps[0])
	}

	v4, v4b, v6 := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101"), netip.MustParseAddr("2001:2::100")
	for _, a := range []netip.Addr{v4, v6, v4} {
		if err := s.Announce(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"198.18.0.100/32 via 198.18.0.2", "2001:2::100/128 via 2001:2::2"}
	waitFor(t, "both routes at the router", func() bool { return slices.Equal(r.routes(t), want) })
	if got := s.Announced(); !slices.Equal(got, []netip.Addr{v4, v6}) {
		t.Errorf("Announced = %v", got)
	}

	// Sync: v6 goes, v4b comes, v4 stays.
	if err := s.Sync(ctx, []netip.Addr{v4, v4b}); err != nil {
		t.Fatal(err)
	}
	want = []string{"198.18.0.100/32 via 198.18.0.2", "198.18.0.101/32 via 198.18.0.2"}
	waitFor(t, "the synced routes", func() bool { return slices.Equal(r.routes(t), want) })
	waitFor(t, "the advertised count", func() bool {
		ps, err := s.Peers(ctx)
		return err == nil && ps[0].Advertised == 2
	})

	if err := s.Withdraw(ctx, v4b); err != nil {
		t.Fatal(err)
	}
	if err := s.Withdraw(ctx, v4b); err != nil {
		t.Fatalf("second withdraw: %v", err)
	}
	waitFor(t, "one route left", func() bool { return slices.Equal(r.routes(t), want[:1]) })
	if err := s.WithdrawAll(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no route left", func() bool { return len(r.routes(t)) == 0 })

	// Stop: a re-announce is refused, and the router loses the session.
	if err := s.Announce(ctx, v4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the route back", func() bool { return len(r.routes(t)) == 1 })
	s.Stop()
	s.Stop()
	if err := s.Announce(ctx, v4); !errors.Is(err, ErrStopped) {
		t.Errorf("announce after stop: %v, want ErrStopped", err)
	}
	waitFor(t, "the router to drop the route on Cease", func() bool { return len(r.routes(t)) == 0 })
	ps, err = s.Peers(ctx)
	if err != nil || len(ps) != 1 || ps[0].Established() {
		t.Errorf("peers after stop: %+v %v", ps, err)
	}
}

// TestNoNextHop: a route of a family without a next hop is refused.
func TestNoNextHop(t *testing.T) {
	cfg := testConfig(freePort(t))
	cfg.NextHop6 = netip.Addr{}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Announce(context.Background(), netip.MustParseAddr("2001:2::100")); !errors.Is(err, ErrNoNextHop) {
		t.Errorf("IPv6 route without next_hop6: %v", err)
	}
	if err := s.Announce(context.Background(), netip.Addr{}); !errors.Is(err, ErrConfig) {
		t.Errorf("invalid address: %v", err)
	}
	if len(s.Announced()) != 0 {
		t.Errorf("announced %v", s.Announced())
	}
}

func TestValidate(t *testing.T) {
	good := testConfig(179)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no AS":          func(c *Config) { c.LocalAS = 0 },
		"v6 router id":   func(c *Config) { c.RouterID = netip.MustParseAddr("2001:2::1") },
		"no router id":   func(c *Config) { c.RouterID = netip.Addr{} },
		"no neighbours":  func(c *Config) { c.Neighbors = nil },
		"no next hop":    func(c *Config) { c.NextHop, c.NextHop6 = netip.Addr{}, netip.Addr{} },
		"v6 as v4 hop":   func(c *Config) { c.NextHop = netip.MustParseAddr("2001:2::1") },
		"v4 as v6 hop":   func(c *Config) { c.NextHop6 = netip.MustParseAddr("198.18.0.1") },
		"multicast hop":  func(c *Config) { c.NextHop = netip.MustParseAddr("224.0.0.1") },
		"neighbour AS":   func(c *Config) { c.Neighbors[0].AS = 0 },
		"short hold":     func(c *Config) { c.Neighbors[0].HoldTime = 2 * time.Second },
		"fraction hold":  func(c *Config) { c.Neighbors[0].HoldTime = 3500 * time.Millisecond },
		"long password":  func(c *Config) { c.Neighbors[0].Password = strings.Repeat("x", 81) },
		"bad neighbour":  func(c *Config) { c.Neighbors[0].Address = netip.Addr{} },
		"twice neighbor": func(c *Config) { c.Neighbors = append(c.Neighbors, c.Neighbors[0]) },
	} {
		c := testConfig(179)
		c.Neighbors = slices.Clone(c.Neighbors)
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
		if _, err := Start(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Start: %v, want ErrConfig", name, err)
		}
	}
}
