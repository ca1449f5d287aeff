package xdpprog_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"

	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
)

// Example attaches the steering program to an interface, steers one TCP
// service and the replies of one NAT backend, and registers the AF_XDP socket
// of queue 0. It needs root and an interface, so it is compiled but not run.
func Example() {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		log.Fatal(err)
	}
	prog, err := xdpprog.Attach(ifi.Index, xdpprog.Options{Mode: xdpprog.ModeAuto})
	if errors.Is(err, xdpprog.ErrAlreadyAttached) {
		log.Fatal("another XDP program is attached; set Options.Replace to take over")
	}
	if err != nil {
		log.Fatal(err)
	}
	defer prog.Close() // detaches: nothing stays behind
	fmt.Println("attached in", prog.Mode(), "mode")

	vip := netip.MustParseAddr("198.19.0.10")
	if err := prog.AddService(xdpprog.Key{Addr: vip, Port: 80, Proto: 6}); err != nil {
		log.Fatal(err)
	}
	backend := netip.MustParseAddr("198.18.0.11")
	if err := prog.AddNATBackend(xdpprog.Key{Addr: backend, Port: 8080, Proto: 6}); err != nil {
		log.Fatal(err)
	}
	var socketFD int // xsk.Socket.FD() of the socket bound to queue 0
	if err := prog.RegisterSocket(0, socketFD); err != nil {
		log.Fatal(err)
	}
	c, err := prog.Counters()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("redirected:", c.Redirected(), "passed:", c.Passed())
}
