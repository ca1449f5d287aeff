package encap_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/xlb-dev/xlb/encap"
)

// A QUIC server encodes its server ID into the connection IDs it issues; the load balancer
// decodes it from a packet's destination connection ID.
func ExampleQUICLB() {
	key := []byte("0123456789abcdef") // shared by the servers and the load balancer
	lb, err := encap.NewQUICLB(encap.QUICLBConfig{ConfigID: 1, ServerIDLen: 2, NonceLen: 6, Key: key})
	if err != nil {
		panic(err)
	}
	// Server side (e.g. a QUIC library's connection ID generator), with a random nonce.
	cid, _ := lb.Encode(make([]byte, lb.ConnIDLen()), []byte{0x0a, 0x02}, []byte{9, 8, 7, 6, 5, 4})
	// Load balancer side: a QUIC short header is the first byte, then the connection ID.
	payload := append([]byte{0x41}, cid...)
	h, _ := encap.QUICDestConnID(payload, lb.ConnIDLen())
	var sc encap.QUICScratch // one per worker
	sid, ok := lb.ServerID(payload[h.DCIDOff:h.DCIDOff+h.DCIDLen], &sc)
	fmt.Printf("config %d, %d bytes, server ID %x %v\n", cid[0]>>5, len(cid), sid, ok)
	// Output: config 1, 9 bytes, server ID 0a02 true
}

// GUE puts a UDP header between the outer and the inner IP header; its source port follows
// the flow, so the backend's NIC spreads the flows over its queues.
func ExampleTunnel_gue() {
	tn, err := encap.NewTunnel(encap.TunnelConfig{
		DstMAC: [6]byte{2, 0, 0, 0, 0, 3}, SrcMAC: [6]byte{2, 0, 0, 0, 0, 2},
		Backend: netip.MustParseAddr("198.18.0.11"), Source: netip.MustParsePrefix("198.18.0.2/32"),
		Encap: encap.EncapGUE, // the default port, encap.DefaultGUEPort
	})
	if err != nil {
		panic(err)
	}
	buf, off, n := clientFrame(10)
	var p encap.Packet
	encap.Parse(buf[off:off+n], &p)
	off, n, r := tn.Encap(buf, off, n, &p)
	udp := buf[off+14+20:]
	fmt.Println(r, n, "bytes, overhead", tn.Overhead(), "udp port", binary.BigEndian.Uint16(udp[2:4]), "gue protocol", udp[9])
	// Output: ok 96 bytes, overhead 32 udp port 6080 gue protocol 4
}
