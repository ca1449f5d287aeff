package main

import (
	"fmt"
	"io"
	"os"

	"github.com/xlb-dev/xlb/keepalived"
)

// cmdImport translates another balancer's configuration into xlb's: `xlb import keepalived
// FILE` writes the YAML to standard output (or -o FILE) and every line it could not
// translate, with file:line and why, to standard error. A syntax error writes no YAML.
func cmdImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", stderr)
	out := fs.String("o", "", "write the YAML to this file instead of standard output")
	iface := fs.String("interface", "", "data-path interface to write when keepalived.conf names none (default eth0)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xlb import keepalived [-o FILE] [--interface NAME] KEEPALIVED.CONF")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "keepalived" {
		fs.Usage()
		return fmt.Errorf("%w: import: only keepalived is supported", errUsage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: import keepalived: one configuration file", errUsage)
	}
	res, err := keepalived.ImportFile(fs.Arg(0), keepalived.Options{Interface: *iface})
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	if *out == "" {
		_, err = stdout.Write(res.YAML)
		return err
	}
	if err := os.WriteFile(*out, res.YAML, 0o644); err != nil {
		return fmt.Errorf("import keepalived: %w", err)
	}
	return nil
}
