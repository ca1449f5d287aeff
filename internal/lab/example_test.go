package lab_test

import (
	"context"
	"fmt"
	"time"

	"github.com/xlb-dev/xlb/internal/lab"
)

// Build a one-armed topology with two backends and ask each backend, by its own address,
// for its name from inside the client namespace. It needs root, so it has no Output
// check (TestOneArm runs the same steps); in a test use lab.newNet(t, cfg), which skips
// without root and closes the net in t.Cleanup. It prints "b0 3" and "b1 3".
func Example() {
	n, err := lab.Build(lab.Config{Kind: lab.OneArm, Backends: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	c := n.Client.HTTPClient(lab.ClientOptions{KeepAlive: true})
	for _, b := range n.Backends {
		t := lab.Spread(context.Background(), c, "http://"+b.Addr().String()+"/", 3, 5*time.Second)
		fmt.Println(b.Name, t.ByBackend[b.Name])
	}
}
