package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/xlb-dev/xlb/bgp"
)

// A speaker for one LB host: AS 65001 peering with a router in AS 65000
// (here on loopback, port 1790, so the example sends nothing off the host),
// announcing a VIP with this host's address as the next hop. The route is
// sent once the session is up (see Peers).
func Example() {
	cfg := bgp.Config{
		LocalAS:   65001,
		RouterID:  netip.MustParseAddr("198.18.0.2"),
		Neighbors: []bgp.Neighbor{{Address: netip.MustParseAddr("127.0.0.1"), AS: 65000, HoldTime: 3 * time.Second, Port: 1790}},
		NextHop:   netip.MustParseAddr("198.18.0.2"),
	}
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	s, err := bgp.Start(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Stop()
	if err := s.Announce(context.Background(), netip.MustParseAddr("198.18.0.100")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Announced())
	// Output: [198.18.0.100]
}

func ExampleConfig_Validate() {
	cfg := bgp.Config{LocalAS: 65001, RouterID: netip.MustParseAddr("198.18.0.2")}
	fmt.Println(cfg.Validate())
	// Output:
	// bgp: bad config: neighbors: at least one neighbour is required
	// bgp: bad config: next_hop: a next hop (IPv4 or IPv6) is required
}
