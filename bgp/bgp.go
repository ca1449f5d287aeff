package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Errors returned by this package.
var (
	// ErrConfig reports a configuration the speaker cannot run.
	ErrConfig = errors.New("bgp: bad config")
	// ErrStopped reports a call on a stopped speaker.
	ErrStopped = errors.New("bgp: speaker stopped")
	// ErrNoNextHop reports a route of a family the speaker has no next hop
	// for (an IPv6 VIP without Config.NextHop6, or the other way round).
	ErrNoNextHop = errors.New("bgp: no next hop for the address family")
)

// Defaults and limits.
const (
	// DefaultHoldTime is a neighbour's hold time when none is set; the
	// keepalive interval is a third of the hold time.
	DefaultHoldTime = 90 * time.Second
	// MinHoldTime is the smallest hold time BGP allows (RFC 4271).
	MinHoldTime = 3 * time.Second
	// MaxHoldTime is the largest hold time BGP encodes.
	MaxHoldTime = 65535 * time.Second
	// MaxPasswordLen is the longest TCP MD5 key Linux accepts.
	MaxPasswordLen = 80
	// connectRetry is how often a down session is retried.
	connectRetry = 2
	// idleHold is how long a reset session stays idle before it is retried.
	idleHold = 1
)

// Neighbor is one BGP peer (a router).
type Neighbor struct {
	Address netip.Addr
	AS      uint32
	// Password, when set, signs the session with TCP MD5 (RFC 2385).
	Password string
	// HoldTime is the proposed hold time: 0 means DefaultHoldTime, else at
	// least MinHoldTime. A router that hears nothing for that long drops
	// the session and the routes learnt on it.
	HoldTime time.Duration
	// Port is the peer's TCP port; 0 means 179.
	Port uint16
}

// Config configures a Speaker.
type Config struct {
	LocalAS  uint32
	RouterID netip.Addr // an IPv4 address
	// ListenPort is the TCP port the speaker accepts sessions on; 0 does
	// not listen (the speaker connects to its neighbours).
	ListenPort uint16
	Neighbors  []Neighbor
	// NextHop and NextHop6 are the next hops announced with IPv4 and IPv6
	// routes (this host's address on the routers' segment). At least one.
	NextHop  netip.Addr
	NextHop6 netip.Addr
	// Logger receives GoBGP's log; nil means slog.Default().
	Logger *slog.Logger
}

// Problem is the kind of a ConfigError.
type Problem uint8

// The problems a configuration field can have.
const (
	Invalid   Problem = iota // the value is wrong
	Missing                  // the field is required and not set
	Duplicate                // the value is already used by another neighbour
)

// ConfigError is one problem Validate finds: the field at fault by its
// configuration name (local_as, router_id, neighbors, next_hop, next_hop6,
// or a neighbour's address, as, hold_time, password), the neighbour it
// belongs to (-1 for the speaker's own fields), and why. It wraps ErrConfig.
type ConfigError struct {
	Field    string
	Neighbor int
	Problem  Problem
	Reason   string
}

// Path is the field's place in the configuration: "router_id",
// "neighbors[1].hold_time".
func (e *ConfigError) Path() string {
	if e.Neighbor >= 0 {
		return fmt.Sprintf("neighbors[%d].%s", e.Neighbor, e.Field)
	}
	return e.Field
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%v: %s: %s", ErrConfig, e.Path(), e.Reason) }

func (e *ConfigError) Unwrap() error { return ErrConfig }

// Validate reports every problem of c, each a *ConfigError (joined with
// errors.Join when there are several).
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, nb int, p Problem, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Neighbor: nb, Problem: p, Reason: fmt.Sprintf(format, args...)})
	}
	if c.LocalAS == 0 {
		bad("local_as", -1, Missing, "local AS is required (1..4294967295)")
	}
	switch {
	case !c.RouterID.IsValid():
		bad("router_id", -1, Missing, "router ID is required (an IPv4 address)")
	case !c.RouterID.Is4() || c.RouterID.IsUnspecified():
		bad("router_id", -1, Invalid, "%v is not an IPv4 address", c.RouterID)
	}
	if len(c.Neighbors) == 0 {
		bad("neighbors", -1, Missing, "at least one neighbour is required")
	}
	switch {
	case !c.NextHop.IsValid() && !c.NextHop6.IsValid():
		bad("next_hop", -1, Missing, "a next hop (IPv4 or IPv6) is required")
	case c.NextHop.IsValid() && (!c.NextHop.Is4() || !unicast(c.NextHop)):
		bad("next_hop", -1, Invalid, "%v is not an IPv4 unicast address", c.NextHop)
	}
	if c.NextHop6.IsValid() && (!c.NextHop6.Is6() || c.NextHop6.Is4In6() || !unicast(c.NextHop6)) {
		bad("next_hop6", -1, Invalid, "%v is not an IPv6 unicast address", c.NextHop6)
	}
	seen := map[netip.Addr]bool{}
	for i, n := range c.Neighbors {
		switch {
		case !n.Address.IsValid():
			bad("address", i, Missing, "address is required")
		case n.Address.Zone() != "" || !unicast(n.Address):
			bad("address", i, Invalid, "%v is not a unicast address", n.Address)
		case seen[n.Address]:
			bad("address", i, Duplicate, "neighbour %v listed twice", n.Address)
		}
		seen[n.Address] = true
		if n.AS == 0 {
			bad("as", i, Missing, "AS is required (1..4294967295)")
		}
		if h := n.HoldTime; h != 0 && (h < MinHoldTime || h > MaxHoldTime || h%time.Second != 0) {
			bad("hold_time", i, Invalid, "%v: want whole seconds from %v to %v", h, MinHoldTime, MaxHoldTime)
		}
		if len(n.Password) > MaxPasswordLen {
			bad("password", i, Invalid, "longer than %d bytes", MaxPasswordLen)
		}
	}
	return errors.Join(errs...)
}

