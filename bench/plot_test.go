package bench

import (
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// svgStats parses an SVG document completely and counts its elements by name and the text
// it shows.
func svgStats(t *testing.T, path string) (map[string]int, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	counts := map[string]int{}
	var text strings.Builder
	depth, root := 0, ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not valid XML: %v", path, err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = e.Name.Local
				var w, h bool
				for _, a := range e.Attr {
					w = w || a.Name.Local == "width"
					h = h || a.Name.Local == "height"
				}
				if e.Name.Space != "http://www.w3.org/2000/svg" || !w || !h {
					t.Fatalf("%s: root <%s> in %q, want an <svg> with a width and a height", path, e.Name.Local, e.Name.Space)
				}
			}
			depth++
			counts[e.Name.Local]++
		case xml.EndElement:
			depth--
		case xml.CharData:
			text.Write(e)
		}
	}
	if root != "svg" || depth != 0 {
		t.Fatalf("%s: root %q, unbalanced depth %d", path, root, depth)
	}
	return counts, text.String()
}

// TestWritePlots draws the charts of a report made of known figures into a temporary
// directory and opens each one as an SVG image: a rate chart per group (a bar per variant
// and case, whiskers, legend, the case labels) and the latency distributions.
func TestWritePlots(t *testing.T) {
	r := &Report{Options: Options{Rounds: 3}, samples: map[string]map[int]Sample{}, errs: map[string]string{}}
	sum := func(med float64) Summary { return Summary{Median: med, Min: med * 0.9, Max: med * 1.05, N: 3} }
	for _, v := range []string{XLBDR, XLBTunnel, XDPTX, NFTDNAT} {
		for i, size := range []int{64, 512, 1500} {
			r.Rows = append(r.Rows, Row{Group: GroupForward, Variant: v, Size: size, Flows: 1024,
				Forwarded: sum(2.0 / float64(i+1))})
		}
	}
	for _, flows := range []int{1 << 10, 1 << 16, 1 << 20} {
		r.Rows = append(r.Rows, Row{Group: GroupFlows, Variant: XLBDR, Size: 64, Flows: flows, Forwarded: sum(1.5)})
	}
	r.Rows = append(r.Rows, Row{Group: "baseline", Variant: "ipvs-dr", Err: "not available"},
		Row{Group: GroupLatency, Variant: XLBDR, Size: 64, Flows: 1024, Rate: 50000, Forwarded: sum(0.05)}) // fixed rate: no rate chart
	rng := rand.New(rand.NewPCG(1, 2))
	for i, v := range []string{XLBDR, XDPTX} {
		c := Case{Group: GroupLatency, Variant: v, Size: 64, Flows: 1024, Rate: 50000, Check: true}
		r.cases = append(r.cases, c)
		r.samples[c.Key()] = map[int]Sample{}
		for round := range 3 {
			s := Sample{Sink: &SinkResult{}}
			for range 5000 {
				s.Sink.Latency.Record(uint64(20000*(i+1)) + uint64(rng.ExpFloat64()*5000))
			}
			r.samples[c.Key()][round] = s
		}
	}
	dir := filepath.Join(t.TempDir(), "plots")
	files, err := r.WritePlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rate-forward.svg", "rate-flows.svg", "latency.svg"}
	if len(files) != len(want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Errorf("file %d: %s, want %s", i, f, want[i])
		}
	}
	counts, text := svgStats(t, files[0])
	for _, s := range []string{XLBDR, XLBTunnel, XDPTX, NFTDNAT, "64 B, 1k flows", "1500 B, 1k flows", "Mpps"} {
		if !strings.Contains(text, s) {
			t.Errorf("rate chart lacks %q", s)
		}
	}
	// 12 bars and 12 whiskers (each a vertical line and two caps), axes, ticks: many paths.
	if counts["path"] < 12*4 {
		t.Errorf("rate chart has %d paths, want at least 48 (bars and whiskers): %v", counts["path"], counts)
	}
	if _, text := svgStats(t, files[1]); !strings.Contains(text, "1M flows") || !strings.Contains(text, "64k flows") {
		t.Errorf("flows chart labels: %q", text)
	}
	counts, text = svgStats(t, files[2])
	if !strings.Contains(text, "xlb-dr at 50 kpps (p50") || !strings.Contains(text, "xdp-tx at 50 kpps") || counts["path"] < 2 {
		t.Errorf("latency chart: %v %q", counts, text)
	}
}
