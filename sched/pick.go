package sched

import "math/bits"

// pick chooses a backend position of svc for a new flow with key k, or -1. st is this
// core's state for svc (laid out by Prepare). The hash strategies hash the flow with the
// service's HashKey here, on new flows only: a known flow is found by the table's own hash.
func (c *Core) pick(st *svcState, svc *Service, k *Key) int {
	if len(svc.eligible) == 0 {
		return -1
	}
	switch svc.strategy {
	case Maglev, FlowHash: // svc.FlowHash's cases, without its call
		return int(svc.table[lookupSlot(k.flowHash(svc.k0, svc.k1), len(svc.table))])
	case SourceHash:
		return int(svc.table[lookupSlot(k.sourceHash(svc.k0, svc.k1), len(svc.table))])
	case RoundRobin:
		n := uint32(len(svc.eligible))
		i := st.rr % n
		st.rr = i + 1
		return int(svc.eligible[i])
	case Random:
		return pickWeighted(svc, c.next())
	case LeastConn:
		return pickLeastConn(st, svc)
	default: // WeightedRoundRobin, LeastLoad
		return pickSmooth(st, svc)
	}
}

// pickWeighted returns the eligible backend whose cumulative-weight interval holds r scaled
// to the total weight.
func pickWeighted(svc *Service, r uint64) int {
	x, _ := bits.Mul64(r, svc.total)
	lo, hi := 0, len(svc.cum)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if svc.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return int(svc.eligible[lo])
}

// pickSmooth is nginx's smooth weighted round-robin: every eligible backend gains its weight,
// the one with the highest current weight wins and loses the total.
func pickSmooth(st *svcState, svc *Service) int {
	best := -1
	var bestCur int64
	for _, p := range svc.eligible {
		st.cur[p] += int64(svc.weight[p])
		if best < 0 || st.cur[p] > bestCur {
			best, bestCur = int(p), st.cur[p]
		}
	}
	st.cur[best] -= int64(svc.total)
	return best
}

// pickLeastConn minimises conns/weight over the eligible backends (compared as
// conns[a]*w[b] < conns[b]*w[a]), starting the scan at a rotating offset so ties spread.
func pickLeastConn(st *svcState, svc *Service) int {
	n := len(svc.eligible)
	start := int(st.rr % uint32(n))
	st.rr = uint32(start + 1)
	best := int(svc.eligible[start])
	for j := 1; j < n; j++ {
		i := start + j
		if i >= n {
			i -= n
		}
		p := int(svc.eligible[i])
		if uint64(st.conns[p])*svc.weight[best] < uint64(st.conns[best])*svc.weight[p] {
			best = p
		}
	}
	return best
}

// next returns the core's next pseudo-random number (xorshift64*).
func (c *Core) next() uint64 {
	x := c.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	c.rng = x
	return x * 0x2545f4914f6cdd1d
}

// splitmix turns a seed into a non-zero generator state.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	if x == 0 {
		x = 1
	}
	return x
}
