package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
)

const ctlUsage = `usage: xlb ctl [--socket PATH | --api URL [--token TOKEN | --token-file FILE] [--ca FILE]] [--json] COMMAND

commands:
  status                          controller state (config, snapshot, reloads)
  services                        services and how many backends take new flows
  backends SERVICE                backends: health, weight, next hop, last probes
  weight SERVICE BACKEND N        set a backend's weight (0 drains it)
  drain SERVICE BACKEND           weight 0: no new flows, existing flows stay
  enable SERVICE BACKEND          put a disabled backend back
  disable SERVICE BACKEND         take a backend out (its flows move)
  reload                          re-read the configuration file
  bgp                             BGP sessions and announced VIPs
  drain-host                      withdraw every VIP from the routers (keeps forwarding)
  undrain-host                    announce the VIPs again
  vrrp                            VRRP state: master or backup, forwarding, peers, counters
  demote                          a VRRP master resigns: the backup takes over, this host stays backup
  sync                            connection sync: records sent and received, drops by reason, lag
  capture [FILTERS] -w FILE|-     packet capture from the workers as pcapng (xlb ctl capture -h)
  top [--sort KEY]                packets/s, bits/s, new flows/s, active flows per service and backend
  drops                           packets the XDP program dropped, per service and reason
  acl SERVICE                     the service's ACL rules and their hits
  acl SERVICE allow=P,.. deny=P,..  replace the service's ACL until a reload (allow= / deny= empty it)
` + ctlRuntimeUsage + `
BACKEND is a backend's name, ID or address. By default ctl talks to the
daemon's unix socket (who may change things is decided by its permissions);
with --api it uses the TCP listener, where changes need the token (which may
also come from the XLB_TOKEN environment variable). An https URL speaks TLS:
--ca verifies the server, --cert and --key authenticate ctl (mutual TLS).
`

func cmdCtl(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb ctl", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage); fs.PrintDefaults() }
	api := fs.String("api", "", "API base URL (e.g. http://"+config.DefaultAPIListen+"); default: the unix socket")
	socket := fs.String("socket", control.DefaultSocket, "the daemon's API socket")
	token := fs.String("token", os.Getenv("XLB_TOKEN"), "bearer token")
	tokenFile := fs.String("token-file", "", "file holding the bearer token")
	ca := fs.String("ca", "", "PEM file of the CA that signed the API's certificate (https)")
	cert := fs.String("cert", "", "client certificate for mutual TLS (PEM)")
	key := fs.String("key", "", "client key for mutual TLS (PEM)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: xlb ctl needs a command", errUsage)
	}
	cl, err := ctlClient(*api, *socket, *token, *tokenFile, *ca, *cert, *key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	nargs := func(n int, form string) error {
		if len(a)-1 != n {
			return fmt.Errorf("%w: xlb ctl %s", errUsage, form)
		}
		return nil
	}
	out := func(v any, table func(*tabwriter.Writer)) error {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	done := func(what string) error {
		if *asJSON {
			return out(map[string]string{"result": "ok", "command": what}, nil)
		}
		fmt.Fprintf(stdout, "ok: %s\n", what)
		return nil
	}
	if ok, err := ctlRuntime(ctx, cl, a, *asJSON, stdout, stderr); ok {
		return err
	}
	switch a[0] {
	case "capture":
		return ctlCapture(cl, a[1:], stdout, stderr)
	case "top":
		return ctlTop(cl, a[1:], stdout, stderr)
	case "status":
		if err := nargs(0, "status"); err != nil {
			return err
		}
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		return out(st, func(tw *tabwriter.Writer) { printStatus(tw, st) })
	case "services":
		if err := nargs(0, "services"); err != nil {
			return err
		}
		svcs, err := cl.Services(ctx)
		if err != nil {
			return err
		}
		return out(svcs, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "SERVICE\tVIP\tPORT\tPROTO\tMETHOD\tSCHEDULER\tACTIVE\tBACKENDS\tFALLBACK")
			for _, s := range svcs {
				vips, ports := frontendsOf(&s)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%v\n", s.Name, vips, ports, s.Protocol, s.Method,
					s.Scheduler, s.Up, s.Backends, s.Fallback)
			}
		})
	case "backends":
		if err := nargs(1, "backends SERVICE"); err != nil {
			return err
		}
		bs, err := cl.Backends(ctx, a[1])
		if err != nil {
			return err
		}
		return out(bs, func(tw *tabwriter.Writer) { printBackends(tw, bs) })
	case "weight":
		if err := nargs(3, "weight SERVICE BACKEND N"); err != nil {
			return err
		}
		w, err := strconv.ParseUint(a[3], 10, 32)
		if err != nil || w > config.MaxWeight {
			return fmt.Errorf("%w: weight %q is not in 0..%d", errUsage, a[3], config.MaxWeight)
		}
		if err := cl.SetWeight(ctx, a[1], a[2], uint32(w)); err != nil {
			return err
		}
		return done(fmt.Sprintf("%s/%s weight %d", a[1], a[2], w))
	case "drain", "enable", "disable":
		if err := nargs(2, a[0]+" SERVICE BACKEND"); err != nil {
			return err
		}
		op := map[string]func(context.Context, string, string) error{
			"drain": cl.Drain, "enable": cl.Enable, "disable": cl.Disable}[a[0]]
		if err := op(ctx, a[1], a[2]); err != nil {
			return err
		}
		return done(fmt.Sprintf("%s %s/%s", a[0], a[1], a[2]))
	case "reload":
		if err := nargs(0, "reload"); err != nil {
			return err
		}
		st, err := cl.Reload(ctx)
		if err != nil {
			return err
		}
		return out(st, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "reloaded %s (generation %d, %d reloads)\n", st.ConfigFile, st.Generation, st.Reloads)
		})
	case "bgp", "drain-host", "undrain-host":
		if err := nargs(0, a[0]); err != nil {
			return err
		}
		op := map[string]func(context.Context) (control.BGPStatus, error){
			"bgp": cl.BGP, "drain-host": cl.DrainHost, "undrain-host": cl.UndrainHost}[a[0]]
		st, err := op(ctx)
		if err != nil {
			return err
		}
		return out(st, func(tw *tabwriter.Writer) { printBGP(tw, st) })
	case "vrrp", "demote":
		if err := nargs(0, a[0]); err != nil {
			return err
		}
		op := map[string]func(context.Context) (control.VRRPStatus, error){"vrrp": cl.VRRP, "demote": cl.Demote}[a[0]]
		st, err := op(ctx)
		if err != nil {
			return err
		}
		return out(st, func(tw *tabwriter.Writer) { printVRRP(tw, st) })
	case "sync":
		if err := nargs(0, a[0]); err != nil {
			return err
		}
		st, err := cl.Sync(ctx)
		if err != nil {
			return err
		}
		return out(st, func(tw *tabwriter.Writer) { printSync(tw, st) })
	case "drops", "acl":
		return ctlDefence(ctx, cl, a, nargs, out)
	default:
		fs.Usage()
		return fmt.Errorf("%w: unknown ctl command %q", errUsage, a[0])
	}
}

