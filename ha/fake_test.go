package ha

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"sync"
)

// hub is an in-memory link: every message a member sends to the group reaches every other
// member (unless the link from sender to receiver is cut), a unicast message reaches the member
// with that address. Delivery is with TTL 255 unless ttl is set.
type hub struct {
	mu      sync.Mutex
	members map[netip.Addr]*fakeTransport
	cut     map[[2]netip.Addr]bool // sender -> receiver blocked
	ttl     uint8
}

func newHub() *hub {
	return &hub{members: map[netip.Addr]*fakeTransport{}, cut: map[[2]netip.Addr]bool{}, ttl: 255}
}

func (h *hub) join(src netip.Addr) *fakeTransport {
	t := &fakeTransport{hub: h, src: src, in: make(chan fakeMsg, 64), closed: make(chan struct{})}
	h.mu.Lock()
	h.members[src] = t
	h.mu.Unlock()
	return t
}

func (h *hub) setCut(from, to netip.Addr, cut bool) {
	h.mu.Lock()
	h.cut[[2]netip.Addr{from, to}] = cut
	h.mu.Unlock()
}

type fakeMsg struct {
	b    []byte
	info RecvInfo
}

type fakeTransport struct {
	hub       *hub
	src       netip.Addr
	in        chan fakeMsg
	closeOnce sync.Once
	closed    chan struct{}

	mu        sync.Mutex
	sent      []Advert // decoded copies of what was sent
	announced []netip.Addr
}

func (t *fakeTransport) Source() netip.Addr { return t.src }

func (t *fakeTransport) Send(msg []byte, dst netip.Addr) error {
	select {
	case <-t.closed:
		return os.ErrClosed
	default:
	}
	var a Advert
	if err := ParseAdvert(msg, t.src, dst, &a); err != nil {
		return err
	}
	t.mu.Lock()
	t.sent = append(t.sent, a)
	t.mu.Unlock()
	h := t.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for addr, m := range h.members {
		if m == t || h.cut[[2]netip.Addr{t.src, addr}] || (!dst.IsMulticast() && dst != addr) {
			continue
		}
		select {
		case m.in <- fakeMsg{b: bytes.Clone(msg), info: RecvInfo{Src: t.src, Dst: dst, TTL: h.ttl}}:
		default: // receiver not reading: drop, like a full socket buffer
		}
	}
	return nil
}

func (t *fakeTransport) Recv(buf []byte) ([]byte, RecvInfo, error) {
	select {
	case m := <-t.in:
		n := copy(buf, m.b)
		return buf[:n], m.info, nil
	case <-t.closed:
		return nil, RecvInfo{}, os.ErrClosed
	}
}

func (t *fakeTransport) Announce(vip netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.announced = append(t.announced, vip)
	return nil
}

func (t *fakeTransport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}

// sentPriorities lists the priorities of the advertisements sent so far.
func (t *fakeTransport) sentPriorities() []uint8 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var p []uint8
	for _, a := range t.sent {
		p = append(p, a.Priority)
	}
	return p
}

func (t *fakeTransport) announcedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.announced)
}

var errHook = errors.New("hook failed")
