package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/sched"
)

// fakePublisher records the snapshots it is given.
type fakePublisher struct {
	mu    sync.Mutex
	snaps []*dataplane.Snapshot
}

func (p *fakePublisher) Publish(s *dataplane.Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snaps = append(p.snaps, s)
	return nil
}

func (p *fakePublisher) last() *dataplane.Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.snaps) == 0 {
		return nil
	}
	return p.snaps[len(p.snaps)-1]
}

func (p *fakePublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.snaps)
}

// fakeResolver answers every address with one next hop, except those in
// fail.
type fakeResolver struct {
	mu    sync.Mutex
	fail  map[netip.Addr]bool
	mac   byte
	calls map[netip.Addr]int
}

func (r *fakeResolver) Resolve(ctx context.Context, a netip.Addr) (dataplane.NextHop, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[netip.Addr]int{}
	}
	r.calls[a]++
	if r.fail[a] {
		return dataplane.NextHop{}, dataplane.ErrNoNeighbour
	}
	v4 := a.As16()
	return dataplane.NextHop{IfIndex: 2, SrcMAC: [6]byte{2, 0, 0, 0, 0, 1},
		DstMAC: [6]byte{2, 0, 0, 0, r.mac, v4[15]}, MTU: 1500}, nil
}

// fakeProber runs no probes: the test fires transitions.
type fakeProber struct {
	mu       sync.Mutex
	opts     health.Options
	checks   map[string]health.Check
	closed   bool
	failAdd  error // returned by Add when set
	replaced int   // successful Replace calls
}

func (p *fakeProber) Add(c health.Check) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failAdd != nil {
		return p.failAdd
	}
	if _, ok := p.checks[c.ID]; ok {
		return health.ErrExists
	}
	p.checks[c.ID] = c
	return nil
}

func (p *fakeProber) Remove(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.checks[id]; !ok {
		return health.ErrNotFound
	}
	delete(p.checks, id)
	return nil
}

func (p *fakeProber) Replace(c health.Check) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.checks[c.ID]; !ok {
		return health.ErrNotFound
	}
	p.checks[c.ID] = c
	p.replaced++
	return nil
}

func (p *fakeProber) Statuses() []health.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []health.Status
	for id, c := range p.checks {
		out = append(out, health.Status{ID: id, Checker: c.Checker.String(), Probes: 3, Failures: 1,
			Results: []health.Result{{Time: time.Unix(1, 0), OK: true, Latency: 1500 * time.Microsecond}}})
	}
	return out
}

func (p *fakeProber) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

func (p *fakeProber) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id := range p.checks {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// fire delivers a transition as the Monitor would.
func (p *fakeProber) fire(id string, to health.State) {
	p.opts.OnTransition(health.Transition{ID: id, To: to, Time: time.Now(), Reason: "test"})
}

type rig struct {
	t      *testing.T
	c      *Controller
	pub    *fakePublisher
	prober *fakeProber
	res    *fakeResolver
	dir    string
}

// newRig starts a controller on the YAML config y with fakes around it; opts adjust its
// Options before it starts (the controller's goroutines read them from then on).
func newRig(t *testing.T, y string, opts ...func(*Options)) *rig {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return startRig(t, cfg, opts...)
}

// startRig starts a controller on cfg with fakes around it.
func startRig(t *testing.T, cfg *config.Config, opts ...func(*Options)) *rig {
	t.Helper()
	r := &rig{t: t, pub: &fakePublisher{}, res: &fakeResolver{fail: map[netip.Addr]bool{}}, dir: t.TempDir()}
	o := Options{
		Publisher: r.pub,
		Resolver:  r.res,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewProber: func(ctx context.Context, o health.Options) Prober {
			r.prober = &fakeProber{opts: o, checks: map[string]health.Check{}}
			return r.prober
		},
	}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.c = c
	return r
}

func (r *rig) parse(y string) *config.Config {
	r.t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		r.t.Fatal(err)
	}
	return cfg
}

// backends returns the published scheduler view of a service.
func (r *rig) backends(service string) []sched.Backend {
	r.t.Helper()
	s := r.pub.last()
	for i := range s.NumServices() {
		sp := s.Service(i)
		if sp.Name == service {
			out := make([]sched.Backend, sp.Sched.Len())
			for j := range out {
				out[j] = sp.Sched.Backend(j)
			}
			return out
		}
	}
	r.t.Fatalf("service %s not published", service)
	return nil
}

func (r *rig) spec(service string) dataplane.ServiceSpec {
	r.t.Helper()
	s := r.pub.last()
	for i := range s.NumServices() {
		if sp := s.Service(i); sp.Name == service {
			return sp
		}
	}
	r.t.Fatalf("service %s not published", service)
	return dataplane.ServiceSpec{}
}

func (r *rig) backend(service, name string) sched.Backend {
	r.t.Helper()
	for _, b := range r.backends(service) {
		if b.Name == name {
			return b
		}
	}
	r.t.Fatalf("backend %s/%s not published", service, name)
	return sched.Backend{}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}
