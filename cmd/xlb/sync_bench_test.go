package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// BenchmarkSyncCost measures what connection sync costs the sending host at 100k new
// flows/s: `xlb bench gen` sends 64-byte UDP packets of 2^20 distinct flows at 100k
// packets/s (every packet of the first pass is a new flow: one record each) to a real
// `xlb run` on lb0, whose peer lb1 runs `xlb run` too and receives. Sync off and on
// alternate (A B A B ...); per run it reports lb0's CPU time per second (utime+stime from
// /proc over 4 s of the load), the sync bytes sent per second, and lb1's lag (receive
// time minus when the message's oldest record may have been queued). Root only; run with
// -benchtime 1x (each iteration is a pair of runs).
func BenchmarkSyncCost(b *testing.B) {
	tn := testnet.New(b, lab.Config{LBs: 2, Backends: 2, NoHTTP: true, DisableIPv6: true})
	sb := &syncBench{b: b, tn: tn, dir: b.TempDir(), logs: &testnet.Output{}}
	sb.bin = filepath.Join(sb.dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", sb.bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	var k [32]byte
	_, _ = rand.Read(k[:])
	sb.key = hex.EncodeToString(k[:])
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("logs:\n%s", sb.logs.String())
		}
	})
	for b.Loop() {
		off := sb.one(false)
		on := sb.one(true)
		b.Logf("lb0 CPU: sync off %.1f%%, on %.1f%% of a CPU (its sync sender thread %.2f%%); lb1's receiver thread %.2f%%; sync %.2f MB/s; lb1 lag last %v, max %v",
			100*off.cpu, 100*on.cpu, 100*on.sendCPU, 100*on.recvCPU, on.bytesPerSec/1e6, on.lag.Round(time.Microsecond), on.lagMax.Round(time.Microsecond))
		b.ReportMetric(100*on.sendCPU, "sender-cpu%")
		b.ReportMetric(100*on.recvCPU, "receiver-cpu%")
		b.ReportMetric(100*off.cpu, "cpu%-off")
		b.ReportMetric(100*on.cpu, "cpu%-on")
		b.ReportMetric(on.bytesPerSec/1e6, "MB/s")
		b.ReportMetric(float64(on.lagMax.Microseconds()), "lag-max-us")
	}
}

// syncBench is BenchmarkSyncCost's lab: lb0 forwards the generator's flows, lb1 is its peer.
type syncBench struct {
	b    *testing.B
	tn   *lab.Net
	dir  string
	bin  string
	key  string
	logs *testnet.Output
}

// syncRun is one run's figures.
type syncRun struct {
	cpu, bytesPerSec, sendCPU, recvCPU float64 // CPU: of one CPU, over the measured window
	lag, lagMax                        time.Duration
}

// conf writes lb i's configuration: one udp service, rr over the two backends.
func (sb *syncBench) conf(i int, withSync bool) string {
	tn := sb.tn
	var s strings.Builder
	fmt.Fprintf(&s, "interfaces: [{name: eth0, cores: [0]}]\nservices:\n  - {name: u, vip: %s, port: 9000, protocol: udp, scheduler: rr,\n"+
		"     health: {kind: none}, backends: [{address: %s}, {address: %s}]}\n", tn.VIP, tn.Backends[0].Addr(), tn.Backends[1].Addr())
	fmt.Fprintf(&s, "api: {socket: %s}\n", filepath.Join(sb.dir, fmt.Sprintf("lb%d.sock", i)))
	if withSync {
		fmt.Fprintf(&s, "sync: {listen: %s, peers: [%s], key: %s}\n", tn.LBs[i].Addr(), tn.LBs[1-i].Addr(), sb.key)
	}
	p := filepath.Join(sb.dir, fmt.Sprintf("lb%d.yaml", i))
	if err := os.WriteFile(p, []byte(s.String()), 0o600); err != nil {
		sb.b.Fatal(err)
	}
	return p
}

// start runs `xlb run` on lb i and waits for its API.
func (sb *syncBench) start(i int, withSync bool) (*exec.Cmd, *control.Client) {
	b, h := sb.b, sb.tn.LBs[i]
	cmd := exec.Command(sb.bin, "run", "--config", sb.conf(i, withSync))
	cmd.Stdout, cmd.Stderr = sb.logs, sb.logs
	if err := h.Start(cmd); err != nil {
		b.Fatal(err)
	}
	api := &control.Client{Base: "http://" + config.DefaultAPIListen, HTTP: h.HTTPClient(lab.ClientOptions{Timeout: time.Second})}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := api.Services(ctx)
		cancel()
		if err == nil {
			return cmd, api
		}
		if time.Now().After(deadline) {
			b.Fatalf("lb%d did not come up: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
}

// cpuTicks returns a process's utime+stime in USER_HZ ticks (100 per second).
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14, 15
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// one runs the load for 6 s through lb0 and measures 4 s of it.
func (sb *syncBench) one(withSync bool) syncRun {
	b, tn := sb.b, sb.tn
	rx, rxAPI := sb.start(1, withSync)
	defer stopProcess(rx)
	tx, txAPI := sb.start(0, withSync)
	defer stopProcess(tx)
	gen := exec.Command(sb.bin, "bench", "gen", "--iface", "eth0", "--cpus", "1", "--queues", "1",
		"--dst-mac", tn.LBs[0].Ifaces[0].MAC.String(), "--dst", tn.VIP.String(), "--dst-port", "9000", "--flows", "1048576",
		"--rate", "100k", "--duration", "6s")
	gen.Stdout, gen.Stderr = sb.logs, sb.logs
	if err := tn.Client.Start(gen); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	ctx := context.Background()
	s0, _ := txAPI.Sync(ctx)
	c0, t0 := cpuTicks(b, tx.Process.Pid), time.Now()
	time.Sleep(4 * time.Second)
	s1, _ := txAPI.Sync(ctx)
	c1, t1 := cpuTicks(b, tx.Process.Pid), time.Now()
	if err := gen.Wait(); err != nil {
		b.Fatalf("bench gen: %v", err)
	}
	el := t1.Sub(t0).Seconds()
	r := syncRun{cpu: float64(c1-c0) / 100 / el, bytesPerSec: float64(s1.SentBytes-s0.SentBytes) / el,
		sendCPU: (s1.SenderCPU - s0.SenderCPU).Seconds() / el}
	if withSync {
		st, _ := rxAPI.Sync(ctx)
		r.lag, r.lagMax, r.recvCPU = st.LagLast, st.LagMax, st.ReceiverCPU.Seconds()/6 // over the whole load
		b.Logf("sync on: %.0f records/s sent, %d dropped (ring full), receiver applied %d, lost %d",
			float64(s1.SentRecords-s0.SentRecords)/el, s1.Dropped["ring_full"], st.Applied, st.Lost)
	}
	return r
}
