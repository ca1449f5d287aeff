package health_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/xlb-dev/xlb/health"
)

// A Monitor runs an HTTP check against a backend and reports only its transitions: up on the
// first success, down after Fall consecutive failures once the backend is gone.
func Example_monitor() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Load", "0.25")
		fmt.Fprintln(w, "ok")
	}))
	transitions := make(chan health.Transition, 4)
	m := health.NewMonitor(context.Background(), health.Options{
		OnTransition: func(t health.Transition) { transitions <- t },
		NoStagger:    true,
	})
	defer m.Close()
	err := m.Add(health.Check{
		ID:       "web/backend-1",
		Checker:  &health.HTTP{Target: netip.MustParseAddrPort(backend.Listener.Addr().String()), Path: "/healthz", ExpectBody: "ok"},
		Interval: 20 * time.Millisecond,
		Timeout:  20 * time.Millisecond,
		Rise:     2,
		Fall:     3,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	t := <-transitions
	fmt.Println(t.ID, t.From, "->", t.To, "load", t.Result.Load)
	backend.Close() // the backend dies: connections are refused
	t = <-transitions
	fmt.Println(t.ID, t.From, "->", t.To)
	// Output:
	// web/backend-1 unknown -> up load 0.25
	// web/backend-1 up -> down
}

// A Checker can be used on its own: one probe, bounded by its context.
func ExampleTCP() {
	backend := httptest.NewServer(http.NotFoundHandler())
	defer backend.Close()
	c := &health.TCP{Target: netip.MustParseAddrPort(backend.Listener.Addr().String())}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Check(ctx)
	fmt.Println(c.String()[:4], "healthy:", err == nil)
	// Output: tcp  healthy: true
}

// Checking a DR backend through the VIP: the probe goes to VIP:port, and the Dialer's mark
// lets a policy route (set up by control: "ip rule add fwmark 0x77 lookup 77" and "ip route
// add VIP/32 via BACKEND dev eth0 onlink table 77") deliver it to the backend's MAC, as the
// load balancer forwards clients' packets. A backend that lost the VIP fails this check while
// a check of its own address still passes. (Needs CAP_NET_ADMIN for SO_MARK; not run here.)
func ExampleDialer() {
	vip := netip.MustParseAddr("198.19.0.10")
	check := health.Check{
		ID: "web/198.18.0.11:80@vip",
		Checker: &health.HTTP{
			Target: netip.AddrPortFrom(vip, 80),
			Path:   "/healthz",
			Dialer: &health.Dialer{Mark: 0x77},
		},
		Interval: time.Second,
		Timeout:  500 * time.Millisecond,
	}
	fmt.Println(check.Checker)
}

// Probing from inside a network namespace (here one made by "ip netns add lb"): every probe
// runs on a thread switched into it, so its sockets live there. (Needs root; not run here.)
func ExampleInNetns() {
	m := health.NewMonitor(context.Background(), health.Options{Netns: health.InNetns("/run/netns/lb")})
	defer m.Close()
	err := m.Add(health.Check{ID: "b1", Checker: &health.ICMP{Target: netip.MustParseAddr("198.18.0.11")}})
	fmt.Println(err)
}

// An exec check runs a program (no shell unless asked for); with DynamicWeight an exit
// status of 2-255 means healthy with weight status-2, as keepalived's misc_dynamic.
func ExampleExec() {
	c := &health.Exec{Command: []string{"/bin/sh", "-c", "exit 52"}, DynamicWeight: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := c.Check(ctx)
	fmt.Println("healthy:", err == nil, "weight:", rep.Weight, rep.HasWeight)
	// Output: healthy: true weight: 50 true
}

// A UDP check is healthy on a reply that contains Expect.
func ExampleUDP() {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pc.Close()
	go func() { // a one-shot echo server
		buf := make([]byte, 512)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	c := &health.UDP{Target: netip.MustParseAddrPort(pc.LocalAddr().String()), Payload: []byte("ping"), Expect: []byte("ping")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Check(ctx)
	fmt.Println("healthy:", err == nil)
	// Output: healthy: true
}

// A backend with several checks is up only when all of them are.
func ExampleCombine() {
	fmt.Println(health.Combine(health.StateUp, health.StateUp))
	fmt.Println(health.Combine(health.StateUp, health.StateUnknown))
	fmt.Println(health.Combine(health.StateUp, health.StateDown))
	// Output:
	// up
	// unknown
	// down
}
