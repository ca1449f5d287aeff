package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/health"
)

// printer is a Publisher that shows what the workers would get.
type printer struct{}

func (printer) Publish(s *dataplane.Snapshot) error {
	for i := range s.NumServices() {
		sp := s.Service(i)
		for j := range sp.Sched.Len() {
			b := sp.Sched.Backend(j)
			fmt.Printf("%s %s id=%d weight=%d up=%v\n", sp.Name, b.Name, b.ID, b.Weight, b.Up)
		}
	}
	return nil
}

// staticHops resolves every backend to one next hop (the kernel does it in
// a real deployment).
type staticHops struct{}

func (staticHops) Resolve(context.Context, netip.Addr) (dataplane.NextHop, error) {
	return dataplane.NextHop{IfIndex: 1, SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0, 0, 0, 0, 2}}, nil
}

// A Controller publishes a snapshot on every change; draining a backend
// keeps it up (its flows stay) with weight 0.
func ExampleController() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - {name: a, address: 198.18.0.11}
      - {name: b, address: 198.18.0.12}
    health: {kind: none}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := control.New(cfg, control.Options{
		Publisher: printer{},
		Resolver:  staticHops{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("drain b:")
	if err := c.Drain("web", "b"); err != nil {
		fmt.Println(err)
	}
	// Output:
	// web a id=1 weight=100 up=true
	// web b id=2 weight=100 up=true
	// drain b:
	// web a id=1 weight=100 up=true
	// web b id=2 weight=0 up=true
}

// Client talks to the API that NewHandler serves.
func ExampleClient() {
	cfg, _ := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - {name: web, vip: 198.19.0.10, port: 80, backends: [{name: a, address: 198.18.0.11}], health: {kind: none}}
`))
	c, _ := control.New(cfg, control.Options{Publisher: discard{}, Resolver: staticHops{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewProber: func(ctx context.Context, o health.Options) control.Prober { return health.NewMonitor(ctx, o) }})
	_ = c.Start(context.Background())
	defer c.Close()
	srv := httptest.NewServer(control.NewHandler(c, control.HandlerOptions{Token: "secret"}))
	defer srv.Close()

	cl := &control.Client{Base: srv.URL, Token: "secret"}
	ctx := context.Background()
	_ = cl.SetWeight(ctx, "web", "a", 7)
	bs, _ := cl.Backends(ctx, "web")
	fmt.Println(bs[0].Name, bs[0].Health, bs[0].Weight)
	_, err := (&control.Client{Base: srv.URL}).Services(ctx)
	fmt.Println(err)
	// Output:
	// a up 7
	// api: 401 unauthorized
}

type discard struct{}

func (discard) Publish(*dataplane.Snapshot) error { return nil }
