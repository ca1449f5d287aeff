// Package demo is `xlb demo`: it builds a namespace topology (a client, the
// LB and three backends on one L2 segment), runs the real `xlb run` daemon in
// the LB's namespace, sends real HTTP traffic to the VIP, kills one backend
// and brings it back, and shows what the load balancer did at each step:
// the spread over backends, how long the health check took to take the dead
// backend out and to put it back, and how many requests failed on the way.
// It removes everything it made when it returns, and it returns an error when
// the load balancer did not do what it should, so a demo that exits 0 is also
// a passing end-to-end check.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
)

// Options configures a demo run.
type Options struct {
	// Exe is the xlb binary to run as the daemon in the LB's namespace;
	// empty means this process's own executable.
	Exe string
	// Out receives the progress and the result; nil means os.Stdout.
	Out io.Writer
	// Requests is the number of requests in each measured round; 0 means 60.
	Requests int
	// Keep leaves the daemon's log file in place and prints its path.
	Keep bool
}

// Health-check timing of the demo service: a dead backend is out within
// interval*fall + timeout and back after rise successes.
const (
	interval = 200 * time.Millisecond
	timeout  = 100 * time.Millisecond
	rise     = 2
	fall     = 3
	victim   = "b1"
	apiAddr  = "127.0.0.1:9440"
)

// ErrDemo reports that the load balancer did not behave as the demo expects.
var ErrDemo = errors.New("demo check failed")

// Run runs the demo. It needs root (network namespaces, XDP).
func Run(ctx context.Context, o Options) (err error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Requests <= 0 {
		o.Requests = 60
	}
	if o.Exe == "" {
		if o.Exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find the xlb binary: %w", err)
		}
	}
	if err := lab.Available(); err != nil {
		return fmt.Errorf("xlb demo needs root and network namespaces: %w", err)
	}
	d := &run{o: o, start: time.Now()}
	defer func() {
		if cerr := d.close(); err == nil {
			err = cerr
		}
	}()
	return d.run(ctx)
}

// run holds one demo's state.
type run struct {
	o      Options
	start  time.Time
	tn     *lab.Net
	dir    string
	cmd    *exec.Cmd
	exited chan error
	api    *control.Client
	web    *http.Client
	url    string
}

func (d *run) say(format string, a ...any) {
	fmt.Fprintf(d.o.Out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, a...))
}

func (d *run) run(ctx context.Context) error {
	d.say("building the topology: a client, the LB and three backends on one L2 segment")
	tn, err := lab.Build(lab.Config{Backends: 3, DisableIPv6: true})
	if err != nil {
		return fmt.Errorf("build topology: %w", err)
	}
	d.tn = tn
	for _, line := range strings.Split(strings.TrimRight(tn.Describe(), "\n"), "\n") {
		fmt.Fprintf(d.o.Out, "          %s\n", line)
	}

	if err := d.startLB(); err != nil {
		return err
	}
	d.say("waiting for the health checks to bring all 3 backends up (rise %d, every %v)", rise, interval)
	if _, err := d.waitBackends(ctx, 10*time.Second, func(m map[string]string) bool {
		return m["b0"] == "up" && m["b1"] == "up" && m["b2"] == "up"
	}); err != nil {
		return err
	}
	d.showBackends(ctx)

	d.web = tn.Client.HTTPClient(lab.ClientOptions{Timeout: time.Second})
	d.url = "http://" + net.JoinHostPort(tn.VIP.String(), "80") + "/"
	d.say("client: %d HTTP requests to %s (a new TCP connection each, from one client address)", d.o.Requests, d.url)
	t := d.round(ctx)
	if t.Failed != 0 || len(t.ByBackend) != 3 {
		return fmt.Errorf("%w: with all backends up, want every request answered by all three backends, got %v", ErrDemo, t)
	}

	if err := d.killAndRevive(ctx); err != nil {
		return err
	}
	d.showCounters(ctx)
	return d.stopLB()
}

