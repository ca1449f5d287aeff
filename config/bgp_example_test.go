package config_test

import (
	"fmt"

	"github.com/xlb-dev/xlb/config"
)

// A host of a scale-out cluster announces its VIPs to its router by BGP; a
// mistake in the section is reported with its file and line.
func ExampleBGP() {
	const cfg = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]
bgp:
  local_as: 65001
  router_id: 198.18.0.2
  next_hop: 198.18.0.2
  neighbors:
    - {address: 198.18.0.1, as: 65000, hold_time: 3s}
`
	c, err := config.Parse("xlb.yaml", []byte(cfg))
	if err != nil {
		fmt.Println(err)
		return
	}
	b := c.BGP
	fmt.Println(b.LocalAS, b.RouterID, b.Neighbors[0].Address, b.Neighbors[0].HoldTime, b.WithdrawWait)

	_, err = config.Parse("xlb.yaml", []byte(cfg[:len(cfg)-4]+"1s}\n"))
	fmt.Println(err)
	// Output:
	// 65001 198.18.0.2 198.18.0.1 3s 2s
	// xlb.yaml:12: bgp.neighbors[0].hold_time: bad value: 1s: want whole seconds from 3s to 18h12m15s
}
