package config_test

import (
	"errors"
	"fmt"

	"github.com/xlb-dev/xlb/config"
)

// A configuration error names the file, the line and the reason, and
// Validate reports every error, not only the first.
func ExampleParse() {
	_, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.19.0.10
    port: 80
    scheduler: fastest
    backends:
      - {address: 198.18.0.11, weight: 100000}
`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, config.ErrValue))
	// Output:
	// xlb.yaml:6: services[0].scheduler: bad value: unknown scheduler "fastest" (want maglev, rr, wrr, random, source-hash, least-conn, least-load or flow-hash)
	// xlb.yaml:8: services[0].backends[0].weight: bad value: weight 100000 above 65535
	// true
}

// A service group listens on every VIP with every port or range; persistence is given in
// the VIP's family (the prefix defaults to /32 for IPv4, /64 for IPv6).
func ExampleService_Frontends() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vips: [198.19.0.10, 198.19.0.11]
    ports: [80, 443, 8000-8099]
    persistence: {timeout: 10m}
    backends: [{address: 198.18.0.11}]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	s := &cfg.Services[0]
	vips, ports := s.Frontends()
	fmt.Println(vips, ports, s.IsGroup())
	fmt.Printf("%+v\n", s.SchedPersistence())
	// Output:
	// [198.19.0.10 198.19.0.11] [80 443 8000-8099] true
	// {Timeout:10m0s Prefix4:32 Prefix6:0}
}
