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
	dir := b.TempDir()
	bin := filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	var k [32]byte
	_, _ = rand.Read(k[:])
	key := hex.EncodeToString(k[:])
	logs := &testnet.Output{}
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("logs:\n%s", logs.String())
		}
	})
	conf := func(i int, withSync bool) string {
		var s strings.Builder
		fmt.Fprintf(&s, "interfaces: [{name: eth0, cores: [0]}]\nservices:\n  - {name: u, vip: %s, port: 9000, protocol: udp, scheduler: rr,\n"+
			"     health: {kind: none}, backends: [{address: %s}, {address: %s}]}\n", tn.VIP, tn.Backends[0].Addr(), tn.Backends[1].Addr())
		fmt.Fprintf(&s, "api: {socket: %s}\n", filepath.Join(dir, fmt.Sprintf("lb%d.sock", i)))
		if withSync {
			fmt.Fprintf(&s, "sync: {listen: %s, peers: [%s], key: %s}\n", tn.LBs[i].Addr(), tn.LBs[1-i].Addr(), key)
		}
		p := filepath.Join(dir, fmt.Sprintf("lb%d.yaml", i))
		if err := os.WriteFile(p, []byte(s.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	start := func(i int, withSync bool) (*exec.Cmd, *control.Client) {
		cmd := exec.Command(bin, "run", "--config", conf(i, withSync))
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := tn.LBs[i].Start(cmd); err != nil {
			b.Fatal(err)
		}
		api := &control.Client{Base: "http://" + config.DefaultAPIListen,
			HTTP: tn.LBs[i].HTTPClient(lab.ClientOptions{Timeout: time.Second})}
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
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	cpuTicks := func(pid int) int64 {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14, 15
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return u + s
	}
	const hz = 100 // USER_HZ
	lbMAC := tn.LBs[0].Ifaces[0].MAC.String()
	one := func(withSync bool) (cpu, bytesPerSec, sendCPU, recvCPU float64, lag, lagMax time.Duration) {
		rx, rxAPI := start(1, withSync)
		defer stop(rx)
		tx, txAPI := start(0, withSync)
		defer stop(tx)
		gen := exec.Command(bin, "bench", "gen", "--iface", "eth0", "--cpus", "1", "--queues", "1",
			"--dst-mac", lbMAC, "--dst", tn.VIP.String(), "--dst-port", "9000", "--flows", "1048576",
			"--rate", "100k", "--duration", "6s")
		gen.Stdout, gen.Stderr = logs, logs
		if err := tn.Client.Start(gen); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second)
		ctx := context.Background()
		s0, _ := txAPI.Sync(ctx)
		c0, t0 := cpuTicks(tx.Process.Pid), time.Now()
		time.Sleep(4 * time.Second)
		s1, _ := txAPI.Sync(ctx)
		c1, t1 := cpuTicks(tx.Process.Pid), time.Now()
		if err := gen.Wait(); err != nil {
			b.Fatalf("bench gen: %v", err)
		}
		el := t1.Sub(t0).Seconds()
		cpu = float64(c1-c0) / hz / el
		bytesPerSec = float64(s1.SentBytes-s0.SentBytes) / el
		sendCPU = (s1.SenderCPU - s0.SenderCPU).Seconds() / el
		if withSync {
			r, _ := rxAPI.Sync(ctx)
			lag, lagMax = r.LagLast, r.LagMax
			recvCPU = r.ReceiverCPU.Seconds() / 6 // over the whole load: 6s
			b.Logf("sync on: %.0f records/s sent, %d dropped (ring full), receiver applied %d, lost %d",
				float64(s1.SentRecords-s0.SentRecords)/el, s1.Dropped["ring_full"], r.Applied, r.Lost)
		}
		return cpu, bytesPerSec, sendCPU, recvCPU, lag, lagMax
	}
	for b.Loop() {
		offCPU, _, _, _, _, _ := one(false)
		onCPU, bps, sendCPU, recvCPU, lag, lagMax := one(true)
		b.Logf("lb0 CPU: sync off %.1f%%, on %.1f%% of a CPU (its sync sender thread %.2f%%); lb1's receiver thread %.2f%%; sync %.2f MB/s; lb1 lag last %v, max %v",
			100*offCPU, 100*onCPU, 100*sendCPU, 100*recvCPU, bps/1e6, lag.Round(time.Microsecond), lagMax.Round(time.Microsecond))
		b.ReportMetric(100*sendCPU, "sender-cpu%")
		b.ReportMetric(100*recvCPU, "receiver-cpu%")
		b.ReportMetric(100*offCPU, "cpu%-off")
		b.ReportMetric(100*onCPU, "cpu%-on")
		b.ReportMetric(bps/1e6, "MB/s")
		b.ReportMetric(float64(lagMax.Microseconds()), "lag-max-us")
	}
}
