package ipvs_test

import (
	"fmt"
	"strings"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/ipvs"
)

// The services of a configuration as ipvsadm-restore rules, and the notes on what differs.
func ExampleFromConfig() {
	cfg, err := config.Parse("xlb.yaml", []byte(`interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    method: dr
    scheduler: maglev
    backends: [{address: 198.18.0.11, weight: 200}, {address: 198.18.0.12}]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := ipvs.FromConfig(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(e.Text())
	fmt.Println(len(e.Notes), "notes")
	// Output:
	// -A -t 198.18.0.100:80 -s mh -b mh-port
	// -a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 200
	// -a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 100
	// 2 notes
}

// Check reads ipvsadm-restore input and names the first line ipvsadm would refuse.
func ExampleCheck() {
	err := ipvs.Check(strings.NewReader("-A -t 198.18.0.100:80 -s mh\n-a -t 198.18.0.100:80 -r 198.18.0.11 -g -w 70000\n"))
	fmt.Println(err)
	// Output: ipvs: not ipvsadm-restore input: line 2: -w "70000" (want 0..65535)
}
