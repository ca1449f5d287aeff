package testnet

import (
	"errors"

	"github.com/xlb-dev/xlb/internal/lab"
)

// TB is the part of testing.TB this package uses (so the package does not import testing).
type TB interface {
	Helper()
	Cleanup(func())
	Skipf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Skip skips the test when Available fails, with the reason.
func Skip(t TB) {
	t.Helper()
	if err := lab.Available(); err != nil {
		t.Skipf("testnet unavailable: %v", err)
	}
}

// New builds a topology for a test: it skips the test when topologies cannot be built
// here, fails it when building fails, and registers Close with t.Cleanup. Programs that
// are not tests (xlb demo) use Build and Close.
func New(t TB, cfg lab.Config) *lab.Net {
	t.Helper()
	Skip(t)
	n, err := lab.Build(cfg)
	if errors.Is(err, lab.ErrUnsupported) {
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
