package xsk_test

import (
	"fmt"
	"log"
	"net"
	"time"

	"github.com/xlb-dev/xlb/dataplane/xsk"
)

// Example is the shape of a per-queue worker: receive a batch, send it back
// out with the MACs swapped, recycle completed frames, refill. It needs root,
// an interface and an XDP program that redirects to the socket (see
// package xdpprog), so it is compiled but not run.
func Example() {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		log.Fatal(err)
	}
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 8192})
	if err != nil {
		log.Fatal(err)
	}
	defer u.Close()
	s, err := xsk.Open(u, xsk.Config{Ifindex: ifi.Index, Queue: 0, TxBudget: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println("zero copy:", s.ZeroCopyOn())
	// prog.RegisterSocket(0, s.FD()) with an attached xdpprog.Program.

	s.Fill(-1)
	var batch [64]xsk.Desc
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		n := s.Receive(batch[:])
		for _, d := range batch[:n] {
			f := u.Frame(d.Addr)
			pkt := f[u.Offset(d.Addr) : u.Offset(d.Addr)+int(d.Len)]
			var mac [6]byte
			copy(mac[:], pkt[0:6])
			copy(pkt[0:6], pkt[6:12])
			copy(pkt[6:12], mac[:])
			// To prepend an outer header of h <= u.RxOffset() bytes,
			// write it at f[u.Offset(d.Addr)-h:] and send
			// Desc{Addr: d.Addr - uint64(h), Len: d.Len + uint32(h)}.
		}
		sent := s.Transmit(batch[:n])
		for _, d := range batch[sent:n] {
			u.Free(d.Addr) // the tx ring is full: drop
		}
		s.Complete()
		s.Fill(-1)
		if n == 0 {
			s.Poll(time.Millisecond)
		}
	}
}
