package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlb-dev/xlb/control"
)

func printBGP(tw *tabwriter.Writer, st control.BGPStatus) {
	fmt.Fprintf(tw, "local AS\t%d\n", st.LocalAS)
	fmt.Fprintf(tw, "router id\t%s\n", st.RouterID)
	fmt.Fprintf(tw, "forwarding\t%v\n", st.Forwarding)
	fmt.Fprintf(tw, "drained\t%v\n", st.Drained)
	fmt.Fprintf(tw, "announced\t%s\n", strings.Join(st.Announced, " "))
	if st.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", st.Error)
	}
	fmt.Fprintln(tw, "NEIGHBOR\tAS\tSTATE\tSINCE\tHOLD\tADVERTISED\tRECEIVED")
	for _, n := range st.Neighbors {
		since := ""
		if !n.Since.IsZero() {
			since = time.Since(n.Since).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\t%d\t%d\n", n.Address, n.AS, n.State, since, n.HoldTime, n.Advertised, n.Received)
	}
}