func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !(a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}))
}

// Speaker is a running BGP speaker: a GoBGP server with its neighbours and
// the routes it announces. Its methods are safe for concurrent use.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv *server.BgpServer

	mu      sync.Mutex
	routes  map[netip.Addr][]byte // announced address -> GoBGP path UUID
	stopped bool
}

// Start starts a speaker for cfg and adds its neighbours; the sessions come
// up in the background (see Peers). Nothing is announced yet.
func Start(ctx context.Context, cfg Config) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Speaker{cfg: cfg, log: log, routes: map[netip.Addr][]byte{},
		srv: server.NewBgpServer(server.LoggerOption(slogAdapter{log}))}
	go s.srv.Serve()
	port := int32(-1)
	if cfg.ListenPort != 0 {
		port = int32(cfg.ListenPort)
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.LocalAS, RouterId: cfg.RouterID.String(), ListenPort: port}}); err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	for _, n := range cfg.Neighbors {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
			s.srv.Stop()
			return nil, fmt.Errorf("bgp: neighbour %v: %w", n.Address, err)
		}
	}
	return s, nil
}

// peer is the GoBGP form of n, with the families the speaker has next hops for.
func (s *Speaker) peer(n Neighbor) *api.Peer {
	hold := n.HoldTime
	if hold == 0 {
		hold = DefaultHoldTime
	}
	secs := uint64(hold / time.Second)
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: n.Address.String(), PeerAsn: n.AS, AuthPassword: n.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: secs, KeepaliveInterval: max(1, secs/3),
			ConnectRetry: connectRetry, IdleHoldTimeAfterReset: idleHold}},
		Transport: &api.Transport{RemotePort: uint32(n.Port)},
	}
	if s.cfg.NextHop.IsValid() {
		p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: family4, Enabled: true}})
	}
	if s.cfg.NextHop6.IsValid() {
		p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: family6, Enabled: true}})
	}
	return p
}

var (
	family4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	family6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// path builds the host route for addr with the configured next hop.
func (s *Speaker) path(addr netip.Addr) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: addr.String(), PrefixLen: uint32(addr.BitLen())})
	if err != nil {
		return nil, err
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	if err != nil {
		return nil, err
	}
	var hop proto.Message
	fam := family4
	if addr.Is4() {
		if !s.cfg.NextHop.IsValid() {
			return nil, fmt.Errorf("%w: %v (no next_hop)", ErrNoNextHop, addr)
		}
		hop = &api.NextHopAttribute{NextHop: s.cfg.NextHop.String()}
	} else {
		if !s.cfg.NextHop6.IsValid() {
			return nil, fmt.Errorf("%w: %v (no next_hop6)", ErrNoNextHop, addr)
		}
		fam = family6
		hop = &api.MpReachNLRIAttribute{Family: family6, NextHops: []string{s.cfg.NextHop6.String()},
			Nlris: []*anypb.Any{nlri}}
	}
	h, err := anypb.New(hop)
	if err != nil {
		return nil, err
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: []*anypb.Any{origin, h}}, nil
}

// Announce announces the host route of addr (/32 or /128) to every
// neighbour. Announcing an address already announced does nothing.
func (s *Speaker) Announce(ctx context.Context, addr netip.Addr) error {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return fmt.Errorf("%w: announce an invalid address", ErrConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if _, ok := s.routes[addr]; ok {
		return nil
	}
	p, err := s.path(addr)
	if err != nil {
		return err
	}
	resp, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
	if err != nil {
		return fmt.Errorf("bgp: announce %v: %w", addr, err)
	}
	s.routes[addr] = resp.GetUuid()
	s.log.Info("bgp: route announced", "prefix", netip.PrefixFrom(addr, addr.BitLen()))
	return nil
}

// Withdraw withdraws the host route of addr from every neighbour.
// Withdrawing an address not announced does nothing.
func (s *Speaker) Withdraw(ctx context.Context, addr netip.Addr) error {
	addr = addr.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	return s.withdrawLocked(ctx, addr)
}

func (s *Speaker) withdrawLocked(ctx context.Context, addr netip.Addr) error {
	id, ok := s.routes[addr]
	if !ok {
		return nil
	}
	fam := family4
	if addr.Is6() {
		fam = family6
	}
	if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: fam, Uuid: id}); err != nil {
		return fmt.Errorf("bgp: withdraw %v: %w", addr, err)
	}
	delete(s.routes, addr)
	s.log.Info("bgp: route withdrawn", "prefix", netip.PrefixFrom(addr, addr.BitLen()))
	return nil
}