func printStatus(tw *tabwriter.Writer, st control.ControllerStatus) {
	fmt.Fprintf(tw, "config\t%s\n", st.ConfigFile)
	fmt.Fprintf(tw, "snapshot generation\t%d\n", st.Generation)
	fmt.Fprintf(tw, "published\t%s (%d publishes)\n", st.Published.Format(time.RFC3339), st.Publishes)
	if st.PublishError != "" {
		fmt.Fprintf(tw, "publish error\t%s\n", st.PublishError)
	}
	fmt.Fprintf(tw, "reloads\t%d applied, %d refused\n", st.Reloads, st.ReloadErrors)
	if st.LastReloadErr != "" {
		fmt.Fprintf(tw, "last refused reload\t%s\n", strings.ReplaceAll(st.LastReloadErr, "\n", "; "))
	}
	if len(st.RuntimeChanges) > 0 {
		fmt.Fprintf(tw, "runtime changes not in the file\t%s (a reload drops them; xlb ctl save keeps them)\n",
			strings.Join(st.RuntimeChanges, "; "))
	}
}

func printBackends(tw *tabwriter.Writer, bs []control.BackendStatus) {
	fmt.Fprintln(tw, "ID\tBACKEND\tADDRESS\tHEALTH\tACTIVE\tWEIGHT\tDISABLED\tSINCE\tLAST PROBES\tNEXT HOP")
	for _, b := range bs {
		name := b.Name
		if b.Fallback {
			name += " (fallback)"
		}
		w := strconv.FormatUint(uint64(b.Weight), 10)
		if b.Weight != b.ConfigWeight {
			w += fmt.Sprintf(" (config %d)", b.ConfigWeight)
		}
		var probes strings.Builder
		for _, r := range b.Results[max(0, len(b.Results)-5):] {
			if r.OK {
				fmt.Fprintf(&probes, "ok %.1fms ", r.LatencyMS)
			} else {
				probes.WriteString("FAIL ")
			}
		}
		since := ""
		if !b.Since.IsZero() {
			since = time.Since(b.Since).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\t%s\t%v\t%s\t%s\t%s\n", b.ID, name, b.Address, b.Health, b.Active, w,
			b.Disabled, since, strings.TrimSpace(probes.String()), b.NextHop)
	}
}

// frontendsOf returns the VIP and PORT columns of a service: for a service group every VIP
// and every port or range, comma-separated.
func frontendsOf(s *control.ServiceStatus) (vips, ports string) {
	vips, ports = s.VIP, strconv.Itoa(int(s.Port))
	if len(s.VIPs) > 0 {
		vips = strings.Join(s.VIPs, ",")
	}
	if len(s.Ports) > 0 {
		ports = strings.Join(s.Ports, ",")
	}
	return vips, ports
}
