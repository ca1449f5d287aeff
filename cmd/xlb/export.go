package main

import (
	"fmt"
	"io"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/ipvs"
)

// cmdExport runs `xlb export ipvsadm --config FILE`: the configuration's services as
// ipvsadm-restore rules on standard output, the notes on where IPVS differs on standard
// error (or, with --comments, as # lines among the rules).
func cmdExport(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "ipvsadm" {
		return fmt.Errorf("%w: xlb export ipvsadm --config FILE (the only format is ipvsadm)", errUsage)
	}
	fs := newFlagSet("export ipvsadm", stderr)
	cfgPath := fs.String("config", "", "the xlb configuration file (required)")
	comments := fs.Bool("comments", false, "write the notes as # lines after the rules instead of to standard error")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xlb export ipvsadm --config FILE [--comments]\n\n"+
			"Writes the services of FILE as ipvsadm-restore rules (load them with `ipvsadm-restore < rules`),\n"+
			"and notes where IPVS differs from xlb.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: xlb export ipvsadm needs --config FILE (and no other arguments)", errUsage)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("configuration refused:\n%w", err)
	}
	e, err := ipvs.FromConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(stdout, e.Text()); err != nil {
		return err
	}
	notes := stderr
	if *comments {
		notes = stdout
	}
	for _, n := range e.Notes {
		if _, err := fmt.Fprintln(notes, "# "+n); err != nil {
			return err
		}
	}
	return nil
}
