package sched

import "testing"

// countBySvc counts the table's entries per service index.
func countBySvc(c *Core) map[int]int64 {
	out := map[int]int64{}
	for bi := range c.t.b {
		b := &c.t.b[bi]
		for w := range ways {
			if b.used(w) {
				out[int(b.ent[w].svc)]++
			}
		}
	}
	return out
}

// TestTableShare: a flood of new flows against one service (index 0) while another
// (index 1, round robin) holds live flows. Without a share the flood evicts the other
// service's flows; with TableShare 50 it replaces only its own entries, holds at most
// half the table, and every live flow of the other service keeps its backend.
func TestTableShare(t *testing.T) {
	for _, share := range []int{0, 50} {
		c := mustCore(t, CoreConfig{Capacity: 1024})
		flooded := mustService(t, ServiceConfig{Index: 0, Strategy: Maglev, TableShare: share}, backends(3))
		kept := mustService(t, ServiceConfig{Index: 1, Strategy: RoundRobin, TableShare: share}, backends(4))
		const live = 300
		home := make([]int, live)
		for i := range home {
			k := flowKey(uint32(i))
			k.DstPort = 443
			home[i] = c.Schedule(kept, &k, FlagSYN, 0)
		}
		for i := range 20000 {
			k := flowKey(uint32(100000 + i))
			k.Src[1] = 99
			c.Schedule(flooded, &k, FlagSYN, sec)
		}
		c.Maintain(sec)
		moved := 0 // live flows the table forgot (rescheduled as new: round robin moves them)
		for i := range home {
			k := flowKey(uint32(i))
			k.DstPort = 443
			before := c.Stats().Misses
			c.Schedule(kept, &k, FlagACK, 2*sec)
			c.Maintain(2 * sec)
			if c.Stats().Misses != before {
				moved++
			}
		}
		c.Maintain(2 * sec)
		checkTable(t, c)
		per := countBySvc(c)
		st := c.Stats()
		t.Logf("share %d%%: flooded service holds %d entries, %d of %d live flows of the other moved; over quota %d, evictions %d",
			share, per[0], moved, live, st.OverQuota, st.Evictions)
		if got := c.svcs[0].live; got != per[0] {
			t.Errorf("share %d%%: flooded service counted %d entries, the table holds %d", share, got, per[0])
		}
		if got := c.svcs[1].live; got != per[1] {
			t.Errorf("share %d%%: kept service counted %d entries, the table holds %d", share, got, per[1])
		}
		switch share {
		case 0:
			if moved == 0 {
				t.Errorf("without a share the flood moved no live flow: the test shows nothing")
			}
		default:
			if moved != 0 || per[0] > int64(c.Capacity()*share/100) {
				t.Errorf("share %d%%: %d live flows moved, flooded service holds %d of %d, over quota %d",
					share, moved, per[0], c.Capacity(), st.OverQuota)
			}
		}
	}
}

// TestTableShareOverQuota: a service at its share whose new flow's two buckets hold none of
// its own entries forwards the flow (the strategy's pick) without an entry and counts it;
// it never takes a free way, however empty the table.
func TestTableShareOverQuota(t *testing.T) {
	c := mustCore(t, CoreConfig{Capacity: 1024})
	svc := mustService(t, ServiceConfig{Index: 0, Strategy: Maglev, TableShare: 1}, backends(3)) // quota: 10 entries
	quota := int64(c.Capacity() / 100)
	for i := range 200 {
		k := flowKey(uint32(i))
		if p := c.Schedule(svc, &k, FlagSYN, sec); p < 0 {
			t.Fatalf("flow %d: no backend", i)
		}
	}
	c.Maintain(sec) // publishes the counters
	st := c.Stats()
	per := countBySvc(c)
	if per[0] != quota || c.svcs[0].live != quota {
		t.Errorf("service holds %d entries (counted %d), want its quota %d", per[0], c.svcs[0].live, quota)
	}
	if st.OverQuota == 0 || st.OverQuota+st.Inserts != 200 {
		t.Errorf("over quota %d + inserts %d, want 200 with some over quota", st.OverQuota, st.Inserts)
	}
	checkTable(t, c)
}
