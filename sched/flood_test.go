package sched

import "testing"

// craftPair returns n keys from a client range apart from flowKey's whose two buckets, as
// computed with secret s, are exactly the buckets a and b (in either order): what an
// attacker who knows the table hash sends to fill the buckets of one live flow.
func craftPair(c *Core, s *tableSecret, a, b, n int) []Key {
	var out []Key
	for i := uint32(0); len(out) < n && i < 1<<26; i++ {
		k := flowKey(i)
		k.Src[1] = 99 // 198.99.x.y: never one of the live flows
		i1, i2 := c.t.index(s.hash(&k))
		if i1 == a && i2 == b || i1 == b && i2 == a {
			out = append(out, k)
		}
	}
	return out
}

// TestCraftedBucketFlood: a flood of flows crafted to land in the two buckets of a live
// flow. Against a table whose hash the attacker can compute (as everyone could the
// unkeyed xxhash, seed 0, that the table used before issue 12; here modelled by a core
// whose secret is the attacker's guess), 24 crafted flows fill both buckets and evict the
// live flows there, the targeted one first. Against a core that drew its own secret, the
// same flows land in buckets of their own and evict nothing: every live flow keeps its
// backend.
func TestCraftedBucketFlood(t *testing.T) {
	svc := mustService(t, ServiceConfig{Strategy: RoundRobin}, backends(4))
	// The attacker's model of the hash: a public, fixed key (digits of pi).
	guess := tableSecret{0x243f6a8885a308d3, 0x13198a2e03707344, 0xa4093822299f31d0,
		0x082efa98ec4e6c89, 0x452821e638d01377, 0xbe5466cf34e90c6c}
	for _, known := range []bool{true, false} {
		c := mustCore(t, CoreConfig{Capacity: 1024})
		if known {
			c.secret = guess
		}
		const live = 64
		home := make([]int, live)
		for i := range home {
			k := flowKey(uint32(i))
			home[i] = c.Schedule(svc, &k, FlagSYN, 0)
			c.Schedule(svc, &k, FlagACK, sec) // and they keep sending
		}
		victim := flowKey(0)
		a, b := c.t.index(guess.hash(&victim))
		flood := craftPair(c, &guess, a, b, 3*ways)
		if len(flood) < 3*ways || a == b {
			t.Fatalf("could craft only %d keys for buckets %d, %d", len(flood), a, b)
		}
		for i := range flood {
			c.Schedule(svc, &flood[i], FlagSYN, 2*sec)
		}
		c.Maintain(2 * sec)
		evicted := c.Stats().Evictions
		lost, victimLost := 0, false
		for i := range home {
			k := flowKey(uint32(i))
			before := c.Stats().Misses
			c.Schedule(svc, &k, FlagACK, 3*sec)
			c.Maintain(3 * sec)
			if c.Stats().Misses != before {
				lost++
				victimLost = victimLost || i == 0
			}
		}
		checkTable(t, c)
		t.Logf("secret known to the attacker: %v: %d crafted flows evicted %d entries; %d of %d live flows lost",
			known, len(flood), evicted, lost, live)
		switch {
		case known && (evicted == 0 || !victimLost):
			t.Errorf("known hash: the crafted flood evicted %d entries and %d live flows: the test shows nothing", evicted, lost)
		case !known && (evicted != 0 || lost != 0):
			t.Errorf("keyed hash: the crafted flood evicted %d entries, %d live flows lost", evicted, lost)
		}
	}
}
