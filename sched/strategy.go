package sched

import (
	"errors"
	"fmt"
)

// Strategy selects how a service spreads new flows over its backends. Only backends that are
// up and have a weight above zero get new flows; every strategy honours the connection table,
// so a flow stays on its backend whatever the strategy says about later packets.
type Strategy uint8

const (
	// Maglev looks the flow hash (Hash) up in the service's weighted Maglev table: consistent
	// across cores and LB hosts, minimal disruption when the backend set changes.
	Maglev Strategy = iota
	// FlowHash is Maglev under the name the per-flow hash strategy is known by elsewhere;
	// config name "flow-hash".
	FlowHash
	// SourceHash looks the hash of the client address alone (HashSource) up in the Maglev
	// table: all connections of one client reach one backend, on every core and host.
	SourceHash
	// RoundRobin cycles through the eligible backends, ignoring weights; the position is
	// per core (each core starts at its own offset).
	RoundRobin
	// WeightedRoundRobin is nginx's smooth weighted round-robin, per core: over any window
	// of sum(weights) picks, each backend gets exactly its weight, interleaved.
	WeightedRoundRobin
	// Random picks a backend with probability proportional to its weight, from a per-core
	// pseudo-random generator.
	Random
	// LeastConn picks the backend with the fewest active flows relative to its weight
	// (LVS's wlc: minimise conns/weight; ties go round-robin), counting the live entries
	// (any TCP state, idle ones until they expire) of this core's connection table only.
	// Flows are spread over cores by the NIC's RSS hash, so each core's view is a sample of
	// the whole and the result is approximate across cores.
	LeastConn
	// LeastLoad is smooth weighted round-robin over weights adjusted by the load figure
	// health probes report (Backend.Load, clamped to [0, 1]):
	// effective = max(1, round(Weight * 1000 * (1 - Load))) for a backend with Weight > 0.
	// A backend at load 0.75 gets a quarter of what its weight alone would give it; a
	// saturated one (Load >= 0.999) keeps a trickle so it is seen to recover.
	LeastLoad
	numStrategies
)

var strategyNames = [numStrategies]string{
	Maglev:             "maglev",
	FlowHash:           "flow-hash",
	SourceHash:         "source-hash",
	RoundRobin:         "rr",
	WeightedRoundRobin: "wrr",
	Random:             "random",
	LeastConn:          "least-conn",
	LeastLoad:          "least-load",
}

// ErrUnknownStrategy is returned by ParseStrategy for a name it does not know.
var ErrUnknownStrategy = errors.New("unknown scheduler")

// ParseStrategy maps a config name (maglev | rr | wrr | random | source-hash | least-conn |
// least-load | flow-hash) to its Strategy. The empty string means Maglev.
func ParseStrategy(name string) (Strategy, error) {
	if name == "" {
		return Maglev, nil
	}
	for s, n := range strategyNames {
		if n == name {
			return Strategy(s), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want maglev, rr, wrr, random, source-hash, least-conn, least-load or flow-hash)", ErrUnknownStrategy, name)
}

// String returns the config name of s.
func (s Strategy) String() string {
	if s < numStrategies {
		return strategyNames[s]
	}
	return fmt.Sprintf("Strategy(%d)", uint8(s))
}

// MarshalText returns the config name (JSON and YAML write it as a string).
func (s Strategy) MarshalText() ([]byte, error) {
	if s >= numStrategies {
		return nil, fmt.Errorf("%w: %d", ErrUnknownStrategy, uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses a config name with ParseStrategy.
func (s *Strategy) UnmarshalText(b []byte) error {
	v, err := ParseStrategy(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// usesTable reports whether s looks flows up in a Maglev table.
func (s Strategy) usesTable() bool {
	return s == Maglev || s == FlowHash || s == SourceHash
}
