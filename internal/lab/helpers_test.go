package lab

import (
	"errors"
	"testing"
)

// skipUnlessLab skips tb when topologies cannot be built here. The tests of this package
// cannot use package testnet (it imports lab), so they have these two helpers of their own.
func skipUnlessLab(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		tb.Skipf("lab unavailable: %v", err)
	}
}

// newNet builds a topology for a test and closes it in t.Cleanup.
func newNet(t *testing.T, cfg Config) *Net {
	t.Helper()
	skipUnlessLab(t)
	n, err := Build(cfg)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("lab: %v", err)
	}
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	return n
}
