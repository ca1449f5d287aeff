package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlb-dev/xlb/connsync"
	"github.com/xlb-dev/xlb/control"
)

func printSync(tw *tabwriter.Writer, st control.SyncStatus) {
	fmt.Fprintf(tw, "listen\t%s (sender id %s)\n", st.Listen, st.Sender)
	fmt.Fprintf(tw, "peers\t%s\n", strings.Join(st.Peers, " "))
	fmt.Fprintf(tw, "sent\t%d records in %d messages, %d bytes\n", st.SentRecords, st.SentMessages, st.SentBytes)
	fmt.Fprintf(tw, "sent by kind\t%s\n", kinds(st.SentKinds))
	fmt.Fprintf(tw, "received\t%d messages, %d records, %d applied, %d lost\n", st.Received, st.ReceivedRecords, st.Applied, st.Lost)
	fmt.Fprintf(tw, "applied by kind\t%s\n", kinds(st.AppliedKinds))
	fmt.Fprintf(tw, "lag\tlast %v, max %v\n", st.LagLast.Round(time.Microsecond), st.LagMax.Round(time.Microsecond))
	fmt.Fprintf(tw, "cpu\tsender %v, receiver %v\n", st.SenderCPU.Round(time.Millisecond), st.ReceiverCPU.Round(time.Millisecond))
	fmt.Fprintf(tw, "peer table\t%d/%d entries, %d evictions, %d hits, %d removed, %d template hits\n", st.Table.Entries,
		st.Table.Capacity, st.Table.Evictions, st.Table.Hits, st.Table.Removed, st.Table.TemplateHits)
	var drops []string
	for r, n := range st.Dropped {
		if n > 0 {
			drops = append(drops, fmt.Sprintf("%s=%d", r, n))
		}
	}
	sort.Strings(drops)
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	fmt.Fprintf(tw, "dropped\t%s\n", strings.Join(drops, " "))
}

// kinds formats per-kind record counts in connsync's kind order: "conn=5 remove=1 template=2".
func kinds(m map[string]uint64) string {
	var b []string
	for k := range connsync.NumKinds {
		b = append(b, fmt.Sprintf("%s=%d", k, m[k.String()]))
	}
	return strings.Join(b, " ")
}
