package sched

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Backend is one real server of a service as the scheduler sees it.
type Backend struct {
	// ID is stable for the life of the backend in its service (assigned by control, never
	// reused within a process): connection-table entries hold it, so they survive a rebuilt
	// snapshot.
	ID uint32
	// Name is the backend's stable name (e.g. "198.18.0.11:80"). Its Maglev permutation is
	// derived from it, so the same name lands on the same slots on every LB host.
	Name string
	// Weight is the relative share of new flows; 0 drains the backend (no new flows, its
	// existing flows stay).
	Weight uint32
	// Up is the health prober's verdict. A backend that is not up gets no new flows, and a
	// flow on it is rescheduled on its next packet.
	Up bool
	// Load is the load figure health probes report, in [0, 1] (0 idle, 1 saturated; values
	// outside are clamped, NaN counts as 0). Only LeastLoad uses it.
	Load float64
}

// ServiceConfig is the scheduling part of a service's configuration.
type ServiceConfig struct {
	// Index is the service's dense index, 0 <= Index < MaxServices, stable across rebuilt
	// snapshots of the same service and unique among live services. Each Core keeps its
	// per-service state in a slice at this index, and connection-table entries record it.
	Index int
	// Strategy spreads the new flows.
	Strategy Strategy
	// TableSize is the Maglev table size M, one of Primes; 0 means DefaultTableSize. Only
	// the hash strategies (Maglev, FlowHash, SourceHash) build a table.
	TableSize int
	// HashKey keys the flow hash the hash strategies look up (see HashKey): the same on
	// every LB host of a cluster. The zero key means DefaultHashKey, which is public.
	HashKey HashKey
	// TableShare is the percentage (1..100) of each core's connection table the service's
	// flows may hold; 0 means 100 (no quota). A service at its share makes room for a new
	// flow only among its own entries, so a flood against it cannot evict other services'
	// flows; when none of its own is in the new flow's two buckets, the flow is forwarded
	// without an entry (Stats.OverQuota).
	TableShare int
	// Persistence, when its Timeout is set, sends every new flow of a client prefix to the
	// backend the prefix's earlier flows got (see Persistence), on every core that shares
	// the PersistTable.
	Persistence Persistence
	// OnePacket schedules every packet as a new flow and records none in the connection
	// table (IPVS's one-packet scheduling, ipvsadm -o): for UDP services whose datagrams
	// are independent requests (DNS, syslog).
	OnePacket bool
}

// Limits of a snapshot.
const (
	MaxServices = 1 << 16 // service indexes are stored in 16 bits per connection
	MaxBackends = 1 << 16 // backends per service
)

// Errors returned by NewService and Builder.Build; test with errors.Is.
var (
	ErrTableSize   = errors.New("maglev table size must be one of sched.Primes")
	ErrBadService  = errors.New("invalid service")
	ErrBadBackends = errors.New("invalid backends")
)

// Service is an immutable snapshot of one service: its backends in the caller's order, the
// strategy and, for the hash strategies, the weighted Maglev table. Build it with NewService
// or Builder.Build off the hot path, publish it with atomic.Pointer.Store, and let workers
// Load it once per batch. Every method is safe for concurrent use.
type Service struct {
	index    int
	strategy Strategy
	hashKey  HashKey
	k0, k1   uint64 // hashKey as SipHash's key words
	backends []Backend
	weight   []uint64 // effective weight per position, 0 when not eligible
	eligible []int32  // positions with weight > 0, in position order
	cum      []uint64 // cum[k] = sum of weight[eligible[0..k]]
	total    uint64
	table    []int32 // Maglev: slot -> position; nil for the other strategies
	ids      idIndex
	share    int // TableShare
	persist  Persistence
	pticks   uint32 // persist.Timeout in PersistTable ticks; 0: not persistent
	onePkt   bool
}

// NewService builds a snapshot with a fresh Builder. See Builder.Build.
func NewService(cfg ServiceConfig, backends []Backend) (*Service, error) {
	var b Builder
	return b.Build(cfg, backends)
}

