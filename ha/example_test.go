package ha_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/xlb-dev/xlb/ha"
)

// lonelyLink is a Transport for a router alone on its link: nothing is ever received.
type lonelyLink struct{ closed chan struct{} }

func (l lonelyLink) Source() netip.Addr            { return netip.MustParseAddr("198.18.0.1") }
func (l lonelyLink) Send([]byte, netip.Addr) error { return nil }
func (l lonelyLink) Announce(netip.Addr) error     { return nil }
func (l lonelyLink) Close() error                  { close(l.closed); return nil }
func (l lonelyLink) Recv([]byte) ([]byte, ha.RecvInfo, error) {
	<-l.closed
	return nil, ha.RecvInfo{}, os.ErrClosed
}

// A router that hears no master takes over after Master_Down_Interval and calls OnMaster;
// cancelling Run resigns (priority 0) and calls OnBackup. Without WithTransport, Run opens raw
// sockets on cfg.Interface.
func Example() {
	cfg := ha.Config{
		Interface:       "eth0",
		VirtualRouterID: 51,
		Priority:        150,
		AdvertInterval:  20 * time.Millisecond,
		VIPs:            []netip.Addr{netip.MustParseAddr("198.19.0.10")},
	}
	master := make(chan struct{})
	r, err := ha.New(cfg, ha.Hooks{
		OnMaster: func() error { close(master); return nil }, // start forwarding the VIPs
		OnBackup: func() error { fmt.Println("stop forwarding"); return nil },
	}, ha.WithTransport(lonelyLink{closed: make(chan struct{})}))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	<-master
	fmt.Println("state:", r.State())
	cancel()
	fmt.Println("run:", <-done, "state:", r.State())
	// Output:
	// stop forwarding
	// state: master
	// stop forwarding
	// run: <nil> state: initialize
}

// A Guard is an nftables table, written over netlink, that drops the
// packets of some services to their VIPs in the input hook: what keeps a
// crashed VRRP master's kernel from resetting connections until the backup
// has taken over. Applying needs CAP_NET_ADMIN.
func ExampleGuard() {
	g := ha.Guard{Table: "xlb_vrrp_51"}
	vip := netip.MustParseAddr("198.18.0.100")
	if err := g.Apply([]ha.Drop{{VIP: vip, Port: 80, Proto: 6}, {VIP: vip, Proto: 17}}); err != nil {
		fmt.Println(err)
		return
	}
	defer g.Remove()
	drops, _ := g.Drops()
	fmt.Println(drops)
}
