// Command xlb is the xlb load balancer: one binary for the daemon (run, a
// thin caller of package xlb), its control client (ctl), the built-in demo
// in network namespaces (demo), the forwarding benchmarks (bench) and its
// version. The configuration format is docs/config.md; the packages are
// listed in README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks an error the user fixes by reading the usage.
var errUsage = errors.New("usage")

const usage = `xlb: a Layer-4 load balancer on AF_XDP

usage:
  xlb run --config FILE [--check] [--profile cpu|mem] [--log-level LEVEL] [--replace-xdp]
  xlb ctl [--socket PATH | --api URL [--token-file FILE] [--ca FILE]] [--json] COMMAND ...
  xlb version
  xlb preflight [--config FILE] [--netns GLOB] [--no-probe] [--json]
  xlb man | xlb completion bash|zsh|fish
  xlb import keepalived [-o FILE] KEEPALIVED.CONF
  xlb demo [--requests N] [--keep]
  xlb bench [--quick] [--markdown] [--profile cpu|mem] [--scenario LIST] ...
  xlb bench gen --iface IF --dst-mac MAC --dst VIP [--rate R] [--sink ADDR] [--rfc2544] ...
  xlb bench sink --iface IF [--listen ADDR] ...
  xlb bench lab [--size LIST] [--trial D] [--markdown] [--plot DIR]
  xlb export ipvsadm --config FILE [--comments]

Run 'xlb run -h' or 'xlb ctl -h' for details.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "ctl":
		err = cmdCtl(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(args[1:], stdout, stderr)
	case "export":
		err = cmdExport(args[1:], stdout, stderr)
	case "preflight":
		err = cmdPreflight(args[1:], stdout, stderr)
	case "man":
		err = cmdMan(stdout)
	case "completion":
		err = cmdCompletion(args[1:], stdout)
	case "import":
		err = cmdImport(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "xlb: %v\n\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "xlb: %v\n", err)
		return 1
	}
}
