package hugepage

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// anonHuge returns the process's AnonHugePages in kB.
func anonHuge(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skipf("no /proc/self/smaps_rollup: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "AnonHugePages:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Skip("no AnonHugePages line in smaps_rollup")
	return 0
}

func TestAdvise(t *testing.T) {
	for _, s := range [][]int64{nil, make([]int64, 1), make([]int64, 1000)} {
		if err := Advise(s); err != nil {
			t.Errorf("len %d: %v", len(s), err)
		}
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || !bytes.Contains(mode, []byte("[madvise]")) && !bytes.Contains(mode, []byte("[always]")) {
		t.Skipf("transparent huge pages not available for madvise (%q, %v)", mode, err)
	}
	before := anonHuge(t)
	big := make([]uint64, 64<<20/8)
	if err := Advise(big); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(big); i += 512 {
		big[i] = uint64(i)
	}
	after := anonHuge(t)
	t.Logf("AnonHugePages %d kB -> %d kB", before, after)
	if after-before < 32<<10 {
		t.Errorf("only %d kB of a 64 MiB advised slice in huge pages", after-before)
	}
	_ = big[len(big)-1]
}

func TestAlloc(t *testing.T) {
	type rec struct{ a, b uint64 }
	if _, _, err := Alloc[rec](0); err == nil {
		t.Error("Alloc of 0 elements accepted")
	}
	s, free, err := Alloc[rec](3 << 20) // 96 MiB
	if err != nil {
		t.Fatal(err)
	}
	before := anonHuge(t)
	for i := 0; i < len(s); i += 256 {
		if s[i] != (rec{}) {
			t.Fatalf("element %d not zero", i)
		}
		s[i].a = uint64(i)
	}
	after := anonHuge(t)
	t.Logf("AnonHugePages %d kB -> %d kB", before, after)
	mode, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if (bytes.Contains(mode, []byte("[madvise]")) || bytes.Contains(mode, []byte("[always]"))) && after-before < 48<<10 {
		t.Errorf("only %d kB of a 96 MiB mapping in huge pages", after-before)
	}
	if err := free(); err != nil {
		t.Fatal(err)
	}
}

// TestAllocAligned: a mapping of a few MiB whose size is not a multiple of 2 MiB is on huge
// pages from its first byte to its last (an unaligned one had up to 2 MiB at each end on
// small pages: a 7 MiB table had only 4 MiB on huge pages).
func TestAllocAligned(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || !bytes.Contains(mode, []byte("[madvise]")) && !bytes.Contains(mode, []byte("[always]")) {
		t.Skipf("transparent huge pages not available for madvise (%q, %v)", mode, err)
	}
	const n = 7<<20/64 + 3 // a little over 7 MiB of 64-byte records
	type rec [8]uint64
	s, free, err := Alloc[rec](n)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := free(); err != nil {
			t.Error(err)
		}
	}()
	if a := uintptr(unsafe.Pointer(&s[0])); a%size != 0 {
		t.Fatalf("slice starts at %#x, not on a huge-page boundary", a)
	}
	before := anonHuge(t)
	for i := 0; i < len(s); i += 64 {
		s[i][0] = uint64(i)
	}
	s[len(s)-1][7] = 1
	after := anonHuge(t)
	t.Logf("AnonHugePages %d kB -> %d kB", before, after)
	if got, want := after-before, 8<<10; got < want {
		t.Errorf("%d kB of a %d kB slice in huge pages, want %d kB (all of it, rounded up)", got, n*64>>10, want)
	}
}
