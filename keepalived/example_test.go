package keepalived_test

import (
	"fmt"
	"os"

	"github.com/xlb-dev/xlb/keepalived"
)

// Parse reads keepalived's grammar; Translate writes xlb's YAML and a note for every line it
// left out or approximated.
func Example() {
	conf := `
virtual_server 198.18.0.100 80 {
    delay_loop 5
    lb_algo wlc
    lb_kind DR
    persistence_timeout 60     ! a client's connections on one server
    real_server 198.18.0.11 80 {
        weight 2
        TCP_CHECK { connect_timeout 2 }
    }
}`
	nodes, err := keepalived.Parse("keepalived.conf", []byte(conf))
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := keepalived.Translate(nodes, keepalived.Options{Interface: "eth1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(res.YAML)
	for _, n := range res.Notes {
		fmt.Println(n)
	}
	// Output:
	// # xlb configuration translated from keepalived.conf by `xlb import keepalived`.
	// # What was not translated, or only approximately, was printed on standard error.
	// interfaces:
	//   - name: eth1
	// services:
	//   - name: tcp-198.18.0.100-80
	//     vip: 198.18.0.100
	//     port: 80
	//     protocol: tcp
	//     method: dr
	//     scheduler: least-conn
	//     backends:
	//       - address: 198.18.0.11
	//         weight: 2
	//     health:
	//       kind: tcp
	//       interval: 5s
	//       timeout: 2s
	//       rise: 1
	//       fall: 2
	//     persistence:
	//       timeout: 60s
	// keepalived.conf: interfaces: approximated: keepalived.conf does not say where the VIPs' traffic arrives: wrote interface eth1, change it if that is wrong
}

// A grammar error names the file and line, and nothing is translated.
func ExampleParse_syntaxError() {
	_, err := keepalived.Parse("keepalived.conf", []byte("vrrp_instance VI_1 {\n  state MASTER\n"))
	fmt.Println(err)
	// Output: keepalived.conf:1: missing }: the block of vrrp_instance is not closed before the end of the file
}
