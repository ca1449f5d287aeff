package testnet

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
)

// TB is the part of testing.TB this package uses (so the package does not import testing).
type TB interface {
	Helper()
	Cleanup(func())
	Skipf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

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

// Skip skips the test when Available fails, with the reason.
func Skip(t TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("testnet unavailable: %v", err)
	}
}

// New builds a topology for a test: it skips the test when topologies cannot be built
// here, fails it when building fails, and registers Close with t.Cleanup. Programs that
// are not tests (xlb demo) use Build and Close.
func New(t TB, cfg Config) *Net {
	t.Helper()
	Skip(t)
	n, err := Build(cfg)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("testnet: %v", err)
	}
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("testnet close: %v", err)
		}
	})
	return n
}
