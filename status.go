package xlb

import (
	"context"

	"github.com/xlb-dev/xlb/control"
)

// Status is the LB's live state, as the API shows it in parts.
type Status struct {
	// Running: Run has started and not returned.
	Running bool
	// Controller is the controller's own state (generation, reloads).
	Controller control.ControllerStatus
	// Services are the services with their backend counts and traffic.
	Services []control.ServiceStatus
	// VRRP is the VRRP router's state (nil without a vrrp section).
	VRRP *control.VRRPStatus
	// BGP is the announcer's state (nil without a bgp section or before
	// Run started it).
	BGP *control.BGPStatus
}

// Status returns the live state. ctx bounds the BGP session query.
func (lb *LB) Status(ctx context.Context) Status {
	lb.mu.Lock()
	st := Status{Running: lb.state == stateRunning}
	ann := lb.bgp
	lb.mu.Unlock()
	st.Controller = lb.ctrl.Status()
	st.Services = lb.ctrl.Services()
	if lb.vrrp != nil {
		v := lb.vrrp.VRRPStatus()
		st.VRRP = &v
	}
	if ann != nil {
		b := ann.Status(ctx)
		st.BGP = &b
	}
	return st
}

// Backends returns the backends of a service with their health, next hop
// and traffic (control.ErrNotFound for an unknown service).
func (lb *LB) Backends(service string) ([]control.BackendStatus, error) {
	return lb.ctrl.Backends(service)
}
