package bench_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/xlb-dev/xlb/bench"
)

// A template makes the frames of N flows; Write and Patch fill in one flow with exact
// checksums.
func ExampleNewTemplate() {
	t, err := bench.NewTemplate(bench.TemplateConfig{Proto: bench.UDP, Size: 64, Flows: 100000,
		Dst: netip.MustParseAddr("198.18.0.100"), DstPort: 9000, SrcPool: netip.MustParsePrefix("198.19.0.0/16")})
	if err != nil {
		fmt.Println(err)
		return
	}
	frame := make([]byte, t.Len())
	t.Write(frame, 64001, 0)
	src, port := t.Flow(64001)
	fmt.Println(t.Len(), src, port, t.HasStamp())
	// Output: 60 198.19.0.2 1025 true
}

func ExampleHistogram() {
	var h bench.Histogram
	for i := range 100 {
		h.Record(uint64(i+1) * 1000) // 1..100 us
	}
	fmt.Println(h.Percentile(0.5) >= 50000 && h.Percentile(0.5) < 50000*17/16, h.Count())
	// Output: true 100
}

// Run measures xlb against the baselines on a namespace topology of its own (root only) and
// writes the table.
func ExampleRun() {
	o := bench.Quick()
	o.Groups = []string{bench.GroupForward, bench.GroupLatency}
	o.Progress = func(done, total int, what string) { fmt.Fprintf(os.Stderr, "[%d/%d] %s\n", done, total, what) }
	rep, err := bench.Run(context.Background(), o)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = rep.WriteMarkdown(os.Stdout, "xlb bench --quick --scenario forward,latency")
}
