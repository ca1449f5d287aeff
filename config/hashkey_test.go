package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/sched"
)

// TestHashKey: hash_key is 32 hex digits; anything else is refused with its line.
func TestHashKey(t *testing.T) {
	const svc = `interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends: [{address: 198.18.0.11}]
`
	c, err := Parse("x.yaml", []byte("hash_key: 00112233445566778899AABBCCDDEEFF\n"+svc))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sched.ParseHashKey("00112233445566778899aabbccddeeff")
	if c.HashKey != want {
		t.Errorf("hash_key %v, want %v", c.HashKey, want)
	}
	if c, err := Parse("x.yaml", []byte(svc)); err != nil || !c.HashKey.IsDefault() {
		t.Errorf("unset: %v, %v", c.HashKey, err)
	}
	_, err = Parse("x.yaml", []byte(svc+"hash_key: 0011\n"))
	if !errors.Is(err, sched.ErrHashKey) || !strings.Contains(err.Error(), "x.yaml:7") || !strings.Contains(err.Error(), "hash_key") {
		t.Errorf("short key: %v", err)
	}
}
