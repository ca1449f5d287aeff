package config_test

import (
	"fmt"

	"github.com/xlb-dev/xlb/config"
)

// A runtime change (xlb ctl add-backend) is decoded like the file and validated in a copy
// of the running configuration: a mistake gets the file's reason, naming the request.
func ExampleConfig_WithBackend() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    backends:
      - {address: 198.18.0.11}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, doc := range []string{`{"address": "198.18.0.12", "weight": 50}`, `{"address": "198.18.0.13", "weight": 70000}`} {
		b, err := config.DecodeBackend("request", []byte(doc), nil)
		if err != nil {
			fmt.Println(err)
			continue
		}
		n, err := cfg.WithBackend("web", "", b, "request")
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(len(n.Services[0].Backends), "backends; the running configuration keeps", len(cfg.Services[0].Backends))
	}
	// Output:
	// 2 backends; the running configuration keeps 1
	// request:1: weight: bad value: weight 70000 above 65535
}

// Marshal writes a configuration as YAML that Parse reads back (xlb ctl save).
func ExampleMarshal() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - {name: dns, vip: 198.19.0.10, port: 53, protocol: udp, backends: [{address: 198.18.0.11}], health: {kind: none}}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	y, err := config.Marshal(cfg, "saved")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(y))
	// Output:
	// # saved
	// interfaces:
	//   - name: eth0
	//     xdp_mode: auto
	//     zero_copy: auto
	// services:
	//   - name: dns
	//     vip: 198.19.0.10
	//     port: 53
	//     protocol: udp
	//     method: dr
	//     backends:
	//       - name: 198.18.0.11
	//         address: 198.18.0.11
	//         weight: 100
	//     health:
	//       kind: none
	//       interval: 2s
	//       timeout: 1s
	//       rise: 2
	//       fall: 3
	// api:
	//   listen: 127.0.0.1:9440
	//   socket: /run/xlb/xlb.sock
}
