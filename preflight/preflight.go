package preflight

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/xlb-dev/xlb/dataplane"
)

// Status is a check's outcome.
type Status uint8

// The outcomes, from best to worst.
const (
	Pass Status = iota // fit
	Warn               // works, but slower or less safe than it could be
	Fail               // xlb will not run, or will not forward correctly
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// MarshalText writes the status as its name (pass, warn, fail).
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is one check.
type Result struct {
	Check  string `json:"check"` // what was checked: "kernel", "eth0 zero-copy", ...
	Status Status `json:"status"`
	Detail string `json:"detail"`        // what was found
	Fix    string `json:"fix,omitempty"` // what to do about a warn or fail; empty on pass
}

// String is the result on one line: status, check, detail and fix (line
// breaks in an error's text become "; ").
func (r Result) String() string {
	s := fmt.Sprintf("%-4s  %-22s %s", r.Status, r.Check, r.Detail)
	if r.Fix != "" {
		s += "; fix: " + r.Fix
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

// Report is the outcome of Run, one Result per check in a fixed order.
type Report []Result

// Fit reports whether no check failed.
func (r Report) Fit() bool { return r.Worst() < Fail }

// Worst is the worst status of the report (Pass when empty).
func (r Report) Worst() Status {
	w := Pass
	for _, x := range r {
		w = max(w, x.Status)
	}
	return w
}

// Find returns the result of check name (false: none).
func (r Report) Find(name string) (Result, bool) {
	for _, x := range r {
		if x.Check == name {
			return x, true
		}
	}
	return Result{}, false
}

// WriteTo writes one line per check and a last line with the verdict.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	var n [3]int
	for _, x := range r {
		b.WriteString(x.String())
		b.WriteByte('\n')
		n[min(x.Status, Fail)]++
	}
	verdict := "fit"
	if !r.Fit() {
		verdict = "NOT fit"
	}
	fmt.Fprintf(&b, "%s: %d pass, %d warn, %d fail\n", verdict, n[Pass], n[Warn], n[Fail])
	m, err := io.WriteString(w, b.String())
	return int64(m), err
}

// MarshalJSON writes {"fit": ..., "checks": [...]}.
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Fit    bool     `json:"fit"`
		Checks []Result `json:"checks"`
	}{r.Fit(), []Result(r)})
}

// DRBackend is a backend of a direct-routing service: it must hold the
// service's VIPs (on its loopback) and must not answer ARP for them.
type DRBackend struct {
	Addr netip.Addr
	VIPs []netip.Addr
}

// Options say what to check. The zero value checks the host only.
type Options struct {
	// Dataplane is the data path's configuration (interfaces, cores, frame
	// size and count; zero sizes mean the data path's defaults).
	Dataplane dataplane.Config
	// DRBackends are the backends of the direct-routing services.
	DRBackends []DRBackend
	// Netns is a glob of network namespace files to look for DR backends
	// in, besides the caller's own namespace (default /var/run/netns/*).
	Netns string
	// Proc and Sys are where procfs and sysfs are mounted (default /proc
	// and /sys; tests point them at fake trees).
	Proc, Sys string
	// NoProbe skips the attach and bind attempts (they need the privileges
	// of xlb run); the checks that need them then say so.
	NoProbe bool
}

func (o *Options) defaults() {
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.Sys == "" {
		o.Sys = "/sys"
	}
	if o.Netns == "" {
		o.Netns = "/var/run/netns/*"
	}
	if o.Dataplane.FrameSize == 0 {
		o.Dataplane.FrameSize = 4096
	}
	if o.Dataplane.FrameCount == 0 {
		o.Dataplane.FrameCount = 4096
	}
}

// Run runs every check in the calling thread's network namespace (the
// interfaces are looked up there) and returns the report. It changes
// nothing that outlives it: an XDP program it attaches and a socket it
// binds are gone when it returns.
func Run(o Options) Report {
	o.defaults()
	h := newHost(&o)
	var ifaces Report
	var workers int
	for _, ic := range o.Dataplane.Interfaces {
		res, w := h.iface(ic)
		ifaces = append(ifaces, res...)
		workers = max(workers, w)
	}
	r := Report{h.kernel()}
	r = append(r, h.features()...)
	r = append(r, ifaces...)
	r = append(r, h.memlock(workers, len(o.Dataplane.Interfaces)), h.capabilities(workers, len(o.Dataplane.Interfaces)))
	r = append(r, h.governor(), h.isolation(), h.vector())
	r = append(r, drChecks(&o)...)
	return r
}
