package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/encap"
)

const quicBase = `interfaces:
  - name: eth0
services:
  - name: quic
    vip: 198.19.0.10
    port: 443
    protocol: udp
    method: tunnel
    tunnel_source: 198.18.0.2
    encap: gue
    quic:
      server_id_len: 2
      cid_len: 8
      config_rotation: 1
      mode: encrypted
      key: 8f95f09245765f80256934e50c66207f
    health: {kind: icmp}
    backends:
      - {address: 198.18.0.11, server_id: 0a01}
      - {address: 198.18.0.12, server_id: "0x0a02"}
      - {address: 198.18.0.13}
`

func TestQUICConfig(t *testing.T) {
	cfg, err := Parse("q.yaml", []byte(quicBase))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	if s.Encap != EncapGUE || s.EncapPort != encap.DefaultGUEPort {
		t.Errorf("encap %v port %d", s.Encap, s.EncapPort)
	}
	if !bytes.Equal(s.Backends[0].ServerID, []byte{0x0a, 0x01}) || !bytes.Equal(s.Backends[1].ServerID, []byte{0x0a, 0x02}) || s.Backends[2].ServerID != nil {
		t.Errorf("server IDs %v %v %v", s.Backends[0].ServerID, s.Backends[1].ServerID, s.Backends[2].ServerID)
	}
	lb, err := s.QUIC.LB()
	if err != nil {
		t.Fatal(err)
	}
	if !lb.Encrypted() || lb.ConnIDLen() != 8 || lb.ServerIDLen() != 2 {
		t.Errorf("codec: encrypted %v cid %d sid %d", lb.Encrypted(), lb.ConnIDLen(), lb.ServerIDLen())
	}
	cid, _ := lb.Encode(make([]byte, 8), s.Backends[1].ServerID, make([]byte, 5))
	if cid[0]>>5 != 1 {
		t.Errorf("config rotation bits %d", cid[0]>>5)
	}
	rot, err := Parse("q.yaml", []byte(strings.Replace(quicBase, "    health:", "      previous: [{cid_len: 12, config_rotation: 0}]\n    health:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	prev, err := rot.Services[0].QUIC.PreviousLBs()
	if err != nil || len(prev) != 1 || prev[0].ConfigID() != 0 || prev[0].ConnIDLen() != 12 || prev[0].Encrypted() {
		t.Fatalf("previous: %v %v", prev, err)
	}
	plain, err := Parse("q.yaml", []byte(strings.NewReplacer("      mode: encrypted\n", "", "      key: 8f95f09245765f80256934e50c66207f\n", "").Replace(quicBase)))
	if err != nil {
		t.Fatal(err)
	}
	if m := plain.Services[0].QUIC.Mode; m != QUICPlaintext {
		t.Errorf("default mode %v", m)
	}
}

// TestQUICConfigErrors: every bad encap, quic or server_id setting is refused with its line.
func TestQUICConfigErrors(t *testing.T) {
	r := func(old, new string) string { return strings.Replace(quicBase, old, new, 1) }
	for _, tt := range []struct {
		name   string
		yaml   string
		line   int
		reason error
		text   string
	}{
		{"bad encap", r("encap: gue", "encap: vxlan"), 10, encap.ErrTunnelEncap, "vxlan"},
		{"encap without tunnel", r("    method: tunnel\n    tunnel_source: 198.18.0.2\n", ""), 8, ErrValue, "only used by method tunnel"},
		{"encap port with ipip", r("    encap: gue\n", "    encap_port: 7000\n"), 10, ErrValue, "encap_port"},
		{"quic over tcp", r("protocol: udp", "protocol: tcp"), 7, ErrValue, "protocol udp"},
		{"server id length", r("server_id_len: 2", "server_id_len: 9"), 12, ErrValue, "1..8"},
		{"cid too short", r("cid_len: 8", "cid_len: 6"), 13, ErrValue, "cid_len 6"},
		{"cid too long", r("cid_len: 8", "cid_len: 21"), 13, ErrValue, "cid_len 21"},
		{"config rotation 7", r("config_rotation: 1", "config_rotation: 7"), 14, ErrValue, "0..6"},
		{"bad mode", r("mode: encrypted", "mode: secret"), 15, ErrValue, "secret"},
		{"short key", r("key: 8f95f09245765f80256934e50c66207f", "key: 8f95f092"), 16, ErrValue, "16 bytes"},
		{"key not hex", r("key: 8f95f09245765f80256934e50c66207f", "key: hello"), 16, ErrValue, "hex"},
		{"key in plaintext", r("mode: encrypted", "mode: plaintext"), 16, ErrValue, "only used by mode encrypted"},
		{"server id bytes", r("server_id: 0a01}", "server_id: 0a0101}"), 19, ErrValue, "3 bytes"},
		{"server id twice", r(`server_id: "0x0a02"`, "server_id: 0a01"), 20, ErrDuplicate, "line 19"},
		{"server id not hex", r("server_id: 0a01}", "server_id: zz}"), 19, ErrValue, "hex"},
		{"server id without quic", r("    quic:\n      server_id_len: 2\n      cid_len: 8\n      config_rotation: 1\n      mode: encrypted\n      key: 8f95f09245765f80256934e50c66207f\n", ""), 13, ErrValue, "only used with quic"},
		{"unknown quic field", r("      cid_len: 8\n", "      cid_len: 8\n      cid_length: 8\n"), 14, ErrUnknownField, "cid_length"},
		{"previous codepoint twice", r("    health:", "      previous: [{cid_len: 9, config_rotation: 1}]\n    health:"), 17, ErrDuplicate, "line 14"},
		{"previous bad key", r("    health:", "      previous:\n        - {cid_len: 9, config_rotation: 2}\n        - {cid_len: 9, config_rotation: 3, mode: encrypted, key: 0102}\n    health:"), 19, ErrValue, "16 bytes"},
		{"previous cid too short", r("    health:", "      previous: [{cid_len: 4, config_rotation: 2}]\n    health:"), 17, ErrValue, "cid_len 4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("q.yaml", []byte(tt.yaml))
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not ConfigErrors", err)
			}
			for _, fe := range ce {
				if errors.Is(fe, tt.reason) && strings.Contains(fe.Error(), tt.text) {
					if fe.Line != tt.line || !strings.HasPrefix(fe.Error(), "q.yaml:") {
						t.Errorf("line %d, want %d: %v", fe.Line, tt.line, fe)
					}
					return
				}
			}
			t.Fatalf("no %v error containing %q in:\n%v", tt.reason, tt.text, err)
		})
	}
}
