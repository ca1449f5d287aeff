package lab

import (
	"bytes"
	"testing"
	"time"
)

// A frame the LB bounces with XDP_TX reaches its bridge port only with Config.PeerXDP.
func TestPeerXDP(t *testing.T) {
	t.Parallel()
	for _, peerXDP := range []bool{false, true} {
		n := newNet(t, Config{Backends: 1, NoHTTP: true, PeerXDP: peerXDP})
		if err := n.LB.attachXDPVerdict("eth0", xdpTX); err != nil {
			t.Fatal(err)
		}
		port, err := n.Switch.RawSocket(n.LB.Ifaces[0].Peer)
		if err != nil {
			t.Fatal(err)
		}
		send, err := n.Client.RawSocket("eth0")
		if err != nil {
			t.Fatal(err)
		}
		marker := []byte("xlb-testnet-peer-xdp")
		frame := append(append(append([]byte{}, n.LB.Ifaces[0].MAC...), n.Client.Ifaces[0].MAC...), 0x88, 0xb5)
		frame = append(frame, marker...)
		frame = append(frame, make([]byte, 60-len(frame))...)
		if err := send.Send(frame); err != nil {
			t.Fatal(err)
		}
		bounced := false
		buf := make([]byte, 2048)
		deadline := time.Now().Add(time.Second)
		for !bounced && time.Now().Before(deadline) {
			m, out, err := port.Recv(buf, time.Until(deadline))
			if err != nil {
				break
			}
			bounced = !out && bytes.Contains(buf[:m], marker)
		}
		if bounced != peerXDP {
			t.Errorf("PeerXDP=%v: frame bounced by XDP_TX reached the bridge port: %v", peerXDP, bounced)
		}
		n.Close()
	}
}
