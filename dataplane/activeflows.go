package dataplane

// ActiveFlows returns, per service name and backend scheduler ID, the connection-table
// entries of all workers that point at the backend (idle ones count until they expire): the
// Active figures of FlowStats, which each worker republishes every activeEvery while it
// processes frames. Safe while the workers run.
func (d *Dataplane) ActiveFlows() map[string]map[uint32]uint64 {
	out := map[string]map[uint32]uint64{}
	for _, s := range d.FlowStats() {
		m := make(map[uint32]uint64, len(s.Backends))
		for _, b := range s.Backends {
			m[b.ID] += b.Active
		}
		out[s.Name] = m
	}
	return out
}
