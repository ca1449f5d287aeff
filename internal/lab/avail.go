package lab

import (
	"fmt"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
)

var (
	availOnce sync.Once
	availErr  error
)

// Available reports whether topologies can be built here: root, network namespaces, veth
// and bridge. The probe runs once per process in a throw-away namespace.
func Available() error {
	availOnce.Do(func() { availErr = probe() })
	return availErr
}

func probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w (euid %d)", ErrNotRoot, os.Geteuid())
	}
	id, err := newID()
	if err != nil {
		return err
	}
	ns, err := NewNS(id, "avail")
	if err != nil {
		return fmt.Errorf("%w: network namespaces: %w", ErrUnsupported, err)
	}
	defer ns.Close()
	if _, err := newBridge(ns, "br0", 1500); err != nil {
		return fmt.Errorf("%w: bridge: %w", ErrUnsupported, err)
	}
	if err := ns.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"}); err != nil {
		return fmt.Errorf("%w: veth: %w", ErrUnsupported, err)
	}
	return nil
}
