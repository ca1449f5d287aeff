package sched

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// TestHashEncoding checks Hash against the documented encoding built independently.
func TestHashEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		var k Key
		for i := range k.Src {
			k.Src[i], k.Dst[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		k.SrcPort, k.DstPort, k.Proto, k.V6 = uint16(rng.Uint32()), uint16(rng.Uint32()), byte(rng.Uint32()), rng.IntN(2) == 1
		var buf bytes.Buffer
		buf.Write(k.Src[:])
		buf.Write(k.Dst[:])
		binary.Write(&buf, binary.BigEndian, k.SrcPort)
		binary.Write(&buf, binary.BigEndian, k.DstPort)
		buf.WriteByte(k.Proto)
		if k.V6 {
			buf.WriteByte(1)
		} else {
			buf.WriteByte(0)
		}
		if got, want := Hash(&k), xxhash.Sum64(buf.Bytes()); got != want {
			t.Fatalf("Hash(%+v) = %x, want %x", k, got, want)
		}
		if got, want := HashSource(&k), xxhash.Sum64(k.Src[:]); got != want {
			t.Fatalf("HashSource = %x, want %x", got, want)
		}
	}
}

func TestHashDistinguishes(t *testing.T) {
	base := flowKey(5)
	variants := []func(*Key){
		func(k *Key) { k.V6 = true },
		func(k *Key) { k.Proto = protoUDP },
		func(k *Key) { k.SrcPort, k.DstPort = k.DstPort, k.SrcPort },
		func(k *Key) { k.Src, k.Dst = k.Dst, k.Src },
	}
	for i, f := range variants {
		k := base
		f(&k)
		if Hash(&k) == Hash(&base) {
			t.Errorf("variant %d hashes like the base key", i)
		}
	}
}
