package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-dev/xlb/bench"
	"github.com/xlb-dev/xlb/dataplane/xsk"
)

// portFlags are the flags gen and sink share: the interface and how its queues are served.
type portFlags struct {
	iface, cpus, zeroCopy string
	queues                int
}

func (p *portFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.iface, "iface", "", "the interface (required)")
	fs.IntVar(&p.queues, "queues", 0, "queues to use from queue 0, one AF_XDP socket and pinned thread each (default: all)")
	fs.StringVar(&p.cpus, "cpus", "", "comma-separated CPUs of the queues' threads, queue q on the q-th (default: CPU q)")
	fs.StringVar(&p.zeroCopy, "zero-copy", "auto", "auto (zero copy where the driver has it, else copy mode), on or off")
}

func (p *portFlags) port() (bench.Port, error) {
	if p.iface == "" {
		return bench.Port{}, fmt.Errorf("%w: --iface is required", errUsage)
	}
	pt := bench.Port{Iface: p.iface, Queues: p.queues}
	if p.queues < 0 {
		return pt, fmt.Errorf("%w: --queues %d", errUsage, p.queues)
	}
	switch p.zeroCopy {
	case "auto":
	case "on":
		pt.ZeroCopy = xsk.ZeroCopyOn
	case "off":
		pt.ZeroCopy = xsk.ZeroCopyOff
	default:
		return pt, fmt.Errorf("%w: --zero-copy %q (want auto, on or off)", errUsage, p.zeroCopy)
	}
	if p.cpus != "" {
		for _, c := range strings.Split(p.cpus, ",") {
			n, err := strconv.Atoi(c)
			if err != nil || n < 0 {
				return pt, fmt.Errorf("%w: --cpus %q (want a list of CPU numbers)", errUsage, p.cpus)
			}
			pt.CPUs = append(pt.CPUs, n)
		}
	}
	return pt, nil
}

// signalContext ends on SIGINT, SIGTERM or SIGPIPE (a closed output pipe).
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
}

// cmdBenchSink runs `xlb bench sink`: receive on every queue of an interface, count the
// generator's frames, print the counts each second and serve them to generators.
func cmdBenchSink(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench sink", stderr)
	var pf portFlags
	pf.register(fs)
	listen := fs.String("listen", "127.0.0.1:9450", "TCP address of the control connection generators ask for counts")
	dur := fs.Duration("duration", 0, "stop after this long (default: until interrupted)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xlb bench sink --iface IF [--queues N] [--cpus LIST] [--zero-copy auto|on|off]\n"+
			"                      [--listen ADDR:PORT] [--duration D]\n\n"+
			"Receives on every queue of IF through AF_XDP (ARP still reaches the kernel), counts the frames\n"+
			"`xlb bench gen` sent, prints the counts each second and answers generators' questions on\n"+
			"--listen. Needs root.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *dur < 0 {
		return fmt.Errorf("%w: bench sink takes flags only, and a positive --duration", errUsage)
	}
	p, err := pf.port()
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	benchPrioritize() // the sink's threads must not wait for a time slice while its rings fill
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	s, err := bench.StartSink(p)
	if err != nil {
		l.Close()
		return err
	}
	fmt.Fprintf(stdout, "sink on %s, control on %s\n", s.Info(), l.Addr())
	served := make(chan error, 1)
	go func() { served <- bench.ServeControl(ctx, l, s.Counts) }()
	var last bench.SinkCounts
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for sec := 1; ; sec++ {
		select {
		case <-ctx.Done():
			err := errors.Join(<-served, s.Close())
			c := s.Counts()
			fmt.Fprintf(stdout, "total: %d frames, %d generated (%d bytes), %d lost by the sockets\n", c.Frames, c.Packets, c.Bytes, c.RxDropped)
			return err
		case <-tick.C:
		}
		c := s.Counts()
		fmt.Fprintf(stdout, "%4ds received %10.0f pps %8.3f Gbit/s (frames %d, generated %d, lost by the sockets %d)\n",
			sec, float64(c.Packets-last.Packets), float64(c.Bytes-last.Bytes)*8/1e9, c.Frames, c.Packets, c.RxDropped)
		last = c
	}
}

// parseRate reads a rate in packets/s with an optional k, M or G suffix; "max" (or "")
// is 0, flat out.
func parseRate(s string) (float64, error) {
	if s == "" || s == "max" {
		return 0, nil
	}
	orig, mul := s, 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mul, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mul, s = 1e6, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mul, s = 1e9, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) || v*mul > 1e10 {
		return 0, fmt.Errorf("%w: --rate %q (want a positive number of packets/s, with k, M or G, or max)", errUsage, orig)
	}
	return v * mul, nil
}
