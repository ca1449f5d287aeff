package health_test

import (
	"context"
	"fmt"
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
