package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
)

// ctlRuntimeUsage is the part of ctl's usage about runtime changes and listings.
const ctlRuntimeUsage = `  add-service NAME --vip V --port P [--protocol P] [--method M] [--scheduler S]
              [--health KIND] [--backend ADDR[:PORT][@WEIGHT]]...  | add-service -f FILE|-
                                  add a service (ipvsadm -A); FILE: one service in YAML or JSON
  edit-service NAME [--scheduler S] [--method M] [--health KIND] ... | -f FILE|-
                                  change what is given, keep the rest (ipvsadm -E)
  delete-service NAME             remove a service (ipvsadm -D)
  add-backend SERVICE ADDRESS [--name N] [--port P] [--weight W] [--disabled]
                                  add a backend (ipvsadm -a)
  edit-backend SERVICE BACKEND [--address A] [--port P] [--weight W] [--disabled=true|false]
                                  change a backend's configuration (ipvsadm -e)
  delete-backend SERVICE BACKEND  remove a backend: its flows move, the others stay (ipvsadm -d)
  save                            print the running configuration (file + runtime changes) as YAML
  list [--stats | --rate [--interval D]]
                                  services and backends as ipvsadm -Ln shows them
  conns [--service S] [--client PREFIX] [--limit N]
                                  connection-table entries as ipvsadm -Lnc shows them
Runtime changes are checked like the file and last until the next reload, which reads the
file again and drops them (xlb ctl save > FILE keeps them).
`

// parseInterspersed parses args with fs, letting flags follow positional arguments, and
// returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// ctlRuntime runs the runtime-change and listing commands; ok is false for another command.
func ctlRuntime(ctx context.Context, cl *control.Client, a []string, asJSON bool, stdout, stderr io.Writer) (ok bool, err error) {
	switch a[0] {
	case "add-service", "edit-service", "add-backend", "edit-backend":
		return true, ctlChange(ctx, cl, a, stdout, stderr)
	case "delete-service", "delete-backend":
		want := map[string]int{"delete-service": 1, "delete-backend": 2}[a[0]]
		if len(a)-1 != want {
			return true, fmt.Errorf("%w: xlb ctl %s SERVICE%s", errUsage, a[0], map[int]string{1: "", 2: " BACKEND"}[want])
		}
		if want == 1 {
			err = cl.DeleteService(ctx, a[1])
		} else {
			err = cl.DeleteBackend(ctx, a[1], a[2])
		}
		if err == nil {
			fmt.Fprintf(stdout, "ok: %s %s\n", a[0], strings.Join(a[1:], "/"))
		}
		return true, err
	case "save":
		if len(a) != 1 {
			return true, fmt.Errorf("%w: xlb ctl save", errUsage)
		}
		y, err := cl.Save(ctx)
		if err == nil {
			_, err = stdout.Write(y)
		}
		return true, err
	case "list":
		return true, ctlList(ctx, cl, a[1:], asJSON, stdout, stderr)
	case "conns":
		return true, ctlConns(ctx, cl, a[1:], asJSON, stdout, stderr)
	}
	return false, nil
}

// ctlChange builds the document of an add or edit from the flags (or reads it from -f) and
// sends it.
func ctlChange(ctx context.Context, cl *control.Client, a []string, stdout, stderr io.Writer) error {
	cmd := a[0]
	fs := newFlagSet("xlb ctl "+cmd, stderr)
	file := fs.String("f", "", "read the service or backend from FILE (YAML or JSON; - is standard input)")
	set := map[string]any{}
	changeFlags(fs, strings.HasSuffix(cmd, "-service"), set)
	pos, err := parseInterspersed(fs, a[1:])
	if err != nil {
		return err
	}
	need := map[string]int{"add-service": 1, "edit-service": 1, "add-backend": 2, "edit-backend": 2}[cmd]
	switch {
	case cmd == "add-service" && *file != "" && len(pos) == 0:
	case len(pos) != need:
		return fmt.Errorf("%w: xlb ctl %s: want %d arguments, got %d (xlb ctl -h)", errUsage, cmd, need, len(pos))
	}
	var doc []byte
	if *file != "" {
		if len(set) > 0 {
			return fmt.Errorf("%w: xlb ctl %s: -f or flags, not both", errUsage, cmd)
		}
		if doc, err = readDocFile(*file); err != nil {
			return err
		}
	} else {
		if cmd == "add-service" {
			set["name"] = pos[0]
		}
		if cmd == "add-backend" {
			set["address"] = pos[1]
		}
		if len(set) == 0 {
			return fmt.Errorf("%w: xlb ctl %s: nothing to change", errUsage, cmd)
		}
		if doc, err = json.Marshal(set); err != nil {
			return err
		}
	}
	switch cmd {
	case "add-service":
		err = cl.AddService(ctx, doc)
	case "edit-service":
		err = cl.EditService(ctx, pos[0], doc)
	case "add-backend":
		err = cl.AddBackend(ctx, pos[0], doc)
	case "edit-backend":
		err = cl.EditBackend(ctx, pos[0], pos[1], doc)
	}
	if err == nil {
		fmt.Fprintf(stdout, "ok: %s %s\n", cmd, strings.Join(pos, "/"))
	}
	return err
}

