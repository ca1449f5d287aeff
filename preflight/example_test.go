package preflight_test

import (
	"fmt"
	"os"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/preflight"
)

// Run checks the host and an interface; the report prints one line per
// check and says whether the host is fit.
func Example() {
	rep := preflight.Run(preflight.Options{
		Dataplane: dataplane.Config{Interfaces: []dataplane.InterfaceConfig{{Name: "eth0"}}},
		NoProbe:   true, // no XDP attach, no AF_XDP bind: no privileges needed
	})
	if !rep.Fit() {
		rep.WriteTo(os.Stdout)
	}
}

// A Report is a list of results; WriteTo prints them and the verdict.
func ExampleReport_WriteTo() {
	rep := preflight.Report{
		{Check: "kernel", Status: preflight.Pass, Detail: "6.18.0 (>= 5.10)"},
		{Check: "eth0 zero-copy", Status: preflight.Warn, Detail: "copy mode only (driver veth)", Fix: "a NIC with AF_XDP zero copy"},
	}
	rep.WriteTo(os.Stdout)
	fmt.Println("fit:", rep.Fit())
	// Output:
	// pass  kernel                 6.18.0 (>= 5.10)
	// warn  eth0 zero-copy         copy mode only (driver veth); fix: a NIC with AF_XDP zero copy
	// fit: 1 pass, 1 warn, 0 fail
	// fit: true
}
