package decap_test

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/internal/testnet/decap"
)

// Attach the decap program to a backend's eth0 ingress through a netlink handle opened in
// the backend's namespace (testnet does this for Config.Decap), then read its counters.
// It needs root and a namespace, so it has no Output check (TestDecapUDP runs it).
func ExampleProgram_Attach() {
	var h *netlink.Handle // e.g. backend.Handle() from internal/testnet
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
