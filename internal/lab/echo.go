package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Echo is a TCP or UDP echo server running in a namespace.
type Echo struct {
	addr  net.Addr
	close func() error

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// Addr is the address the server listens on.
func (e *Echo) Addr() net.Addr { return e.addr }

// Active is the number of TCP connections the server holds open now (0 for UDP): with
// one echo server per backend, it tells which backend a long-lived connection landed on.
func (e *Echo) Active() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

// Roundtrip writes msg on c and reads it back (an echo server at the other end), within
// timeout: a cheap check that a long-lived connection still reaches its backend.
func Roundtrip(c net.Conn, msg []byte, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("roundtrip: %w", err)
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("roundtrip write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("roundtrip read: %w", err)
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("roundtrip: got %q, sent %q", buf, msg)
	}
	return nil
}

// Close stops the server and closes every connection it holds.
func (e *Echo) Close() error {
	e.once.Do(func() {
		e.err = e.close()
		e.mu.Lock()
		e.closing = true
		for c := range e.conns {
			_ = c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
		if errors.Is(e.err, net.ErrClosed) {
			e.err = nil
		}
	})
	return e.err
}

// ServeTCPEcho starts a TCP echo server in the namespace on addr (e.g. ":7" or
// "198.18.0.100:7"); every connection echoes what it reads until the peer closes it, so it
// also serves as a long-lived connection. Close (or the namespace's Close) stops it.
func (n *NS) ServeTCPEcho(addr string) (*Echo, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: tcp echo listen %s: %w", n.name, addr, err)
	}
	e := &Echo{addr: l.Addr(), close: l.Close, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			if e.closing {
				e.mu.Unlock()
				_ = c.Close()
				return
			}
			e.conns[c] = struct{}{}
			e.wg.Add(1)
			e.mu.Unlock()
			go func() {
				defer e.wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
	return e, n.track(e)
}

// ServeUDPEcho starts a UDP echo server in the namespace on addr ("host:port"; an empty
// host means every IPv4 and IPv6 address): every datagram goes back to its source from the
// address it was sent to (IP_PKTINFO), so an echo on the VIP answers from the VIP.
func (n *NS) ServeUDPEcho(addr string) (*Echo, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: udp echo %q: %w", n.name, addr, err)
	}
	nets := [][2]string{{"udp", addr}}
	if host == "" {
		nets = [][2]string{{"udp4", "0.0.0.0:" + port}, {"udp6", "[::]:" + port}}
	}
	var conns []*net.UDPConn
	closeAll := func() error {
		var errs []error
		for _, c := range conns {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	}
	err = n.Do(func() error {
		for _, na := range nets {
			c, err := listenPktinfo(na[0], na[1])
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		_ = closeAll()
		return nil, fmt.Errorf("%s: udp echo listen %s: %w", n.name, addr, err)
	}
	e := &Echo{addr: conns[0].LocalAddr(), close: closeAll}
	for _, c := range conns {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			udpEcho(c)
		}()
	}
	return e, n.track(e)
}
