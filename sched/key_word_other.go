//go:build !amd64 && !arm64

package sched

// tailWord returns the key's fields after the addresses packed in one word (tail), field by
// field where an unaligned load may fault. It differs from key_word.go's word (which also
// holds Dst's last two bytes, compared with Dst anyway), but equal only compares two keys'
// words on one machine.
func (k *Key) tailWord() uint64 { return k.tail() }
