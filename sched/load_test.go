package sched

import "testing"

// TestCoreLoadFactor reports (and, up to 75%, bounds) the share of inserts that evicted a live flow while filling an
// empty table to 50, 75, 90 and 100% of its capacity (distinct flows, nothing idle).
func TestCoreLoadFactor(t *testing.T) {
	const capacity = 1 << 16
	svc := mustService(t, ServiceConfig{}, backends(4))
	for _, pct := range []int{50, 75, 90, 100} {
		c := mustCore(t, CoreConfig{Capacity: capacity})
		n := capacity * pct / 100
		newFlows(c, svc, 0, n)
		c.Maintain(0)
		checkTable(t, c)
		st := c.Stats()
		t.Logf("fill to %d%%: %d of %d inserts evicted a live flow (%.3f%%)", pct, st.Evictions, n, 100*float64(st.Evictions)/float64(n))
		if pct <= 75 && st.Evictions > uint64(n/1000) {
			t.Errorf("fill to %d%%: %d evictions, want under 0.1%% (two-choice buckets)", pct, st.Evictions)
		}
	}
}