// startLB writes the config and starts `xlb run` in the LB's namespace.
func (d *run) startLB() error {
	dir, err := os.MkdirTemp("", "xlb-demo-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	d.dir = dir
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - name: eth0\nservices:\n  - name: web\n    vip: %s\n    port: 80\n", d.tn.VIP)
	b.WriteString("    protocol: tcp\n    method: dr\n    scheduler: maglev\n    backends:\n")
	for _, be := range d.tn.Backends {
		fmt.Fprintf(&b, "      - { name: %s, address: %s, weight: 100 }\n", be.Name, be.Addr())
	}
	fmt.Fprintf(&b, "    health: { kind: http, port: 80, path: /healthz, expect_status: 200, interval: %v, timeout: %v, rise: %d, fall: %d }\n",
		interval, timeout, rise, fall)
	fmt.Fprintf(&b, "api:\n  listen: %s\n  socket: %s\n", apiAddr, filepath.Join(dir, "xlb.sock"))
	path := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	d.say("config %s:", path)
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(d.o.Out, "          %s\n", line)
	}
	logf, err := os.Create(filepath.Join(dir, "xlb.log"))
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	d.cmd = exec.Command(d.o.Exe, "run", "--config", path)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.tn.LB.Start(d.cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start xlb run in %s: %w", d.tn.LB.Name(), err)
	}
	logf.Close() // the child holds its own descriptor
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	d.say("started `xlb run` (pid %d) in namespace %s; its log: %s", d.cmd.Process.Pid, d.tn.LB.Name(), logf.Name())
	d.api = &control.Client{Base: "http://" + apiAddr, HTTP: &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DialContext: d.tn.LB.Dial, DisableKeepAlives: true},
	}}
	return nil
}

// states returns each backend's health as the API reports it.
func (d *run) states(ctx context.Context) (map[string]string, error) {
	bs, err := d.api.Backends(ctx, "web")
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(bs))
	for _, b := range bs {
		state := b.Health
		if !b.Active && state == "up" {
			state = "inactive"
		}
		m[b.Name] = state
	}
	return m, nil
}

// waitBackends polls the API until ok holds and returns how long it took.
func (d *run) waitBackends(ctx context.Context, max time.Duration, ok func(map[string]string) bool) (time.Duration, error) {
	t0 := time.Now()
	var last map[string]string
	var lastErr error
	for time.Since(t0) < max {
		select {
		case err := <-d.exited:
			d.exited <- err
			return 0, fmt.Errorf("xlb run exited (%v); log:\n%s", err, d.logTail())
		default:
		}
		m, err := d.states(ctx)
		if err == nil && ok(m) {
			return time.Since(t0), nil
		}
		last, lastErr = m, err
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("%w: backends did not reach the expected state in %v (last: %v, %v); log:\n%s", ErrDemo, max, last, lastErr, d.logTail())
}

// round sends one round of requests and prints the spread.
func (d *run) round(ctx context.Context) lab.Tally {
	t := lab.Spread(ctx, d.web, d.url, d.o.Requests, 30*time.Second)
	d.say("  %s", spread(t))
	return t
}

func spread(t lab.Tally) string {
	names := make([]string, 0, len(t.ByBackend))
	for n := range t.ByBackend {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%d answered, %d failed:", t.OK, t.Failed)
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, t.ByBackend[n])
	}
	return b.String()
}

