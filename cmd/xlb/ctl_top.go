package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/control"
)

const topUsage = `usage: xlb ctl top [--interval D] [--count N] [--sort KEY] [--service S]

Shows, per service and per backend, packets/s, bits/s and new flows/s received (client to
VIP) and the connection-table entries (active flows), refreshed every interval. KEY is
pps, bps, flows, active or name. On a terminal the screen is redrawn and the keys p, b,
f, a and n change the order (q quits); otherwise every
interval prints plain lines (TIME SERVICE BACKEND PPS BPS NEW_FLOWS_PER_S ACTIVE; the
backend "-" is the service's total).
`

// topRow is one line of `xlb ctl top`: a service total (Backend "") or a backend.
type topRow struct {
	Service, Backend string
	PPS, BPS, FPS    float64
	Active           uint64
}

var topSorts = map[string]func(a, b topRow) int{
	"pps":    func(a, b topRow) int { return cmp.Compare(b.PPS, a.PPS) },
	"bps":    func(a, b topRow) int { return cmp.Compare(b.BPS, a.BPS) },
	"flows":  func(a, b topRow) int { return cmp.Compare(b.FPS, a.FPS) },
	"active": func(a, b topRow) int { return cmp.Compare(b.Active, a.Active) },
	"name":   func(a, b topRow) int { return 0 },
}

func rate(cur, prev uint64, dt float64) float64 {
	if cur < prev || dt <= 0 { // a counter restarted (xlb restarted): no rate this time
		return 0
	}
	return float64(cur-prev) / dt
}

// topRows turns two traffic reports into rates: every service (sorted by key, ties by
// name) followed by its backends (sorted the same way).
func topRows(prev, cur control.TrafficReport, key, only string) []topRow {
	dt := cur.Time.Sub(prev.Time).Seconds()
	by := topSorts[key]
	order := func(a, b topRow) int {
		if c := by(a, b); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Backend, b.Backend))
	}
	old := map[string]control.ServiceTraffic{}
	for _, s := range prev.Services {
		old[s.Name] = s
	}
	type group struct {
		svc topRow
		bes []topRow
	}
	var groups []group
	for _, s := range cur.Services {
		if only != "" && s.Name != only {
			continue
		}
		p := old[s.Name]
		g := group{svc: topRow{Service: s.Name, Active: s.Active,
			PPS: rate(s.Traffic.Packets, p.Traffic.Packets, dt),
			BPS: 8 * rate(s.Traffic.Bytes, p.Traffic.Bytes, dt),
			FPS: rate(s.Traffic.NewFlows, p.Traffic.NewFlows, dt)}}
		for _, b := range s.Backends {
			var pb control.BackendTraffic
			for _, x := range p.Backends {
				if x.ID == b.ID {
					pb = x
				}
			}
			g.bes = append(g.bes, topRow{Service: s.Name, Backend: b.Name, Active: b.Active,
				PPS: rate(b.Traffic.Packets, pb.Traffic.Packets, dt),
				BPS: 8 * rate(b.Traffic.Bytes, pb.Traffic.Bytes, dt),
				FPS: rate(b.Traffic.NewFlows, pb.Traffic.NewFlows, dt)})
		}
		slices.SortFunc(g.bes, order)
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b group) int { return order(a.svc, b.svc) })
	var rows []topRow
	for _, g := range groups {
		rows = append(append(rows, g.svc), g.bes...)
	}
	return rows
}

// human prints n with a k/M/G suffix.
func human(n float64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(n/1e9, 'f', 2, 64) + "G"
	case n >= 1e6:
		return strconv.FormatFloat(n/1e6, 'f', 2, 64) + "M"
	case n >= 1e4:
		return strconv.FormatFloat(n/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(n, 'f', 0, 64)
}

// printTop draws one screen (terminal) or prints one interval's plain lines.
func printTop(w io.Writer, rows []topRow, at time.Time, key string, terminal bool) error {
	if !terminal {
		ts := at.UTC().Format(time.RFC3339)
		for _, r := range rows {
			be := cmp.Or(r.Backend, "-")
			if _, err := fmt.Fprintf(w, "%s %s %s %.0f %.0f %.0f %d\n", ts, r.Service, be, r.PPS, r.BPS, r.FPS, r.Active); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(w, "\x1b[H\x1b[2Jxlb top  %s  sorted by %s\n\n", at.Format("15:04:05"), key)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SERVICE\tBACKEND\tPACKETS/S\tBITS/S\tNEW FLOWS/S\tACTIVE\t")
	for _, r := range rows {
		name := r.Service
		if r.Backend != "" {
			name = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", name, r.Backend, human(r.PPS), human(r.BPS), human(r.FPS), r.Active)
	}
	return tw.Flush()
}

// topKeySorts maps the keys of an interactive top to its sort keys.
var topKeySorts = map[byte]string{'p': "pps", 'b': "bps", 'f': "flows", 'a': "active", 'n': "name"}

// topKeys switches a terminal on in to unbuffered input without echo and delivers its key
// presses; restore puts the terminal back. Nil when in is not a terminal.
func topKeys(in *os.File) (<-chan byte, func()) {
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, nil
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, nil
	}
	ch := make(chan byte, 8)
	go func() { // ends with the process: a blocked read on a terminal cannot be interrupted
		var b [1]byte
		for {
			if n, err := in.Read(b[:]); err != nil || n == 0 {
				return
			}
			select {
			case ch <- b[0]:
			default:
			}
		}
	}()
	return ch, func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ctlTop is `xlb ctl top`.
func ctlTop(cl *control.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb ctl top", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, topUsage); fs.PrintDefaults() }
	interval := fs.Duration("interval", time.Second, "refresh interval")
	count := fs.Int("count", 0, "stop after this many refreshes (0: until Ctrl-C)")
	key := fs.String("sort", "pps", "sort by pps, bps, flows, active or name")
	only := fs.String("service", "", "only this service")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, ok := topSorts[*key]; !ok || *interval <= 0 || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("%w: xlb ctl top: bad --sort, --interval or arguments", errUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	get := func() (control.TrafficReport, error) {
		rctx, cancel := context.WithTimeout(ctx, max(*interval, 5*time.Second))
		defer cancel()
		return cl.Traffic(rctx)
	}
	prev, err := get()
	if err != nil {
		return err
	}
	terminal := isTerminal(stdout)
	var keys <-chan byte
	if !terminal {
		fmt.Fprintln(stdout, "TIME SERVICE BACKEND PPS BPS NEW_FLOWS_PER_S ACTIVE")
	} else if k, restore := topKeys(os.Stdin); k != nil {
		defer restore()
		keys = k
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	var shown *control.TrafficReport // the report before prev, once a screen shows their rates
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case k := <-keys:
			if k == 'q' {
				return nil
			}
			if s, ok := topKeySorts[k]; ok && shown != nil {
				*key = s // re-sort what is on the screen now
				_ = printTop(stdout, topRows(*shown, prev, *key, *only), prev.Time, *key, terminal)
			}
			n--
			continue
		case <-tick.C:
		}
		cur, err := get()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := printTop(stdout, topRows(prev, cur, *key, *only), cur.Time, *key, terminal); err != nil {
			return err
		}
		before := prev
		shown, prev = &before, cur
	}
	return nil
}
