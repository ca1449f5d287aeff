package config_test

import (
	"fmt"

	"github.com/xlb-dev/xlb/config"
)

// The vrrp section of a configuration is the ha package's Config.
func ExampleVRRP() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends: [{address: 198.18.0.11}]
vrrp:
  interface: eth0
  virtual_router_id: 51
  priority: 200
  advert_interval: 100ms
  vips: [198.19.0.10]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	hc := cfg.VRRP.Config
	fmt.Println(hc.VirtualRouterID, hc.Priority, hc.AdvertInterval, hc.VIPs, hc.PreemptEnabled())
	// Output: 51 200 100ms [198.19.0.10] true
}