// killAndRevive kills the victim under load, waits for the health check to
// take it out, checks traffic avoids it, revives it and waits for it back.
func (d *run) killAndRevive(ctx context.Context) error {
	be := d.tn.Backend(victim)
	bound := interval*fall + timeout
	d.say("killing backend %s (its HTTP server stops; connections to it are refused)", victim)
	if err := be.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", victim, err)
	}
	killed := time.Now()
	// Keep the client sending while the health check decides.
	loadCtx, stop := context.WithCancel(ctx)
	during := make(chan lab.Tally, 1)
	go func() { during <- lab.Spread(loadCtx, d.web, d.url, 1<<20, 30*time.Second) }()
	_, err := d.waitBackends(ctx, 10*time.Second, func(m map[string]string) bool { return m[victim] == "down" })
	detect := time.Since(killed)
	stop()
	t := <-during
	if err != nil {
		return err
	}
	d.say("%s is out after %v (bound interval*fall+timeout = %v)", victim, detect.Round(time.Millisecond), bound)
	d.say("  while it was being detected: %s", spread(t))
	if t.Failed > 0 {
		d.say("  (the failures are new connections Maglev had hashed to %s before the check took it out)", victim)
	}
	d.showBackends(ctx)

	d.say("client: %d more requests with %s out", d.o.Requests, victim)
	t = d.round(ctx)
	if t.Failed != 0 || t.ByBackend[victim] != 0 || len(t.ByBackend) != 2 {
		return fmt.Errorf("%w: with %s out, want every request answered by the two others, got %v", ErrDemo, victim, t)
	}

	d.say("bringing %s back", victim)
	if err := be.Revive(); err != nil {
		return fmt.Errorf("revive %s: %w", victim, err)
	}
	took, err := d.waitBackends(ctx, 10*time.Second, func(m map[string]string) bool { return m[victim] == "up" })
	if err != nil {
		return err
	}
	d.say("%s is back after %v (rise %d at %v)", victim, took.Round(time.Millisecond), rise, interval)
	d.say("client: %d more requests", d.o.Requests)
	t = d.round(ctx)
	if t.Failed != 0 || t.ByBackend[victim] == 0 {
		return fmt.Errorf("%w: with %s back, want it to get requests again and none to fail, got %v", ErrDemo, victim, t)
	}
	return nil
}

func (d *run) showBackends(ctx context.Context) {
	bs, err := d.api.Backends(ctx, "web")
	if err != nil {
		d.say("  (API: %v)", err)
		return
	}
	for _, b := range bs {
		fmt.Fprintf(d.o.Out, "          %-3s %-14s health=%-5s weight=%-3d active=%-5v probes=%d failures=%d\n",
			b.Name, b.Address, b.Health, b.Weight, b.Active, b.Probes, b.Fails)
	}
}

// showCounters prints the data path's counters from the API's metrics.
func (d *run) showCounters(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.api.Base+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := d.api.HTTP.Do(req)
	if err != nil {
		d.say("metrics: %v", err)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		d.say("metrics: status %d, %v", resp.StatusCode, err)
		return
	}
	d.say("data path counters (from /metrics):")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		for _, want := range []string{"xlb_backend_packets_total", "xlb_worker_rx_packets_total", "xlb_worker_tx_packets_total",
			"xlb_worker_new_flows_total", "xlb_worker_conn_hits_total", "xlb_drops_total"} {
			if strings.HasPrefix(line, want) && !strings.HasSuffix(line, " 0") {
				fmt.Fprintf(d.o.Out, "          %s\n", line)
			}
		}
	}
}

func (d *run) stopLB() error {
	d.say("stopping xlb (SIGTERM) and removing the topology")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal xlb: %w", err)
	}
	select {
	case err := <-d.exited:
		d.cmd = nil
		if err != nil {
			return fmt.Errorf("xlb run exited with %w; log:\n%s", err, d.logTail())
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%w: xlb run did not stop within 10s of SIGTERM", ErrDemo)
	}
	return nil
}

func (d *run) logTail() string {
	if d.dir == "" {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(d.dir, "xlb.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// close stops the daemon if it still runs and removes the topology.
func (d *run) close() error {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Kill() // our own child, by its PID
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
		}
	}
	var err error
	if d.tn != nil {
		err = d.tn.Close()
	}
	if d.dir != "" {
		if d.o.Keep {
			fmt.Fprintf(d.o.Out, "kept %s\n", d.dir)
		} else {
			os.RemoveAll(d.dir)
		}
	}
	d.say("done")
	return err
}
