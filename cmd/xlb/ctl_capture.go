package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-dev/xlb/control"
)

const captureUsage = `usage: xlb ctl capture [--service S] [--backend B] [--client PREFIX] [--count N]
                       [--duration D] [--snaplen N] [--ring N] -w FILE|-

Captures the frames the workers forward, as received, as sent and as dropped (with the
reason as the packet's comment), and writes them as pcapng (read it with tcpdump -r or
Wireshark). It stops after --count packets, after --duration, or on Ctrl-C, and reports
how many records did not fit in the workers' rings.
`

// captureFlushEvery bounds how long captured frames wait in the client's buffers.
const captureFlushEvery = 200 * time.Millisecond

// ctlCapture is `xlb ctl capture`.
func ctlCapture(cl *control.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xlb ctl capture", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, captureUsage); fs.PrintDefaults() }
	var req control.CaptureRequest
	fs.StringVar(&req.Service, "service", "", "only this service's frames")
	fs.StringVar(&req.Backend, "backend", "", "only frames forwarded to this backend (name, ID or address)")
	fs.StringVar(&req.Client, "client", "", "only frames from (or NAT replies to) this address or prefix")
	fs.IntVar(&req.Count, "count", 0, "stop after this many packets (0: no limit)")
	fs.DurationVar(&req.Duration, "duration", 0, "stop after this long (0: no limit)")
	fs.IntVar(&req.Snaplen, "snaplen", 0, "bytes kept per frame (0: whole frames)")
	fs.IntVar(&req.Ring, "ring", 0, "records per worker ring (0: as many as fit in 4 MiB)")
	file := fs.String("w", "", "pcapng file to write, - for standard output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("%w: xlb ctl capture needs -w FILE or -w -", errUsage)
	}
	out, report := stdout, stdout
	if *file == "-" {
		report = stderr
	} else {
		f, err := os.Create(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriterSize(out, 256<<10)
	pw, err := control.NewPcapngWriter(bw)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	req.Started = func(ifaces map[int]string) {
		names := make([]string, 0, len(ifaces))
		for _, n := range ifaces {
			names = append(names, n)
		}
		slices.Sort(names)
		fmt.Fprintf(stderr, "capturing from the xlb workers on %s\n", strings.Join(names, ", "))
	}
	var written uint64
	flushed := time.Now()
	sum, err := cl.Capture(ctx, req, func(p *control.CapturedPacket) error {
		written++
		if err := pw.Write(p); err != nil {
			return err
		}
		if time.Since(flushed) < captureFlushEvery { // so that `-w - | tcpdump -r -` shows frames as they come
			return nil
		}
		flushed = time.Now()
		if err := pw.Flush(); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	if sum.End == "" { // interrupted: the server's last counts may lag behind what arrived
		sum.End = "interrupt"
	}
	sum.Records = written
	if err := pw.WriteLost(start, time.Now(), sum); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(report, "%d packets captured, %d lost (did not fit in the workers' rings), ended by %s\n",
		sum.Records, sum.Lost, sum.End)
	return nil
}