// Build validates cfg and backends and builds an immutable snapshot. The backends keep the
// caller's order (an index returned by Core.Schedule is a position in it), while the Maglev
// table is built in the order of the backends' names, so it does not depend on that order.
// Backends must have unique non-empty names and unique IDs. Backends that are down or have
// weight 0 get no Maglev slots.
func (b *Builder) Build(cfg ServiceConfig, backends []Backend) (*Service, error) {
	if cfg.Index < 0 || cfg.Index >= MaxServices {
		return nil, fmt.Errorf("%w: index %d out of [0, %d)", ErrBadService, cfg.Index, MaxServices)
	}
	if cfg.Strategy >= numStrategies {
		return nil, fmt.Errorf("%w: %v", ErrUnknownStrategy, cfg.Strategy)
	}
	m := cfg.TableSize
	if m == 0 {
		m = DefaultTableSize
	}
	if !slices.Contains(Primes, m) {
		return nil, fmt.Errorf("%w: %d", ErrTableSize, m)
	}
	if cfg.TableShare < 0 || cfg.TableShare > 100 {
		return nil, fmt.Errorf("%w: table share %d%% not in 0..100", ErrBadService, cfg.TableShare)
	}
	if len(backends) > MaxBackends {
		return nil, fmt.Errorf("%w: %d backends, at most %d", ErrBadBackends, len(backends), MaxBackends)
	}
	s := &Service{
		index:    cfg.Index,
		strategy: cfg.Strategy,
		backends: slices.Clone(backends),
		weight:   make([]uint64, len(backends)),
		hashKey:  cfg.HashKey,
		share:    cfg.TableShare,
		onePkt:   cfg.OnePacket,
	}
	if err := s.setPersistence(cfg.Persistence); err != nil {
		return nil, err
	}
	if s.hashKey == (HashKey{}) {
		s.hashKey = defaultHashKey
	}
	s.k0, s.k1 = s.hashKey.words()
	s.ids.init(len(backends))
	b.order = b.order[:0]
	for i := range s.backends {
		be := &s.backends[i]
		if be.Name == "" {
			return nil, fmt.Errorf("%w: backend %d (id %d) has no name", ErrBadBackends, i, be.ID)
		}
		if !s.ids.insert(be.ID, int32(i)) {
			return nil, fmt.Errorf("%w: id %d used twice", ErrBadBackends, be.ID)
		}
		switch {
		case math.IsNaN(be.Load), be.Load < 0:
			be.Load = 0
		case be.Load > 1:
			be.Load = 1
		}
		b.order = append(b.order, int32(i))
	}
	slices.SortFunc(b.order, func(x, y int32) int { return strings.Compare(s.backends[x].Name, s.backends[y].Name) })
	for k := 1; k < len(b.order); k++ {
		if s.backends[b.order[k]].Name == s.backends[b.order[k-1]].Name {
			return nil, fmt.Errorf("%w: name %q used twice", ErrBadBackends, s.backends[b.order[k]].Name)
		}
	}
	for i, be := range s.backends {
		if !be.Up || be.Weight == 0 {
			continue
		}
		w := uint64(be.Weight)
		if cfg.Strategy == LeastLoad {
			w = max(1, uint64(math.Round(float64(be.Weight)*1000*(1-be.Load))))
		}
		s.weight[i] = w
		s.total += w
		s.eligible = append(s.eligible, int32(i))
		s.cum = append(s.cum, s.total)
	}
	if cfg.Strategy.usesTable() {
		s.table = make([]int32, m)
		b.buildTable(s, uint64(m))
	}
	return s, nil
}

// buildTable fills s.table, permuting backends in name order and mapping the result back to
// positions.
func (b *Builder) buildTable(s *Service, m uint64) {
	n := len(b.order)
	b.offsets = grow(b.offsets, n)
	b.skips = grow(b.skips, n)
	b.weights = grow(b.weights, n)
	for k, pos := range b.order {
		be := &s.backends[pos]
		b.offsets[k], b.skips[k] = b.permutation(be.Name, m)
		b.weights[k] = 0
		if s.weight[pos] > 0 {
			b.weights[k] = be.Weight
		}
	}
	b.fill(s.table, b.offsets, b.skips, b.weights)
	for i, k := range s.table {
		if k >= 0 {
			s.table[i] = b.order[k]
		}
	}
}

// Index returns the service's dense index (ServiceConfig.Index).
func (s *Service) Index() int { return s.index }

// Strategy returns the service's strategy.
func (s *Service) Strategy() Strategy { return s.strategy }

// Len returns the number of backends.
func (s *Service) Len() int { return len(s.backends) }

// Backend returns the backend at position i, or the zero Backend when i is not in
// [0, Len()).
func (s *Service) Backend(i int) Backend {
	if i < 0 || i >= len(s.backends) {
		return Backend{}
	}
	return s.backends[i]
}

// Position returns the position of the backend with the given ID, or -1.
func (s *Service) Position(id uint32) int { return int(s.ids.lookup(id)) }

