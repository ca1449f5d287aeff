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
