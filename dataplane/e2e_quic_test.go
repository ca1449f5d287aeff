package dataplane

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

// The QUIC end-to-end test: quic-go servers on every backend issue connection IDs that carry
// their QUIC-LB server ID (through quic-go's ConnectionIDGenerator hook, testnet.QUICConnIDs);
// a quic-go client streams through xlb, migrates to a new local address and port mid-transfer
// while the backend set changes, and must keep its server.

// quicService is a UDP service whose backend i has server ID serverID(i) and whose backends
// are up as up says.
func quicService(t *testing.T, tn *lab.Net, name string, index int, vip netip.AddrPort, lb *encap.QUICLB, up []bool) ServiceSpec {
	t.Helper()
	sp := backendSpec(t, tn, name, index, vip.Addr(), vip.Port(), MethodDR)
	bs := make([]sched.Backend, sp.Sched.Len())
	for i := range bs {
		bs[i] = sp.Sched.Backend(i)
		bs[i].Up = up[i]
		sp.Targets[i].ServerID = serverID(i)
	}
	var err error
	if sp.Sched, err = sched.NewService(sched.ServiceConfig{Index: index, Strategy: sched.Maglev}, bs); err != nil {
		t.Fatal(err)
	}
	sp.Proto, sp.QUIC = encap.ProtoUDP, lb
	return sp
}

// portAway returns a local port for src whose 4-tuple to the service the scheduler of sp
// sends to a backend other than avoid: so only connection-ID routing can keep a flow that
// migrates there on avoid.
func portAway(t *testing.T, sp ServiceSpec, src netip.Addr, avoid string) uint16 {
	t.Helper()
	a, v6 := addr16(src)
	d, _ := addr16(sp.VIP)
	for p := uint16(20000); p < 30000; p++ {
		k := sched.Key{Src: a, Dst: d, SrcPort: p, DstPort: sp.Port, Proto: encap.ProtoUDP, V6: v6}
		if b := sp.Sched.Lookup(&k); b >= 0 && sp.Sched.Backend(b).Name != avoid {
			return p
		}
	}
	t.Fatal("no port maps away from " + avoid)
	return 0
}

func TestE2EQUICMigration(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_GSO", "true") // the veths have checksum offload off
	tn := testnet.New(t, lab.Config{Backends: 3, NoHTTP: true})
	dp := startDataplane(t, tn.LB, "eth0")
	tc := testnet.SelfSignedTLS(t)
	modes := []struct {
		name    string
		vip     netip.AddrPort
		lb      *encap.QUICLB
		newAddr netip.Addr // the client's new address: one it did not use yet
	}{
		{"plaintext", netip.AddrPortFrom(tn.VIP, 443), quicLB(t, false, false), tn.ClientPool.Addr().Next().Next()},
		{"encrypted", netip.AddrPortFrom(tn.VIP, 444), quicLB(t, true, false), tn.ClientPool.Addr().Next().Next().Next()},
		{"encrypted ipv6", netip.AddrPortFrom(tn.VIP6, 444), quicLB(t, true, false), tn.ClientPool6.Addr().Next().Next()},
	}
	for i, b := range tn.Backends {
		for _, m := range modes {
			testnet.ServeQUIC(t, b, m.vip, testnet.QUICConnIDs{LB: m.lb, ServerID: serverID(i)}, tc)
		}
	}
	allUp := []bool{true, true, true}
	services := func(up []bool) []ServiceSpec {
		var out []ServiceSpec
		for i, m := range modes {
			out = append(out, quicService(t, tn, m.name, i, m.vip, m.lb, up))
		}
		return out
	}
	publishAndStart(t, dp, mustSnapshot(t, nil, services(allUp)...))
	for mi, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if err := dp.Publish(mustSnapshot(t, nil, services(allUp)...)); err != nil {
				t.Fatal(err)
			}
			before := dp.Total()
			res := testnet.RunQUICMigration(t, testnet.QUICMigration{Client: tn.Client, VIP: m.vip,
				Before: func(server string) netip.AddrPort {
					// The backend set changes: another backend goes down.
					up := slices.Clone(allUp)
					for i, b := range tn.Backends {
						if b.Name != server {
							up[i] = false
							break
						}
					}
					svcs := services(up)
					if err := dp.Publish(mustSnapshot(t, nil, svcs...)); err != nil {
						t.Fatal(err)
					}
					// The client moves to a port whose 4-tuple maps to another backend.
					return netip.AddrPortFrom(m.newAddr, portAway(t, svcs[mi], m.newAddr, server))
				}})
			after := dp.Total()
			routed, fallback := after.QUICRouted-before.QUICRouted, after.QUICFallback-before.QUICFallback
			t.Logf("%d records, %d before the move; server %s; packets routed by connection ID %d, by 4-tuple %d",
				res.Records, res.Moved, res.Server, routed, fallback)
			if routed == 0 {
				t.Error("no packet was routed by its connection ID")
			}
			if fallback == 0 { // the client's first Initial carries a DCID of its own choosing
				t.Error("no handshake packet took the 4-tuple path")
			}
		})
	}
}
