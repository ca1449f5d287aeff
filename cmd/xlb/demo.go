package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/xlb-dev/xlb/internal/demo"
)

// cmdDemo runs `xlb demo`: the built-in example (internal/demo).
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	requests := fs.Int("requests", 60, "requests in each measured round")
	keep := fs.Bool("keep", false, "keep the daemon's config and log and print where")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xlb demo [--requests N] [--keep]\n\n"+
			"Builds a namespace topology (client, LB, three backends), runs xlb in it, sends real\n"+
			"HTTP traffic, kills a backend and brings it back, shows the result and removes\n"+
			"everything. Needs root. Exits non-zero when the load balancer misbehaves.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: demo takes no arguments", errUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, demo.Options{Out: stdout, Requests: *requests, Keep: *keep})
}
