package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// flagCollector is a stderr that remembers the flag sets made with it: the
// man page and the completions call each command with -h and this as its
// stderr, so they describe the flags the commands really define.
type flagCollector struct {
	sets []*flag.FlagSet
}

func (*flagCollector) Write(p []byte) (int, error) { return len(p), nil }

// newFlagSet returns the flag set of a command, writing to stderr (and
// handing it to a flagCollector).
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if c, ok := stderr.(*flagCollector); ok {
		c.sets = append(c.sets, fs)
	}
	return fs
}

// docCommand is a command the man page and the completions describe.
type docCommand struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error // nil: no flags
}

func docCommands() []docCommand {
	return []docCommand{
		{"run", "--config FILE", "run the load balancer: attach XDP to the interfaces, forward, check backends, serve the API; SIGHUP reloads the file",
			func(a []string, _, e io.Writer) error { return cmdRun(a, e) }},
		{"ctl", "COMMAND ...", "talk to a running xlb through its API (xlb ctl -h lists the commands)", cmdCtl},
		{"preflight", "", "check whether this host and the configured interfaces are fit to run xlb; exit status 1 when not", cmdPreflight},
		{"version", "", "print the version", nil},
		{"demo", "", "the built-in example on a namespace topology (root)", cmdDemo},
		{"bench", "", "forwarding rates against in-kernel baselines on a namespace topology (root); bench gen|sink|lab drive real ports", cmdBench},
		{"import", "keepalived [-o FILE] KEEPALIVED.CONF", "translate a keepalived.conf into xlb's configuration (notes on what was left out on standard error)",
			func(a []string, o, e io.Writer) error { return cmdImport(append([]string{"keepalived"}, a...), o, e) }},
		{"export", "ipvsadm --config FILE", "print the configuration's services as ipvsadm-restore rules",
			func(a []string, o, e io.Writer) error { return cmdExport(append([]string{"ipvsadm"}, a...), o, e) }},
		{"man", "", "print this manual page (roff)", nil},
		{"completion", "bash|zsh|fish", "print a shell completion script", nil},
	}
}

// docFlag is one flag of a command.
type docFlag struct {
	name, arg, usage, def string
}

// flagsOf runs the command with -h and returns the flags it defined.
func flagsOf(c docCommand) []docFlag {
	if c.run == nil {
		return nil
	}
	col := &flagCollector{}
	_ = c.run([]string{"-h"}, io.Discard, col)
	var out []docFlag
	for _, fs := range col.sets[:min(len(col.sets), 1)] {
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			def := f.DefValue
			if def == "false" || def == "0" || def == "0s" || f.Name == "token" { // never a secret from the environment
				def = ""
			}
			out = append(out, docFlag{name: f.Name, arg: arg, usage: usage, def: def})
		})
	}
	return out
}

func cmdMan(stdout io.Writer) error {
	var b strings.Builder
	esc := strings.NewReplacer(`\`, `\e`, "-", `\-`, "\n.", "\n\\&.")
	fmt.Fprintf(&b, ".TH XLB 8 \"\" \"xlb %s\" \"System Administration\"\n", esc.Replace(version))
	b.WriteString(".SH NAME\nxlb \\- a Layer\\-4 load balancer on AF_XDP\n.SH SYNOPSIS\n")
	for _, c := range docCommands() {
		fmt.Fprintf(&b, ".B xlb %s\n", c.name)
		if c.args != "" {
			fmt.Fprintf(&b, "%s\n", esc.Replace(c.args))
		}
		b.WriteString(".br\n")
	}
	b.WriteString(".SH DESCRIPTION\nxlb forwards packets in user space through AF_XDP sockets: " +
		"direct routing, IPIP tunnels or NAT to healthy backends chosen by Maglev or the LVS schedulers, " +
		"with health checks, an HTTP API, Prometheus metrics, VRRP and BGP.\n.SH COMMANDS\n")
	for _, c := range docCommands() {
		fmt.Fprintf(&b, ".SS xlb %s\n%s\n", c.name, esc.Replace(c.summary))
		for _, f := range flagsOf(c) {
			fmt.Fprintf(&b, ".TP\n.BR \\-\\-%s", esc.Replace(f.name))
			if f.arg != "" {
				fmt.Fprintf(&b, " \" %s\"", esc.Replace(f.arg))
			}
			fmt.Fprintf(&b, "\n%s", esc.Replace(f.usage))
			if f.def != "" {
				fmt.Fprintf(&b, " (default %s)", esc.Replace(f.def))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString(".SH FILES\n.TP\n/etc/xlb/xlb.yaml\nthe configuration of the packaged service\n" +
		".SH SIGNALS\n.TP\nSIGHUP\nre\\-read the configuration (a bad file is refused, the running one stays)\n" +
		".TP\nSIGTERM\nwithdraw, detach the XDP programs and exit\n" +
		".SH PRIVILEGES\nxlb run needs CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON and CAP_IPC_LOCK; " +
		"the packaged unit runs it as the user xlb with exactly these.\n" +
		".SH SEE ALSO\n.BR systemctl (1),\n.BR ethtool (8)\n")
	_, err := io.WriteString(stdout, b.String())
	return err
}

func cmdCompletion(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: xlb completion bash|zsh|fish", errUsage)
	}
	cmds := docCommands()
	var b strings.Builder
	switch args[0] {
	case "bash":
		completionBash(&b, cmds)
	case "zsh":
		b.WriteString("#compdef xlb\nautoload -U +X bashcompinit && bashcompinit\n")
		completionBash(&b, cmds)
	case "fish":
		completionFish(&b, cmds)
	default:
		return fmt.Errorf("%w: completion for %q (want bash, zsh or fish)", errUsage, args[0])
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}

func completionBash(b *strings.Builder, cmds []docCommand) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	b.WriteString("# bash completion for xlb (generated by xlb completion bash)\n_xlb() {\n" +
		"\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n" +
		"\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(b, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n", strings.Join(names, " "))
	b.WriteString("\tcase \"$prev\" in\n\t--config|--out) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n\tesac\n" +
		"\tcase \"${COMP_WORDS[1]}\" in\n")
	for _, c := range cmds {
		var words []string
		for _, f := range flagsOf(c) {
			words = append(words, "--"+f.name)
		}
		if c.name == "completion" {
			words = []string{"bash", "zsh", "fish"}
		}
		if len(words) > 0 {
			fmt.Fprintf(b, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c.name, strings.Join(words, " "))
		}
	}
	b.WriteString("\tesac\n}\ncomplete -F _xlb xlb\n")
}

func completionFish(b *strings.Builder, cmds []docCommand) {
	b.WriteString("# fish completion for xlb (generated by xlb completion fish)\ncomplete -c xlb -f\n")
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
	for _, c := range cmds {
		fmt.Fprintf(b, "complete -c xlb -n __fish_use_subcommand -a %s -d %s\n", c.name, q(c.summary))
		for _, f := range flagsOf(c) {
			fmt.Fprintf(b, "complete -c xlb -n '__fish_seen_subcommand_from %s' -l %s", c.name, f.name)
			if f.arg != "" {
				b.WriteString(" -r")
				if slices.Contains([]string{"config", "out"}, f.name) {
					b.WriteString(" -F")
				}
			}
			fmt.Fprintf(b, " -d %s\n", q(f.usage))
		}
	}
	b.WriteString("complete -c xlb -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
}
