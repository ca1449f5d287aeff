package control

import (
	"bytes"
	"testing"

	"github.com/xlb-dev/xlb/config"
)

const quicSvc = `interfaces: [{name: eth0}]
services:
  - name: quic
    vip: 198.19.0.10
    port: 443
    protocol: udp
    method: tunnel
    tunnel_source: 198.18.0.2
    encap: fou
    encap_port: 7000
    quic: {server_id_len: 1, cid_len: 9, mode: encrypted, key: 000102030405060708090a0b0c0d0e0f, previous: [{cid_len: 7, config_rotation: 3}]}
    backends:
      - {name: a, address: 198.18.0.11, server_id: "01"}
      - {name: b, address: 198.18.0.12}
    fallback:
      - {name: sorry, address: 198.18.0.20, server_id: "09"}
    health: {kind: none}
`

// TestQUICAndEncapReachTheSnapshot: the service's encapsulation, its QUIC-LB codec and the
// backends' server IDs (fallbacks included, in target order) are in the published spec.
func TestQUICAndEncapReachTheSnapshot(t *testing.T) {
	r := newRig(t, quicSvc)
	sp := r.spec("quic")
	if sp.Encap != config.EncapFOU || sp.EncapPort != 7000 {
		t.Errorf("encap %v port %d", sp.Encap, sp.EncapPort)
	}
	if sp.QUIC == nil || !sp.QUIC.Encrypted() || sp.QUIC.ConnIDLen() != 9 {
		t.Fatalf("quic codec %+v", sp.QUIC)
	}
	if len(sp.QUICPrevious) != 1 || sp.QUICPrevious[0].ConfigID() != 3 || sp.QUICPrevious[0].ConnIDLen() != 7 {
		t.Fatalf("previous codecs %+v", sp.QUICPrevious)
	}
	want := [][]byte{{1}, nil, {9}}
	for i, tg := range sp.Targets {
		if !bytes.Equal(tg.ServerID, want[i]) {
			t.Errorf("target %d (%v): server ID %x, want %x", i, tg.Addr, tg.ServerID, want[i])
		}
	}
}
