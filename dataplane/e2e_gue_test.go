package dataplane

import (
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
)

// TestE2EGUE: real TCP (HTTP) through xlb's tunnel method with GUE over IPv4 and FOU over
// IPv6 on another port; the backends decapsulate with the tc program, answer the client
// directly, and every connection lands where Maglev says.
func TestE2EGUE(t *testing.T) {
	tn := testnet.New(t, lab.Config{Backends: 3, Decap: true})
	for _, b := range tn.Backends {
		for _, port := range []uint16{encap.DefaultGUEPort, 7000} {
			if err := b.Decap.AddUDPPort(port); err != nil {
				t.Fatal(err)
			}
		}
	}
	dp := startDataplane(t, tn.LB, "eth0")
	sp := backendSpec(t, tn, "web", 0, tn.VIP, 80, MethodTunnel)
	sp.TunnelSource, sp.Encap = netip.PrefixFrom(tn.LB.Addr(), 32), encap.EncapGUE
	sp6 := backendSpec(t, tn, "web6", 1, tn.VIP6, 80, MethodTunnel)
	sp6.TunnelSource, sp6.Encap, sp6.EncapPort = netip.PrefixFrom(tn.LB.Addr6(), 128), encap.EncapFOU, 7000
	publishAndStart(t, dp, mustSnapshot(t, nil, sp, sp6))
	got := checkSpread(t, tn, sp, tn.Client.Addr(), 30)
	got6 := checkSpread(t, tn, sp6, tn.Client.Addr6(), 15)
	t.Logf("spread: gue %v, fou over ipv6 %v", got, got6)
	if len(got) < 2 {
		t.Errorf("30 flows all on one backend: %v", got)
	}
	if c := dp.Total(); c.Dropped() != 0 || c.TxPackets == 0 {
		t.Errorf("counters: %+v", c)
	}
	var decapped uint64
	for _, b := range tn.Backends {
		st, err := b.Decap.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Error != 0 {
			t.Errorf("%s: decap errors %+v", b.Name, st)
		}
		decapped += st.Decap
	}
	if tx := dp.Total().TxPackets; decapped < tx {
		t.Errorf("backends decapsulated %d of %d packets sent", decapped, tx)
	}
}
