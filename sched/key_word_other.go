//go:build !amd64 && !arm64

package sched

// tailWord returns the key's fields after the addresses packed in one word, plus Dst's last
// two bytes as key_word.go's load has them (where an unaligned load may fault, field by
// field).
func (k *Key) tailWord() uint64 {
	return k.tail() | uint64(k.Dst[14])<<48 | uint64(k.Dst[15])<<56
}
