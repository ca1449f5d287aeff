package connsync_test

import (
	"fmt"
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/sched"
)

// A message sealed with the cluster's key opens with it, and not with another.
func Example() {
	key := []byte("a 32-byte key shared by the LBs!")
	s, _ := connsync.NewSealer(key)
	rec := connsync.Record{
		Key:     sched.Key{Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 19, 0, 10}, SrcPort: 40000, DstPort: 80, Proto: 6},
		Backend: [16]byte{198, 18, 0, 11}, State: sched.ConnEstablished,
	}
	h := connsync.Header{Sender: 1, Seq: 1, Sent: time.Now().UnixNano()}
	msg := s.Seal(make([]byte, connsync.Size(1)), &h, []connsync.Record{rec})

	var got connsync.Header
	raw, err := s.Open(msg, connsync.DefaultMaxMessage, &got)
	fmt.Println(len(msg), got.Count, err)
	var r connsync.Record
	_ = connsync.ParseRecord(raw, 0, &r)
	fmt.Println(r.State, r.Backend[:4])

	other, _ := connsync.NewSealer([]byte("somebody else's key, 32 bytes.."))
	_, err = other.Open(msg, connsync.DefaultMaxMessage, &got)
	fmt.Println(err)
	// Output:
	// 136 1 <nil>
	// ESTABLISHED [198 18 0 11]
	// connsync: authentication failed
}

// A worker queues a record on its ring; on the peer, the receiver writes it to the table,
// where any worker finds the flow's backend.
func ExampleTable() {
	node, _ := connsync.New(connsync.Config{Key: []byte("a 32-byte key shared by the LBs!")})
	ring := node.Ring() // one per worker
	rec := connsync.Record{
		Key:     sched.Key{Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 19, 0, 10}, SrcPort: 40000, DstPort: 80, Proto: 6},
		Backend: [16]byte{198, 18, 0, 12}, State: sched.ConnEstablished,
	}
	fmt.Println(ring.Push(&rec))

	peer := connsync.NewTable(1024, sched.Timeouts{})
	peer.Put(&rec) // what the peer's receiver does with the message's records
	var got connsync.Record
	fmt.Println(peer.Lookup(&rec.Key, &got), got.Backend[:4])
	// Output:
	// true
	// true [198 18 0 12]
}
