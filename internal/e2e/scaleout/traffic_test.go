package scaleout

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// longConn is one long-lived HTTP/1.1 connection to the VIP, from its own source port.
type longConn struct {
	c       *testnet.HTTPConn
	backend string // the backend that answered its first request

	lastOK atomic.Int64 // unix nanos of the last good answer
	dead   atomic.Bool
	mu     sync.Mutex
	err    error
}

func (p *longConn) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	p.dead.Store(true)
}

// event is one request of the request loop.
type event struct {
	at time.Time
	ok bool
}

// traffic runs the long-lived connections (a request on each every period) and a request
// loop (a new connection per request) until stop.
type traffic struct {
	conns []*longConn
	stop  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	events []event
}

const (
	connPeriod = 250 * time.Millisecond
	connWait   = 10 * time.Second // a request on a long connection may wait out a failover
)

func startTraffic(ctx context.Context, client *lab.NS, vip string, conns, loops int) (*traffic, error) {
	tr := &traffic{stop: make(chan struct{})}
	for range conns {
		c, err := client.DialWith(ctx, &net.Dialer{Timeout: 2 * time.Second}, "tcp", vip)
		if err != nil {
			tr.Stop()
			return nil, err
		}
		p := &longConn{c: testnet.NewHTTPConn(c)}
		if p.backend, err = p.c.Get(2 * time.Second); err != nil {
			c.Close()
			tr.Stop()
			return nil, fmt.Errorf("first request on a long connection: %w", err)
		}
		p.lastOK.Store(time.Now().UnixNano())
		tr.conns = append(tr.conns, p)
	}
	for _, p := range tr.conns {
		tr.wg.Go(func() {
			defer p.c.Close()
			t := time.NewTicker(connPeriod)
			defer t.Stop()
			for {
				select {
				case <-tr.stop:
					return
				case <-t.C:
				}
				b, err := p.c.Get(connWait)
				switch {
				case err != nil:
					p.fail(err)
					return
				case b != p.backend:
					p.fail(fmt.Errorf("moved from backend %s to %s", p.backend, b))
					return
				}
				p.lastOK.Store(time.Now().UnixNano())
			}
		})
	}
	hc := client.HTTPClient(lab.ClientOptions{Timeout: 2 * time.Second})
	url := "http://" + vip + "/"
	for range loops {
		tr.wg.Go(func() {
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				_, err := lab.Get(ctx, hc, url)
				tr.mu.Lock()
				tr.events = append(tr.events, event{time.Now(), err == nil})
				tr.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return tr, nil
}

// Stop ends the traffic and waits for it.
func (tr *traffic) Stop() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// requests counts the request loop's outcomes in [from, to).
func (tr *traffic) requests(from, to time.Time) (ok, failed int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, e := range tr.events {
		if e.at.Before(from) || !e.at.Before(to) {
			continue
		}
		if e.ok {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// alive counts the long connections still working, and lists why the others died.
func (tr *traffic) alive() (n int, dead []string) {
	for _, p := range tr.conns {
		if !p.dead.Load() {
			n++
			continue
		}
		p.mu.Lock()
		dead = append(dead, fmt.Sprintf("%s (backend %s): %v", p.c.LocalAddr(), p.backend, p.err))
		p.mu.Unlock()
	}
	return n, dead
}

// settled waits (up to max) until every live connection has had a good answer after t,
// so that one stuck in a retransmission is not counted as alive too early.
func (tr *traffic) settled(t time.Time, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		all := true
		for _, p := range tr.conns {
			if !p.dead.Load() && p.lastOK.Load() < t.UnixNano() {
				all = false
				break
			}
		}
		if all {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// byBackend counts the live long connections per backend.
func (tr *traffic) byBackend() map[string]int {
	out := map[string]int{}
	for _, p := range tr.conns {
		if !p.dead.Load() {
			out[p.backend]++
		}
	}
	return out
}