// TableSize returns the Maglev table size, or 0 when the strategy builds no table.
func (s *Service) TableSize() int { return len(s.table) }

// Table returns a copy of the Maglev table (slot -> backend position, -1 for none), or nil
// when the strategy builds no table. For tests and inspection; it allocates.
func (s *Service) Table() []int32 { return slices.Clone(s.table) }

// HashKey returns the key of the service's flow hash (DefaultHashKey when its config left
// it zero).
func (s *Service) HashKey() HashKey { return s.hashKey }

// setPersistence checks p and fills in its default prefixes.
func (s *Service) setPersistence(p Persistence) error {
	if p.Timeout == 0 {
		return nil
	}
	if p.Timeout < time.Second || p.Timeout > maxTimeout {
		return fmt.Errorf("%w: persistence timeout %v not in 1s..%v", ErrBadService, p.Timeout, maxTimeout)
	}
	if p.Prefix4 == 0 {
		p.Prefix4 = 32
	}
	if p.Prefix6 == 0 {
		p.Prefix6 = 64
	}
	if p.Prefix4 < 0 || p.Prefix4 > 32 || p.Prefix6 < 0 || p.Prefix6 > 128 {
		return fmt.Errorf("%w: persistence prefix /%d (IPv4) or /%d (IPv6) out of range", ErrBadService, p.Prefix4, p.Prefix6)
	}
	s.persist, s.pticks = p, persistTicks(p.Timeout)
	return nil
}

// Persistence returns the service's persistence (with its default prefixes filled in), the
// zero value when it has none.
func (s *Service) Persistence() Persistence { return s.persist }

// OnePacket reports whether the service schedules every packet without a table entry.
func (s *Service) OnePacket() bool { return s.onePkt }

// TableShare returns the service's share of each core's connection table in percent (0:
// no quota), see ServiceConfig.TableShare.
func (s *Service) TableShare() int { return s.share }

// FlowHash returns the hash a hash strategy looks k up with: the keyed hash of the whole
// flow (HashKey.Flow) for Maglev and FlowHash, of the client address alone (HashKey.Source)
// for SourceHash. It does not allocate.
func (s *Service) FlowHash(k *Key) uint64 {
	if s.strategy == SourceHash {
		return k.sourceHash(s.k0, s.k1)
	}
	return k.flowHash(s.k0, s.k1)
}

// Lookup returns the backend position the Maglev table gives a new flow k (FlowHash's
// slot), or -1 when the strategy builds no table or no backend can take flows. Every LB
// host with the same backends and HashKey answers the same.
func (s *Service) Lookup(k *Key) int {
	if len(s.table) == 0 {
		return -1
	}
	return s.LookupHash(s.FlowHash(k))
}

// LookupHash returns the backend position that slot h of the Maglev table names (h is a
// flow or source hash, see FlowHash), or -1 when there is no table or no backend can take
// flows.
func (s *Service) LookupHash(h uint64) int {
	if len(s.table) == 0 {
		return -1
	}
	return int(s.table[lookupSlot(h, len(s.table))])
}

// idIndex maps backend IDs to positions: open addressing, linear probing, power-of-two size
// at least twice the number of backends.
type idIndex struct {
	keys  []uint32
	pos   []int32 // -1: empty
	shift uint
}

func (x *idIndex) init(n int) {
	size := 8
	for size < 2*n {
		size <<= 1
	}
	x.keys = make([]uint32, size)
	x.pos = make([]int32, size)
	for i := range x.pos {
		x.pos[i] = -1
	}
	x.shift = uint(32 - bitsLen(size-1))
}

func bitsLen(v int) int {
	n := 0
	for ; v > 0; v >>= 1 {
		n++
	}
	return n
}

func (x *idIndex) slot(id uint32) int { return int((id * 0x9e3779b1) >> x.shift) }

// insert adds id; false when it is already present.
func (x *idIndex) insert(id uint32, pos int32) bool {
	mask := len(x.keys) - 1
	for i := x.slot(id); ; i = (i + 1) & mask {
		if x.pos[i] < 0 {
			x.keys[i], x.pos[i] = id, pos
			return true
		}
		if x.keys[i] == id {
			return false
		}
	}
}

func (x *idIndex) lookup(id uint32) int32 {
	mask := len(x.keys) - 1
	for i := x.slot(id); ; i = (i + 1) & mask {
		p := x.pos[i]
		if p < 0 || x.keys[i] == id {
			return p
		}
	}
}