// changeFlags defines the flags of a service's (or a backend's) fields on fs; each given
// flag sets its field in set.
func changeFlags(fs *flag.FlagSet, service bool, set map[string]any) {
	str := func(name, field, usage string) {
		fs.Func(name, usage, func(v string) error { set[field] = v; return nil })
	}
	num := func(name, field, usage string) {
		fs.Func(name, usage, func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			set[field] = n
			return nil
		})
	}
	if service {
		str("vip", "vip", "the virtual IP")
		num("port", "port", "the service port (0: every port)")
		str("protocol", "protocol", "tcp or udp")
		str("method", "method", "dr, tunnel or nat")
		str("scheduler", "scheduler", "maglev, rr, wrr, random, source-hash, least-conn, least-load, flow-hash")
		str("tunnel-source", "tunnel_source", "outer source address or prefix (method tunnel)")
		fs.Func("health", "health check kind (icmp, tcp, http, https, none)", func(v string) error {
			set["health"] = map[string]any{"kind": v}
			return nil
		})
		var backends []any
		fs.Func("backend", "a backend ADDR[:PORT][@WEIGHT] (repeat it; replaces the backend list)", func(v string) error {
			b, err := backendFlag(v)
			backends = append(backends, b)
			set["backends"] = backends
			return err
		})
	} else {
		str("name", "name", "the backend's name (default: its address)")
		str("address", "address", "the backend's address")
		num("port", "port", "the NAT target port")
		num("weight", "weight", "share of new flows, 0-65535 (0 drains)")
		fs.BoolFunc("disabled", "take the backend out (--disabled=false puts it back)", func(v string) error {
			b, err := strconv.ParseBool(v)
			set["disabled"] = b
			return err
		})
	}
}

// backendFlag reads ADDR[:PORT][@WEIGHT] ([ADDR]:PORT for IPv6); the API checks the rest.
func backendFlag(v string) (map[string]any, error) {
	b := map[string]any{"address": v}
	addr, w, hasW := strings.Cut(v, "@")
	if hasW {
		n, err := strconv.ParseUint(w, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("weight %q is not a number", w)
		}
		b["weight"], b["address"] = n, addr
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		b["address"], b["port"] = ap.Addr().String(), ap.Port()
	}
	return b, nil
}