// Sync makes the announced routes exactly want: it withdraws the others
// first, then announces what is missing. It returns every error met (the
// other routes are still handled).
func (s *Speaker) Sync(ctx context.Context, want []netip.Addr) error {
	set := make(map[netip.Addr]bool, len(want))
	for _, a := range want {
		set[a.Unmap()] = true
	}
	var errs []error
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	for a := range s.routes {
		if !set[a] {
			errs = append(errs, s.withdrawLocked(ctx, a))
		}
	}
	s.mu.Unlock()
	for a := range set {
		errs = append(errs, s.Announce(ctx, a))
	}
	return errors.Join(errs...)
}

// WithdrawAll withdraws every announced route.
func (s *Speaker) WithdrawAll(ctx context.Context) error {
	return s.Sync(ctx, nil)
}

// Announced returns the announced addresses, sorted.
func (s *Speaker) Announced() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Addr, 0, len(s.routes))
	for a := range s.routes {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Session states, as PeerStatus.State reports them.
const (
	StateUnknown     = "unknown"
	StateIdle        = "idle"
	StateConnect     = "connect"
	StateActive      = "active"
	StateOpenSent    = "opensent"
	StateOpenConfirm = "openconfirm"
	StateEstablished = "established"
)

// States lists the session states in FSM order; a state's index is the
// number the metrics report (0 unknown .. 6 established).
var States = []string{StateUnknown, StateIdle, StateConnect, StateActive, StateOpenSent, StateOpenConfirm, StateEstablished}

// PeerStatus is one neighbour's session as the API shows it.
type PeerStatus struct {
	Address netip.Addr `json:"address"`
	AS      uint32     `json:"as"`
	State   string     `json:"state"`
	// Since is when the session came up (established) or last went down.
	Since time.Time `json:"since,omitzero"`
	// HoldTime is the negotiated hold time (established sessions).
	HoldTime time.Duration `json:"hold_time,omitempty"`
	// Advertised counts the routes sent to the neighbour, Received those
	// it sent.
	Advertised uint64 `json:"advertised"`
	Received   uint64 `json:"received"`
}

// Established reports whether the session is up.
func (p PeerStatus) Established() bool { return p.State == StateEstablished }

// StateIndex is the position of p.State in States.
func (p PeerStatus) StateIndex() int { return max(0, slices.Index(States, p.State)) }

// Peers returns every neighbour's session state, in configuration order.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	byAddr := map[netip.Addr]PeerStatus{}
	if !stopped {
		err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
			if err != nil {
				return
			}
			st := PeerStatus{Address: a.Unmap(), AS: p.GetConf().GetPeerAsn(), State: stateName(p.GetState().GetSessionState())}
			ts := p.GetTimers().GetState()
			if st.Established() {
				st.HoldTime = time.Duration(ts.GetNegotiatedHoldTime()) * time.Second
				if ts.GetUptime() != nil {
					st.Since = ts.GetUptime().AsTime()
				}
			} else if ts.GetDowntime() != nil && ts.GetDowntime().GetSeconds() > 0 {
				st.Since = ts.GetDowntime().AsTime()
			}
			for _, af := range p.GetAfiSafis() {
				st.Advertised += af.GetState().GetAdvertised()
				st.Received += af.GetState().GetReceived()
			}
			byAddr[st.Address] = st
		})
		if err != nil {
			return nil, fmt.Errorf("bgp: list peers: %w", err)
		}
	}
	out := make([]PeerStatus, 0, len(s.cfg.Neighbors))
	for _, n := range s.cfg.Neighbors {
		st, ok := byAddr[n.Address.Unmap()]
		if !ok {
			st = PeerStatus{Address: n.Address.Unmap(), AS: n.AS, State: StateIdle}
		}
		out = append(out, st)
	}
	return out, nil
}

func stateName(st api.PeerState_SessionState) string {
	name := strings.ToLower(st.String())
	if slices.Contains(States, name) {
		return name
	}
	return StateUnknown
}

// Config returns the speaker's configuration.
func (s *Speaker) Config() Config { return s.cfg }

// Stop ends every session with a Cease notification (the routers drop the
// routes learnt on it at once) and stops the server. It does not wait for
// traffic to move: withdraw first (WithdrawAll) and wait if that matters.
// Stop is idempotent.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.srv.Stop()
}
