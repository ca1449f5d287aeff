package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// fakeFlows reports set connection counts per backend ID of service web.
type fakeFlows struct {
	mu     sync.Mutex
	active map[uint32]uint64
}

func (f *fakeFlows) Stats() []dataplane.WorkerStats { return nil }

func (f *fakeFlows) FlowStats() []dataplane.ServiceStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := dataplane.ServiceStats{Name: "web"}
	for id, n := range f.active {
		s.Backends = append(s.Backends, dataplane.BackendStats{ID: id, Active: n})
	}
	return []dataplane.ServiceStats{s}
}

// TestThresholds: IPVS's rule: at upper_threshold a backend gets no new flows (weight 0
// in the scheduler, existing flows stay) until it is below lower_threshold, or below 3/4
// of the upper when no lower is set.
func TestThresholds(t *testing.T) {
	y := strings.Replace(twoSvc, "      - {name: a, address: 198.18.0.11}\n",
		"      - {name: a, address: 198.18.0.11, upper_threshold: 100, lower_threshold: 50}\n", 1)
	y = strings.Replace(y, "      - {name: c, address: 198.18.0.13}\n",
		"      - {name: c, address: 198.18.0.13, upper_threshold: 40}\n", 1)
	f := &fakeFlows{active: map[uint32]uint64{}}
	r := newRig(t, y, func(o *Options) { o.Stats = f })
	for _, b := range []string{"a", "b", "c"} {
		r.prober.fire("web/"+b, health.StateUp)
	}
	ids := map[string]uint32{}
	for _, b := range r.backends("web") {
		ids[b.Name] = b.ID
	}
	set := func(a, c uint64) {
		f.mu.Lock()
		f.active[ids["a"]], f.active[ids["c"]] = a, c
		f.mu.Unlock()
		r.c.checkThresholds()
	}
	weights := func() string {
		return fmt.Sprintf("a=%d c=%d", r.backend("web", "a").Weight, r.backend("web", "c").Weight)
	}
	for _, step := range []struct {
		a, c uint64
		want string
	}{
		{99, 39, "a=100 c=100"},
		{100, 40, "a=0 c=0"},  // at the upper threshold: out
		{60, 31, "a=0 c=0"},   // below upper, not below lower (c: not below 3/4 of 40 = 30)
		{49, 30, "a=100 c=0"}, // a below its lower; c at 30 is not below 30
		{49, 29, "a=100 c=100"},
		{120, 0, "a=0 c=100"},
	} {
		set(step.a, step.c)
		if got := weights(); got != step.want {
			t.Errorf("a=%d c=%d connections: %s, want %s", step.a, step.c, got, step.want)
		}
	}
	bs, err := r.c.Backends("web")
	must(t, err)
	if !bs[0].Overloaded || bs[0].Connections != 120 || bs[0].Weight != 100 {
		t.Errorf("status of a: %+v", bs[0])
	}
	// A reload without the threshold clears the overload (and the watcher, with no
	// threshold left, no longer reads the data path).
	must(t, r.c.Reload(r.parse(twoSvc)))
	if w := r.backend("web", "a").Weight; w != 100 {
		t.Errorf("after a reload without thresholds: weight %d", w)
	}
}

// TestE2EUpperThreshold: with the real data path, a backend with upper_threshold 3 takes
// 3 of the long-lived connections and no more while they last; the others go to the
// second backend.
func TestE2EUpperThreshold(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 2, DisableIPv6: true})
	y := fmt.Sprintf("interfaces: [{name: eth0}]\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    scheduler: rr\n    backends:\n"+
		"      - {name: %s, address: %s, upper_threshold: 3}\n      - {name: %s, address: %s}\n"+
		"    health: {kind: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 3}\n",
		tn.VIP, tn.Backends[0].Name, tn.Backends[0].Addr(), tn.Backends[1].Name, tn.Backends[1].Addr())
	cfg, err := config.Parse("e2e.yaml", []byte(y))
	must(t, err)
	var dp *dataplane.Dataplane
	must(t, tn.LB.Do(func() (err error) {
		dc := DataplaneConfig(cfg)
		dc.FrameCount, dc.RingSize, dc.ConnTableSize = 2048, 512, 1<<14
		dp, err = dataplane.New(dc)
		return err
	}))
	t.Cleanup(func() { _ = dp.Close() })
	c, err := New(cfg, Options{Publisher: dp, Stats: dp, Resolver: NewKernelResolverIn(tn.LB.NsHandle()),
		HealthNetns: health.InNetns(tn.LB.Path()), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, c.Start(ctx))
	t.Cleanup(func() { c.Close() })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	must(t, dp.Start(sctx))
	scancel()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		svcs := c.Services()
		if len(svcs) == 1 && svcs[0].Up == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backends not up")
		}
	}
	count := map[string]int{}
	var conns []*testnet.HTTPConn
	defer func() {
		for _, h := range conns {
			h.Close()
		}
	}()
	for i := range 10 {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := tn.Client.Dial(dctx, "tcp", netip.AddrPortFrom(tn.VIP, 80).String())
		dcancel()
		must(t, err)
		h := testnet.NewHTTPConn(conn)
		conns = append(conns, h)
		name, err := h.Get(2 * time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
		// Let the workers publish their counts (10 ms) and the controller look (100 ms).
		time.Sleep(ThresholdInterval + 50*time.Millisecond)
	}
	if count[tn.Backends[0].Name] != 3 || count[tn.Backends[1].Name] != 7 {
		t.Errorf("connections per backend %v, want 3 on %s (its upper threshold) and 7 on %s", count, tn.Backends[0].Name, tn.Backends[1].Name)
	}
	bs, err := c.Backends("web")
	must(t, err)
	if !bs[0].Overloaded || bs[0].Connections != 3 {
		t.Errorf("backend %s: overloaded %v, %d connections", bs[0].Name, bs[0].Overloaded, bs[0].Connections)
	}
	// The long-lived connections on the overloaded backend keep working.
	for i, h := range conns {
		if _, err := h.Get(2 * time.Second); err != nil {
			t.Errorf("connection %d after the threshold: %v", i, err)
		}
	}
}
