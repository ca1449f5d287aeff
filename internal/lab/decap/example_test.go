package decap_test

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xlb-dev/xlb/internal/lab/decap"
)

// Attach the decap program to a backend's eth0 ingress through a netlink handle opened in
// the backend's namespace (lab does this for Config.Decap), then read its counters.
// It needs root and a namespace, so it has no Output check (TestDecapUDP runs it).
func ExampleProgram_Attach() {
	ns, err := netns.GetFromName("xlb-0a1b2c-b0") // a backend namespace lab made
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns) // or Backend.Handle() from internal/lab
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	p, err := decap.Load()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Attach(h, l.Attrs().Index); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := p.Stats()
	fmt.Println(st.Decap)
}
