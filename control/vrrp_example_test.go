package control_test

import (
	"fmt"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
)

// countingPublisher stands in for the data path.
type countingPublisher struct{ services []int }

func (p *countingPublisher) Publish(s *dataplane.Snapshot) error {
	p.services = append(p.services, s.NumServices())
	return nil
}

// A Standby sits between the controller and the data path: while this host
// is a VRRP backup the data path gets no services, and the controller's
// latest snapshot goes through again as soon as the host is master.
func ExampleStandby() {
	dp := &countingPublisher{}
	sb := control.NewStandby(dp)

	snap, err := dataplane.NewSnapshot([]dataplane.ServiceSpec{}, nil) // a controller's snapshot
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = sb.Publish(snap)        // standby: published without services
	_ = sb.SetForwarding(true)  // master: the latest snapshot goes through
	_ = sb.SetForwarding(false) // backup again
	fmt.Println("publishes:", len(dp.services), "forwarding:", sb.Forwarding())
	// Output: publishes: 3 forwarding: false
}

// The vrrp section of a configuration becomes the ha package's Config.
func ExampleVRRP_HA() {
	cfg, err := control.ParseConfig("xlb.yaml", []byte(`interfaces: [{name: eth0}]
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
	hc := cfg.VRRP.HA()
	fmt.Println(hc.VirtualRouterID, hc.Priority, hc.AdvertInterval, hc.VIPs, hc.PreemptEnabled())
	// Output: 51 200 100ms [198.19.0.10] true
}
