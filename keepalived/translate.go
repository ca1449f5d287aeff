package keepalived

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Note is a line of the input that was not translated, or translated only approximately.
type Note struct {
	Pos     Pos
	Keyword string
	// Dropped is true when nothing of the line is in the output; false for an approximation
	// (the output does something close, Msg says how it differs).
	Dropped bool
	Msg     string
}

func (n Note) String() string {
	what := "approximated"
	if n.Dropped {
		what = "not translated"
	}
	where := n.Pos.String()
	if n.Pos.Line == 0 {
		where = n.Pos.File // about the whole file
	}
	return fmt.Sprintf("%s: %s: %s: %s", where, n.Keyword, what, n.Msg)
}

// Options adjust a translation. The zero value is usable.
type Options struct {
	// Interface is the data-path interface written when the input names none (no
	// vrrp_instance interface); "" means "eth0".
	Interface string
}

// Result is a translation: the xlb configuration and the notes about what it left out.
type Result struct {
	YAML  []byte
	Notes []Note
}

// translator holds the state of one translation.
type translator struct {
	opts   Options
	out    outConfig
	notes  []Note
	groups map[string]*Node // virtual_server_group by name
	// scriptUser is global_defs script_user: the user exec checks and scripts run as.
	scriptUser string
	// scripts are the vrrp_script blocks by name.
	scripts     map[string]*Node
	scriptNodes []*Node // in file order
	ifaces      []string
	services    map[string]bool   // service names written
	natTargets  map[string]string // NAT backend -> its service
	// mainFile names the input in notes about the whole of it.
	mainFile string
}

// Translate turns parsed keepalived statements into an xlb configuration.
func Translate(nodes []*Node, opts Options) (*Result, error) {
	t := &translator{opts: opts, groups: map[string]*Node{}, scripts: map[string]*Node{}, mainFile: "keepalived.conf",
		services: map[string]bool{}, natTargets: map[string]string{}}
	if len(nodes) > 0 {
		t.mainFile = nodes[0].Pos.File
	}
	// Definitions first: they may come after their use (keepalived reads the whole file).
	for _, n := range nodes {
		switch n.Name {
		case "global_defs":
			t.globalDefs(n)
		case "virtual_server_group":
			if n.Arg(0) == "" {
				t.drop(n, "a virtual_server_group needs a name")
				continue
			}
			t.groups[n.Arg(0)] = n
		case "vrrp_script":
			if n.Arg(0) == "" {
				t.drop(n, "a vrrp_script needs a name")
				continue
			}
			t.scripts[n.Arg(0)] = n
			t.scriptNodes = append(t.scriptNodes, n)
		}
	}
	var instances, syncGroups []*Node
	for _, n := range nodes {
		switch n.Name {
		case "global_defs", "virtual_server_group", "vrrp_script":
		case "virtual_server":
			t.virtualServer(n)
		case "vrrp_instance":
			instances = append(instances, n)
		case "vrrp_sync_group":
			syncGroups = append(syncGroups, n)
		case "static_ipaddress", "static_routes", "static_rules":
			t.drop(n, "xlb manages no static addresses or routes: keep them in the host's network configuration")
		case "linkbeat_interfaces":
			t.drop(n, "xlb watches interfaces through netlink; nothing to configure")
		default:
			t.drop(n, "unknown keyword")
		}
	}
	t.vrrp(instances, syncGroups)
	t.interfaces()
	y, err := t.yaml()
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(t.notes, func(a, b Note) int {
		if c := strings.Compare(a.Pos.File, b.Pos.File); c != 0 {
			return c
		}
		return a.Pos.Line - b.Pos.Line
	})
	return &Result{YAML: y, Notes: t.notes}, nil
}

// ImportFile parses path (with its includes) and translates it.
func ImportFile(path string, opts Options) (*Result, error) {
	nodes, err := ParseFile(path)
	if err != nil {
		return nil, err
	}
	return Translate(nodes, opts)
}

func (t *translator) drop(n *Node, format string, a ...any) {
	t.notes = append(t.notes, Note{Pos: n.Pos, Keyword: n.Name, Dropped: true, Msg: fmt.Sprintf(format, a...)})
}

func (t *translator) approx(n *Node, format string, a ...any) {
	t.notes = append(t.notes, Note{Pos: n.Pos, Keyword: n.Name, Msg: fmt.Sprintf(format, a...)})
}

// globalDefs reads what xlb has a use for and says why the rest is left out.
func (t *translator) globalDefs(g *Node) {
	for _, n := range g.Children {
		switch n.Name {
		case "script_user":
			t.scriptUser = n.Arg(0)
		case "router_id", "enable_script_security", "max_auto_priority", "vrrp_strict":
			// router_id names the host in e-mails and logs; xlb's scripts always run in their
			// own process group with a minimal environment; the rest change nothing in xlb.
		case "vrrp_version":
			if n.Arg(0) != "3" {
				t.approx(n, "xlb speaks VRRP version 3 only: set vrrp_version 3 on the keepalived peers")
			}
		case "notification_email", "notification_email_from", "smtp_server", "smtp_connect_timeout",
			"smtp_helo_name", "smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker":
			t.drop(n, "xlb sends no e-mail: use notify scripts or the xlb_* metrics for alerts")
		case "lvs_sync_daemon", "lvs_sync_daemon_interface":
			t.drop(n, "xlb has no connection sync daemon: its consistent hashing keeps most flows on their backend after a failover")
		default:
			if strings.HasPrefix(n.Name, "vrrp_garp") || strings.HasPrefix(n.Name, "vrrp_gna") {
				t.drop(n, "set garp_repeat and garp_interval in the vrrp section instead")
				continue
			}
			t.drop(n, "no xlb equivalent")
		}
	}
}

// interfaces writes the data-path interfaces: those of the VRRP instances, else the default.
func (t *translator) interfaces() {
	names := t.ifaces
	if len(names) == 0 {
		name := t.opts.Interface
		if name == "" {
			name = "eth0"
		}
		names = []string{name}
		if len(t.out.Services) > 0 {
			t.notes = append(t.notes, Note{Pos: Pos{File: t.mainFile}, Keyword: "interfaces", Msg: fmt.Sprintf(
				"keepalived.conf does not say where the VIPs' traffic arrives: wrote interface %s, change it if that is wrong", name)})
		}
	}
	for _, n := range names {
		t.out.Interfaces = append(t.out.Interfaces, outIface{Name: n})
	}
}

func (t *translator) addIface(name string) {
	if name != "" && !slices.Contains(t.ifaces, name) {
		t.ifaces = append(t.ifaces, name)
	}
}

// yaml renders the output with a header.
func (t *translator) yaml() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# xlb configuration translated from keepalived.conf by `xlb import keepalived`.\n")
	b.WriteString("# What was not translated, or only approximately, was printed on standard error.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&t.out); err != nil {
		return nil, fmt.Errorf("keepalived: write yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("keepalived: write yaml: %w", err)
	}
	return b.Bytes(), nil
}

// seconds parses keepalived's time values: seconds, possibly fractional ("1", "0.5").
func seconds(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e6 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), true
}

// dur formats a duration for the YAML ("1s", "500ms", "1m30s").
func dur(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// uintArg parses argument i of n as an integer in [lo, hi].
func uintArg(n *Node, i int, lo, hi uint64) (uint64, bool) {
	v, err := strconv.ParseUint(n.Arg(i), 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, false
	}
	return v, true
}
