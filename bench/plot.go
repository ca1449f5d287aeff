package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Charts of a report, drawn with gonum.org/v1/plot as SVG: per scenario group, the forwarding
// rate of every variant per case (frame size, flows, ...) as bars at the median with min-max
// whiskers over the rounds; and the latency distribution of every variant of the latency runs
// as a cumulative curve.

// plotColors tells the variants apart (the Okabe-Ito palette, readable with colour-blindness).
var plotColors = []color.RGBA{
	{0, 114, 178, 255}, {230, 159, 0, 255}, {0, 158, 115, 255}, {204, 121, 167, 255},
	{86, 180, 233, 255}, {213, 94, 0, 255}, {240, 228, 66, 255}, {0, 0, 0, 255},
}

// caseLabel names a row's case on a chart's X axis: what tells it apart within its group.
func caseLabel(r Row) string {
	l := strconv.Itoa(r.Size) + " B"
	if r.Flows > 0 {
		l += ", " + r.flows() + " flows"
	}
	if r.Proto != 0 {
		l += ", " + r.Proto.String()
	}
	return l
}

// rangeBars are the min-max whiskers of one variant's bars.
type rangeBars struct {
	x, y, lo, hi []float64
}

func (b rangeBars) Len() int                    { return len(b.x) }
func (b rangeBars) XY(i int) (float64, float64) { return b.x[i], b.y[i] }
func (b rangeBars) YError(i int) (float64, float64) {
	return b.y[i] - b.lo[i], b.hi[i] - b.y[i]
}

// WritePlots writes the report's charts into dir as SVG files and returns their paths:
// rate-GROUP.svg for every group with flat-out forwarding figures, latency.svg when latency
// was measured.
func (r *Report) WritePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	var groups []string
	for _, row := range r.Rows {
		if row.Err == "" && row.Forwarded.N > 0 && row.Rate == 0 && !slices.Contains(groups, row.Group) {
			groups = append(groups, row.Group)
		}
	}
	for _, g := range groups {
		p, err := r.ratePlot(g)
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", g, err)
		}
		f := filepath.Join(dir, "rate-"+g+".svg")
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, f); err != nil {
			return files, fmt.Errorf("plot %s: %w", g, err)
		}
		files = append(files, f)
	}
	if p, ok, err := r.latencyPlot(); err != nil {
		return files, fmt.Errorf("plot latency: %w", err)
	} else if ok {
		f := filepath.Join(dir, "latency.svg")
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, f); err != nil {
			return files, fmt.Errorf("plot latency: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

// ratePlot draws group g: one bar per variant and case, at the median Mpps, with whiskers from
// the slowest to the fastest round.
func (r *Report) ratePlot(g string) (*plot.Plot, error) {
	var labels, variants []string
	val := map[[2]string]Summary{}
	for _, row := range r.Rows {
		if row.Group != g || row.Err != "" || row.Forwarded.N == 0 || row.Rate > 0 {
			continue // a fixed-rate run forwards what it is offered: no chart
		}
		l := caseLabel(row)
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
		if !slices.Contains(variants, row.Variant) {
			variants = append(variants, row.Variant)
		}
		val[[2]string{row.Variant, l}] = row.Forwarded
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("xlb bench, %s: forwarded Mpps (bars: median, whiskers: min-max of %d rounds)", g, r.Options.Rounds)
	p.Y.Label.Text = "Mpps"
	p.Y.Min = 0
	p.Legend.Top = true
	p.NominalX(labels...)
	top := 0.0
	for _, s := range val {
		top = max(top, s.Max)
	}
	p.Y.Max = top * (1.15 + 0.06*float64(len(variants))) // room for the legend above the bars
	n := float64(len(variants))
	w := 0.8 / n
	barWidth := vg.Length(w) * 6.5 * vg.Inch / vg.Length(len(labels))
	for i, v := range variants {
		var ys plotter.Values
		var rb rangeBars
		off := (float64(i) - (n-1)/2) * w
		for j, l := range labels {
			s := val[[2]string{v, l}] // a missing case stays a zero bar without whiskers
			ys = append(ys, s.Median)
			if s.N > 0 {
				rb.x, rb.y = append(rb.x, float64(j)+off), append(rb.y, s.Median)
				rb.lo, rb.hi = append(rb.lo, s.Min), append(rb.hi, s.Max)
			}
		}
		bars, err := plotter.NewBarChart(ys, barWidth)
		if err != nil {
			return nil, err
		}
		bars.XMin = off
		bars.Color = plotColors[i%len(plotColors)]
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(v, bars)
		if rb.Len() > 0 {
			eb, err := plotter.NewYErrorBars(rb)
			if err != nil {
				return nil, err
			}
			eb.LineStyle.Width = vg.Points(1.2)
			eb.CapWidth = barWidth / 2
			p.Add(eb)
		}
	}
	return p, nil
}

// latencyPlot draws, per variant of the latency runs, the share of frames (Y) that arrived
// within a latency (X, log scale), from the sink's histograms of all rounds.
func (r *Report) latencyPlot() (*plot.Plot, bool, error) {
	p := plot.New()
	p.Title.Text = "xlb bench: latency distribution (generator to sink), all rounds"
	p.X.Label.Text = "latency (µs, log scale)"
	p.Y.Label.Text = "share of frames within"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks{}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.YOffs = vg.Points(10) // bottom right: where cumulative curves are not
	drawn := 0
	for _, c := range r.cases {
		var h Histogram
		for _, s := range r.samples[c.Key()] {
			if s.Sink != nil {
				h.Merge(&s.Sink.Latency)
			}
		}
		if h.Count() == 0 {
			continue
		}
		var pts plotter.XYs
		var seen uint64
		for i, n := range h.counts {
			if n == 0 {
				continue
			}
			seen += n
			us := float64(min(bucketHigh(i), h.max)) / 1e3
			pts = append(pts, plotter.XY{X: max(us, 0.001), Y: float64(seen) / float64(h.Count())})
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, false, err
		}
		line.Color = plotColors[drawn%len(plotColors)]
		line.Width = vg.Points(1.5)
		line.StepStyle = plotter.PostStep
		p.Add(line)
		name := c.Variant
		if c.Rate > 0 {
			name += fmt.Sprintf(" at %.0f kpps", c.Rate/1e3)
		}
		p.Legend.Add(fmt.Sprintf("%s (p50 %v, p99 %v)", name, h.Percentile(0.5), h.Percentile(0.99)), line)
		drawn++
	}
	if drawn == 0 {
		return nil, false, nil
	}
	p.Add(plotter.NewGrid())
	return p, true, nil
}

// logTicks marks a log axis at 1..9 times the powers of ten in its range and labels 1, 2 and 5
// times them, or every mark when that leaves fewer than three labels (gonum's LogTicks labels
// powers of ten only, which a range like 20-90 µs does not contain).
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	labels := 0
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for m := 1.0; m <= 9; m++ {
			if v := m * math.Pow(10, e); v >= lo && v <= hi {
				t := plot.Tick{Value: v}
				if m == 1 || m == 2 || m == 5 {
					t.Label = strconv.FormatFloat(v, 'g', -1, 64)
					labels++
				}
				ts = append(ts, t)
			}
		}
	}
	if labels < 3 {
		for i := range ts {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', -1, 64)
		}
	}
	return ts
}
