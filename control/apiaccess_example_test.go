package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
)

// The unix socket may change the balancer; the TCP listener without a token only reads.
func ExampleListenSocket() {
	cfg, _ := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends: [{name: a, address: 198.18.0.11}]
    health: {kind: none}
    acl: {deny: [198.18.9.0/24]}
`))
	c, _ := control.New(cfg, control.Options{Publisher: discard{}, Resolver: staticHops{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_ = c.Start(context.Background())
	defer c.Close()
	h := control.NewHandler(c, control.HandlerOptions{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	dir, _ := os.MkdirTemp("", "xlb-example-")
	defer os.RemoveAll(dir)
	sock, err := control.ListenSocket(filepath.Join(dir, "xlb.sock"), -1) // mode 0600: this user only
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = control.Serve(ctx, sock, h, log) }()
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = control.Serve(ctx, tcp, h, log) }()

	local := &control.Client{Socket: filepath.Join(dir, "xlb.sock")}
	remote := &control.Client{Base: "http://" + tcp.Addr().String()}
	fmt.Println("socket:", local.SetACL(ctx, "web", nil, []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}))
	fmt.Println("tcp:", remote.SetACL(ctx, "web", nil, nil))
	svcs, err := remote.Services(ctx)
	fmt.Println("tcp read:", len(svcs), err)
	// Output:
	// socket: <nil>
	// tcp: api: 403 forbidden: a change over TCP needs api.token (or use the unix socket)
	// tcp read: 1 <nil>
}
