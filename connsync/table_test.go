package connsync

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xlb-dev/xlb/sched"
)

// Readers racing the writer see whole entries, never a mix of two (the sequence lock).
func TestTableConcurrent(t *testing.T) {
	tab := NewTable(64, sched.Timeouts{})
	var stop atomic.Bool
	var wg sync.WaitGroup
	var found atomic.Uint64
	for range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := testRecord(i % 512).Key
				var r Record
				if !tab.Lookup(&k, &r) {
					continue
				}
				found.Add(1)
				// The writer keeps Backend[0:2] = port, BackendPort = port, and Backend[2]
				// the same as Backend[3] (a version): a torn read breaks one of them.
				if r.Key != k || r.BackendPort != k.SrcPort || uint16(r.Backend[0])<<8|uint16(r.Backend[1]) != k.SrcPort ||
					r.Backend[2] != r.Backend[3] {
					t.Errorf("torn read: %+v for key %+v", r, k)
					return
				}
			}
		})
	}
	for v := range 300000 {
		r := testRecord(v % 512)
		p := r.Key.SrcPort
		r.Backend = [16]byte{byte(p >> 8), byte(p), byte(v), byte(v)}
		r.BackendPort = p
		tab.Put(&r)
	}
	stop.Store(true)
	wg.Wait()
	if found.Load() == 0 {
		t.Fatal("no lookup found an entry: the test proves nothing")
	}
}

func TestTableExpiry(t *testing.T) {
	tab := NewTable(64, sched.Timeouts{TCPEstablished: 1}) // rounds up to one tick
	r := testRecord(1)
	tab.Put(&r)
	tab.start = tab.start.Add(-1e9) // a second later
	var got Record
	if tab.Lookup(&r.Key, &got) {
		t.Fatal("an expired entry was returned")
	}
	r.State = sched.ConnUDP // 300s by default
	tab.Put(&r)
	if !tab.Lookup(&r.Key, &got) || got != r {
		t.Fatalf("refreshed entry: %+v", got)
	}
}
