package bench_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

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

// A stream mixes sizes and protocols in their shares: here the simple IMIX with one TCP SYN
// per nine ACKs.
func ExampleNewStream() {
	sizes, _ := bench.ParseSizes("imix")
	protos, _ := bench.ParseProtos("tcp-syn:1,tcp-ack:9")
	st, err := bench.NewStream(bench.StreamConfig{Sizes: sizes, Protos: protos,
		Base: bench.TemplateConfig{Flows: 1000, Dst: netip.MustParseAddr("198.18.0.100"), DstPort: 443,
			SrcPool: netip.MustParsePrefix("198.19.0.0/16")}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d templates, a cycle of %d frames, %.1f bytes on average\n", len(st.Templates), len(st.Pattern), st.Mean())
	// Output: 6 templates, a cycle of 120 frames, 361.8 bytes on average
}

// Search finds the RFC 2544 throughput between a generator port and a sink (root only; here
// both in this process: a real set-up runs `xlb bench sink` on the far port and dials it with
// DialSink).
func ExampleSearch() {
	sink, err := bench.StartSink(bench.Port{Iface: "portB"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sink.Close()
	cfg := bench.SearchConfig{
		Gen: bench.PortGenConfig{Port: bench.Port{Iface: "portA"}, Stream: bench.StreamConfig{Base: bench.TemplateConfig{
			DstMAC: [6]byte{0x02, 0, 0, 0, 0, 1}, Dst: netip.MustParseAddr("198.18.0.100"), DstPort: 9000,
			SrcPool: netip.MustParsePrefix("198.19.0.0/16"), Flows: 1024}}},
		Counts: func() (bench.SinkCounts, error) { return sink.Counts(), nil },
		Sizes:  []int{64, 1518},
	}
	res, err := bench.Search(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = bench.SearchReport(cfg, "dut", res, time.Now()).WriteText(os.Stdout)
}
