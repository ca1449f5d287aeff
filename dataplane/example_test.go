package dataplane_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/sched"
)

// webService is a dr service on 198.18.0.100:80/tcp with two backends on interface 2.
func webService() dataplane.ServiceSpec {
	backends := []sched.Backend{
		{ID: 1, Name: "198.18.0.11:80", Weight: 1, Up: true},
		{ID: 2, Name: "198.18.0.12:80", Weight: 1, Up: true},
	}
	sv, err := sched.NewService(sched.ServiceConfig{Index: 0, Strategy: sched.Maglev}, backends)
	if err != nil {
		log.Fatal(err)
	}
	lbMAC := [6]byte{2, 0, 0, 0, 0, 2}
	return dataplane.ServiceSpec{
		Name: "web", VIP: netip.MustParseAddr("198.18.0.100"), Port: 80, Proto: 6,
		Method: dataplane.MethodDR, Sched: sv,
		Targets: []dataplane.Target{ // parallel to the backends above
			{Addr: netip.MustParseAddr("198.18.0.11"),
				Hop: dataplane.NextHop{IfIndex: 2, SrcMAC: lbMAC, DstMAC: [6]byte{2, 0, 0, 0, 1, 1}, MTU: 1500}},
			{Addr: netip.MustParseAddr("198.18.0.12"),
				Hop: dataplane.NextHop{IfIndex: 2, SrcMAC: lbMAC, DstMAC: [6]byte{2, 0, 0, 0, 1, 2}, MTU: 1500}},
		},
	}
}

// Build a snapshot and ask which service a packet belongs to.
func ExampleNewSnapshot() {
	snap, err := dataplane.NewSnapshot([]dataplane.ServiceSpec{webService()}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(snap.LookupService(netip.MustParseAddr("198.18.0.100"), 80, 6))
	fmt.Println(snap.LookupService(netip.MustParseAddr("198.18.0.100"), 443, 6))
	// Output:
	// web true
	//  false
}

// Run a frame through the forwarding engine, without sockets: the verdict is the egress
// interface, and for dr the frame now carries the chosen backend's MAC.
func ExampleEngine_Process() {
	snap, err := dataplane.NewSnapshot([]dataplane.ServiceSpec{webService()}, nil)
	if err != nil {
		log.Fatal(err)
	}
	engine, err := dataplane.NewEngine(0, 1024)
	if err != nil {
		log.Fatal(err)
	}
	// A TCP SYN from 198.18.0.1:40000 to the VIP, 256 bytes into a 2048-byte frame.
	buf := make([]byte, 2048)
	pkt := buf[256 : 256+54]
	copy(pkt[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(pkt[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	copy(ip[12:16], []byte{198, 18, 0, 1})
	copy(ip[16:20], []byte{198, 18, 0, 100})
	tcp := pkt[34:54]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[12], tcp[13] = 5<<4, 0x02

	frames := []dataplane.Frame{{Buf: buf, Off: 256, Len: 54, In: 2}}
	engine.Process(snap, frames, 1)
	f := frames[0]
	fmt.Printf("out interface %d, to MAC %x\n", f.Out, buf[f.Off:f.Off+6])
	c := engine.Counters()
	fmt.Println("rx", c.RxPackets, "new flows", c.ConnMisses, "dropped", c.Dropped())
	// Output:
	// out interface 2, to MAC 020000000102
	// rx 1 new flows 1 dropped 0
}

// Run the data path on an interface (needs root and an XDP-capable kernel): New attaches
// the XDP program and opens the sockets, Publish hands over the forwarding state, Start
// runs the pinned workers, Close drains them and detaches.
func ExampleNew() {
	dp, err := dataplane.New(dataplane.Config{
		Interfaces: []dataplane.InterfaceConfig{{Name: "eth0", XDPMode: "auto", ZeroCopy: "auto"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer dp.Close()
	// Control resolves the backends' next hops from the kernel's tables.
	svc := webService()
	for i := range svc.Targets {
		hop, err := dataplane.ResolveNextHop(context.Background(), svc.Targets[i].Addr)
		if err != nil {
			log.Fatal(err)
		}
		svc.Targets[i].Hop = hop
	}
	snap, err := dataplane.NewSnapshot([]dataplane.ServiceSpec{svc}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := dp.Publish(snap); err != nil {
		log.Fatal(err)
	}
	if err := dp.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	total := dp.Total()
	fmt.Println(total.RxPackets, total.TxPackets)
}

// Capture the frames a running data path forwards for one service, as received, as sent and
// as dropped (needs a Dataplane made by New, so root).
func ExampleDataplane_StartCapture() {
	var dp *dataplane.Dataplane // from dataplane.New, published and started
	if dp == nil {
		return
	}
	c, err := dp.StartCapture(dataplane.CaptureOptions{Filter: dataplane.CaptureFilter{Service: "web"}, Snaplen: 128})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for range 10 { // in a real reader: until done, with a short sleep between reads
		c.Read(func(r *dataplane.CaptureRecord) {
			fmt.Println(r.Time.Format(time.RFC3339Nano), r.Dir, r.Ifindex, r.WireLen, r.Reason)
		})
	}
	fmt.Printf("%+v\n", c.Stats())
}

// A service's policy is checked before it reaches the XDP program: a prefix may be
// allowed or denied, not both (the lists are matched together, the longest prefix wins).
func ExampleCheckPolicy() {
	p := dataplane.Policy{
		Allow:          []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
		Deny:           []netip.Prefix{netip.MustParsePrefix("198.18.5.0/24")},
		SourceNewFlows: dataplane.Rate{PerSecond: 100, Burst: 200},
	}
	fmt.Println(dataplane.CheckPolicy(&p))
	p.Deny = append(p.Deny, netip.MustParsePrefix("198.18.0.0/15"))
	fmt.Println(errors.Is(dataplane.CheckPolicy(&p), dataplane.ErrBadPolicy))
	// Output:
	// <nil>
	// true
}
