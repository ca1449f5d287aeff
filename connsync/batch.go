package connsync

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchWriter collects a tick's messages, each for every peer, and sends them with as few
// sendmmsg(2) calls as it can (x/net's WriteBatch; the ipv4 and ipv6 packages share the
// implementation, so one serves both families). Its buffers are reused from tick to tick.
// Not safe for concurrent use.
type batchWriter struct {
	pc    *ipv4.PacketConn
	peers []net.Addr
	bufs  [][]byte // message buffers, the first nbuf in use
	recs  []int    // records per message in use
	nbuf  int
	msgs  []ipv4.Message
	nrec  []int // records of msgs[i]
}

func newBatchWriter(pc *net.UDPConn, peers []netip.AddrPort) *batchWriter {
	w := &batchWriter{pc: ipv4.NewPacketConn(pc)}
	for _, p := range peers {
		w.peers = append(w.peers, net.UDPAddrFromAddrPort(p))
	}
	return w
}

// joinGroup joins multicast group on interface ifname and makes pc send to it there, with
// TTL (hop limit) 1 and without looping its own messages back.
func joinGroup(pc *net.UDPConn, group netip.Addr, ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("connsync: multicast interface: %w", err)
	}
	ga := &net.UDPAddr{IP: group.AsSlice()}
	if group.Is4() {
		p := ipv4.NewPacketConn(pc)
		err = errors.Join(p.JoinGroup(ifi, ga), p.SetMulticastInterface(ifi), p.SetMulticastTTL(1),
			p.SetMulticastLoopback(false))
	} else {
		p := ipv6.NewPacketConn(pc)
		err = errors.Join(p.JoinGroup(ifi, ga), p.SetMulticastInterface(ifi), p.SetMulticastHopLimit(1),
			p.SetMulticastLoopback(false))
	}
	if err != nil {
		return fmt.Errorf("connsync: join %v on %s: %w", group, ifname, err)
	}
	return nil
}

// add seals a message of size bytes (records records) into a buffer of the batch.
func (w *batchWriter) add(seal func([]byte) []byte, size, records int) {
	if w.nbuf == len(w.bufs) {
		w.bufs = append(w.bufs, make([]byte, Size(MaxRecords)))
		w.recs = append(w.recs, 0)
	}
	w.bufs[w.nbuf] = seal(w.bufs[w.nbuf][:cap(w.bufs[w.nbuf])])[:size]
	w.recs[w.nbuf] = records
	w.nbuf++
}

// flush sends the batch to every peer; it returns the bytes sent and the records of
// messages that failed to go out (counted once per peer).
func (w *batchWriter) flush() (sent, failed uint64) {
	n := w.nbuf * len(w.peers)
	for len(w.msgs) < n {
		w.msgs = append(w.msgs, ipv4.Message{Buffers: make([][]byte, 1)})
		w.nrec = append(w.nrec, 0)
	}
	j := 0
	for i := range w.nbuf {
		for _, p := range w.peers {
			w.msgs[j].Buffers[0], w.msgs[j].Addr, w.nrec[j] = w.bufs[i], p, w.recs[i]
			j++
		}
	}
	w.nbuf = 0
	for at := 0; at < n; {
		k, err := w.pc.WriteBatch(w.msgs[at:n], 0)
		if err != nil || k <= 0 {
			// Skip the message that failed and carry on with the rest.
			failed += uint64(w.nrec[at])
			at++
			continue
		}
		for _, x := range w.msgs[at : at+k] {
			sent += uint64(len(x.Buffers[0]))
		}
		at += k
	}
	return sent, failed
}

// batchReader receives up to len(msgs) datagrams per recvmmsg(2) (x/net's ReadBatch).
type batchReader struct {
	rd interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	}
	msgs []ipv4.Message
}

// readBatch is how many datagrams one read takes at most.
const readBatch = 64

func newBatchReader(pc *net.UDPConn, size int) *batchReader {
	r := &batchReader{msgs: make([]ipv4.Message, readBatch)}
	if a, ok := pc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		r.rd = ipv6.NewPacketConn(pc) // ipv6.Message is the same type
	} else {
		r.rd = ipv4.NewPacketConn(pc)
	}
	for i := range r.msgs {
		r.msgs[i].Buffers = [][]byte{make([]byte, size)}
	}
	return r
}

// read blocks until datagrams arrive and returns how many it took.
func (r *batchReader) read() (int, error) { return r.rd.ReadBatch(r.msgs, 0) }

// msg returns datagram i of the last read.
func (r *batchReader) msg(i int) []byte { return r.msgs[i].Buffers[0][:r.msgs[i].N] }
