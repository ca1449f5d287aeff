package xdpprog

import (
	"net/netip"
	"testing"
)

// BenchmarkPolicy measures the program's time per packet (BPF_PROG_TEST_RUN, 1000
// repeats per call, the kernel's figure) for a SYN to a TCP service: without a policy,
// with a 10k-prefix ACL the source misses (far from every rule, or next to the last one)
// or hits, and with new-flow limits that admit (rates too high to bind) or drop (an
// empty bucket).
func BenchmarkPolicy(b *testing.B) {
	v4, _ := prefixes(10000)
	huge := Rate{PerSecond: 1 << 40, Burst: 1 << 20}
	for _, c := range []struct {
		name string
		pol  Policy
		src  string
	}{
		{"none", Policy{}, "198.18.0.2"},
		{"acl10k-miss", Policy{Deny: v4}, "198.18.0.2"},
		{"acl10k-near-miss", Policy{Deny: v4}, "10.39.16.7"}, // shares 10.39/16 with the last rules
		{"acl10k-deny", Policy{Deny: v4}, host(v4[5000])},
		{"allow10k-pass", Policy{Allow: v4}, host(v4[5000])},
		{"limit-admit", Policy{NewFlows: huge}, "198.18.0.2"},
		{"limit+source-admit", Policy{NewFlows: huge, SourceNewFlows: huge}, "198.18.0.2"},
		{"limit-drop", Policy{NewFlows: Rate{PerSecond: 1, Burst: 1}}, "198.18.0.2"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := loaded(b)
			if err := p.SetPolicy(Key{netip.MustParseAddr("198.18.0.11"), 0, 6}, c.pol); err != nil {
				b.Fatal(err)
			}
			frame := tcp4(b, c.src, "198.18.0.11", 1234, 80)
			b.ReportAllocs()
			var total float64
			n := 0
			for b.Loop() {
				_, d, err := p.objs.Xlb.Benchmark(frame, 1000, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += float64(d.Nanoseconds())
				n++
			}
			b.ReportMetric(total/float64(n), "ns/pkt")
		})
	}
}
