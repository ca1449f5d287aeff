package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
)

// Runtime changes take the file's notation (YAML or JSON) and its checks; a refused change
// leaves everything as it was, an accepted one is published at once and kept until the next
// reload (ipvsadm -a, -e).
func ExampleController_AddBackend() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - {name: web, vip: 198.19.0.10, port: 80, backends: [{name: a, address: 198.18.0.11}], health: {kind: none}}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := control.New(cfg, control.Options{Publisher: printer{}, Resolver: staticHops{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("add b:")
	if err := c.AddBackend("web", []byte("{name: b, address: 198.18.0.12, weight: 50}")); err != nil {
		fmt.Println(err)
	}
	fmt.Println("add c with a bad weight:")
	if err := c.AddBackend("web", []byte("{name: c, address: 198.18.0.13, weight: -1}")); err != nil {
		fmt.Println(err)
	}
	fmt.Println(c.RuntimeChanges())
	// Output:
	// web a id=1 weight=100 up=true
	// add b:
	// web a id=1 weight=100 up=true
	// web b id=2 weight=50 up=true
	// add c with a bad weight:
	// request:1: weight: bad value: want an integer 0..4294967295, got -1
	// [add backend 198.18.0.12 to web]
}
