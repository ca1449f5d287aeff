package sched

import "testing"

// TestScalarFallback runs the tests of the eviction and the idle sweep with AVX2 switched
// off, as on an amd64 CPU without it: victim and Maintain then take the scalar tree.
func TestScalarFallback(t *testing.T) {
	if !hasAVX2 {
		t.Skip("this CPU has no AVX2: every test already takes the scalar path")
	}
	hasAVX2 = false
	defer func() { hasAVX2 = true }()
	t.Run("EvictsLeastRecentlySeen", TestCoreEvictsLeastRecentlySeen)
	t.Run("VictimPrefersExpired", TestCoreVictimPrefersExpired)
	t.Run("ConfiguredTimeoutsAndSweep", TestCoreConfiguredTimeoutsAndSweep)
	t.Run("Flood", TestCoreFlood)
	t.Run("TickWrap", TestCoreTickWrap)
}