func readDocFile(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// ctlList prints the services and backends in ipvsadm -Ln's layout (--stats, --rate).
func ctlList(ctx context.Context, cl *control.Client, args []string, asJSON bool, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb ctl list", stderr)
	stats := fs.Bool("stats", false, "counters: connections, packets and bytes in and out (ipvsadm --stats)")
	rate := fs.Bool("rate", false, "rates over --interval: connections, packets and bytes per second (ipvsadm --rate)")
	interval := fs.Duration("interval", time.Second, "how long --rate measures")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *stats && *rate || *interval <= 0 {
		return fmt.Errorf("%w: xlb ctl list [--stats | --rate [--interval D]]", errUsage)
	}
	l, err := cl.List(ctx)
	if err != nil {
		return err
	}
	if *rate {
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
			return ctx.Err()
		}
		l2, err := cl.List(ctx)
		if err != nil {
			return err
		}
		l = listRates(l, l2)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	printList(stdout, l, *stats, *rate)
	if l.ConnError != "" {
		fmt.Fprintf(stderr, "xlb: ActiveConn/InActConn not read: %s\n", l.ConnError)
	}
	return nil
}

// listRates turns two listings into one whose Stats are per-second rates between them.
func listRates(a, b control.Listing) control.Listing {
	secs := b.Time.Sub(a.Time).Seconds()
	if secs <= 0 {
		secs = 1
	}
	rate := func(x, y control.ListStats) control.ListStats {
		r := func(p, q uint64) uint64 {
			if q < p {
				return 0
			}
			return uint64(float64(q-p)/secs + 0.5)
		}
		return control.ListStats{Conns: r(x.Conns, y.Conns), InPkts: r(x.InPkts, y.InPkts), OutPkts: r(x.OutPkts, y.OutPkts),
			InBytes: r(x.InBytes, y.InBytes), OutBytes: r(x.OutBytes, y.OutBytes)}
	}
	for i := range b.Services {
		s := &b.Services[i]
		var prev *control.ListService
		for j := range a.Services {
			if a.Services[j].Name == s.Name {
				prev = &a.Services[j]
			}
		}
		if prev == nil {
			s.Stats = control.ListStats{}
			continue
		}
		s.Stats = rate(prev.Stats, s.Stats)
		for k := range s.Backends {
			be := &s.Backends[k]
			var pb control.ListStats
			for _, o := range prev.Backends {
				if o.ID == be.ID {
					pb = o.Stats
				}
			}
			be.Stats = rate(pb, be.Stats)
		}
	}
	return b
}

// largeNum writes n as ipvsadm does: 9 columns, in K, M, G or T beyond 8 digits.
func largeNum(n uint64) string {
	switch {
	case n < 100_000_000:
		return fmt.Sprintf("%9d", n)
	case n < 1_000_000_000:
		return fmt.Sprintf("%8dK", n/1000)
	case n < 100_000_000_000:
		return fmt.Sprintf("%8dM", n/1_000_000)
	case n < 100_000_000_000_000:
		return fmt.Sprintf("%8dG", n/1_000_000_000)
	}
	return fmt.Sprintf("%8dT", n/1_000_000_000_000)
}

// printList writes l in ipvsadm -Ln's layout (with --stats or --rate columns).
func printList(w io.Writer, l control.Listing, stats, rate bool) {
	fmt.Fprintf(w, "xlb virtual server (connection tables: size=%d)\n", l.Capacity)
	switch {
	case stats:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port",
			"Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case rate:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port",
			"CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	default:
		fmt.Fprint(w, "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	five := func(s control.ListStats) string {
		return largeNum(s.Conns) + largeNum(s.InPkts) + largeNum(s.OutPkts) + largeNum(s.InBytes) + largeNum(s.OutBytes)
	}
	for _, s := range l.Services {
		name := fmt.Sprintf("%s  %s", strings.ToUpper(s.Protocol.String()), s.Address)
		if len(name) > 33 && !strings.Contains(s.Address, "[") {
			name = name[:33]
		}
		switch {
		case stats, rate:
			fmt.Fprintf(w, "%-33s%s\n", name, five(s.Stats))
		case s.Flags != "":
			fmt.Fprintf(w, "%s %s %s\n", name, s.Scheduler, s.Flags)
		default:
			fmt.Fprintf(w, "%s %s\n", name, s.Scheduler)
		}
		for _, b := range s.Backends {
			addr := b.Address
			if len(addr) > 28 && !strings.Contains(addr, "[") {
				addr = addr[:28]
			}
			switch {
			case stats:
				fmt.Fprintf(w, "  -> %-28s%s\n", addr, five(b.Stats))
			case rate:
				fmt.Fprintf(w, "  -> %-28s %8d %8d %8d%s%s\n", addr, b.Stats.Conns, b.Stats.InPkts, b.Stats.OutPkts,
					largeNum(b.Stats.InBytes), largeNum(b.Stats.OutBytes))
			default:
				fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", addr, b.Forward, b.Weight, b.ActiveConn, b.InActConn)
			}
		}
	}
}

// ctlConns prints connection-table entries in ipvsadm -Lnc's layout.
func ctlConns(ctx context.Context, cl *control.Client, args []string, asJSON bool, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb ctl conns", stderr)
	service := fs.String("service", "", "only this service's entries")
	client := fs.String("client", "", "only clients in this prefix (or this address)")
	limit := fs.Int("limit", control.DefaultConnLimit, fmt.Sprintf("print at most N entries (at most %d; all are counted)", control.MaxConnLimit))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: xlb ctl conns [--service S] [--client PREFIX] [--limit N]", errUsage)
	}
	l, err := cl.Conns(ctx, control.ConnsRequest{Service: *service, Client: *client, Limit: strconv.Itoa(*limit)})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	printConns(stdout, l)
	if l.Matched > len(l.Conns) {
		fmt.Fprintf(stderr, "xlb: %d entries matched, %d shown (--limit)\n", l.Matched, len(l.Conns))
	}
	return nil
}

// printConns writes l in ipvsadm -Lnc's layout.
func printConns(w io.Writer, l dataplane.ConnListing) {
	fmt.Fprintln(w, "xlb connection entries")
	fmt.Fprintf(w, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	for _, c := range l.Conns {
		proto := strconv.Itoa(int(c.Proto))
		switch c.Proto {
		case 6:
			proto = "TCP"
		case 17:
			proto = "UDP"
		}
		secs := int64(c.Expires / time.Second)
		fmt.Fprintf(w, "%-3s %-6s %-11s %-18s %-18s %s\n", proto, fmt.Sprintf("%02d:%02d", secs/60, secs%60), c.State,
			c.Client, c.VIP, c.Backend)
	}
}
