package xlb_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/xlb-dev/xlb"
	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// fakeDataPath stands where the AF_XDP data path would: it keeps the
// latest snapshot instead of forwarding (so the example needs no root).
type fakeDataPath struct {
	mu   sync.Mutex
	last *dataplane.Snapshot
}

func (f *fakeDataPath) Publish(s *dataplane.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = s
	return nil
}

func (f *fakeDataPath) Stats() []dataplane.WorkerStats { return nil }
func (f *fakeDataPath) Start(context.Context) error    { return nil }
func (f *fakeDataPath) Close() error                   { return nil }

// weights prints what the workers would schedule with.
func (f *fakeDataPath) weights() {
	f.mu.Lock()
	defer f.mu.Unlock()
	sp := f.last.Service(0)
	for i := range sp.Sched.Len() {
		b := sp.Sched.Backend(i)
		fmt.Printf("  %s weight %d up %v\n", b.Name, b.Weight, b.Up)
	}
}

// oneHop resolves every backend to one next hop (the kernel's tables do
// it in a real deployment).
type oneHop struct{}

func (oneHop) Resolve(context.Context, netip.Addr) (dataplane.NextHop, error) {
	return dataplane.NextHop{IfIndex: 1, SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0, 0, 0, 0, 2}}, nil
}

// Embed a balancer configured in Go, run it, drain a backend through its
// controller, read its status, and stop it. WithDataPath and WithResolver
// replace the AF_XDP data path and the kernel's next hops, so this runs
// without root; without them, Run attaches to the interfaces.
func Example() {
	cfg := &config.Config{
		Interfaces: []config.Interface{{Name: "eth0"}},
		Services: []config.Service{{
			Name: "web", VIP: netip.MustParseAddr("198.18.0.100"), Port: 80,
			Backends: []config.Backend{
				{Name: "b0", Address: netip.MustParseAddr("198.18.0.11")},
				{Name: "b1", Address: netip.MustParseAddr("198.18.0.12")},
			},
			Health: config.Health{Kind: config.HealthNone},
		}},
	}
	dp := &fakeDataPath{}
	lb, err := xlb.New(cfg, xlb.WithDataPath(dp), xlb.WithResolver(oneHop{}),
		xlb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lb.Run(ctx) }()
	<-lb.Ready()

	for _, s := range lb.Status(ctx).Services {
		fmt.Printf("%s %s:%d %s %s %s, %d of %d backends up\n", s.Name, s.VIP, s.Port, s.Protocol, s.Method, s.Scheduler, s.Up, s.Backends)
	}
	dp.weights()
	if err := lb.Controller().Drain("web", "b1"); err != nil {
		fmt.Println(err)
	}
	fmt.Println("after draining b1:")
	dp.weights()

	cancel()
	fmt.Println("run:", <-done, "running:", lb.Status(context.Background()).Running)
	fmt.Println("close:", lb.Close())
	// Output:
	// web 198.18.0.100:80 tcp dr maglev, 2 of 2 backends up
	//   b0 weight 100 up true
	//   b1 weight 100 up true
	// after draining b1:
	//   b0 weight 100 up true
	//   b1 weight 0 up true
	// run: <nil> running: false
	// close: <nil>
}
