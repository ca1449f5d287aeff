package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlb-dev/xlb/control"
)

func printVRRP(tw *tabwriter.Writer, st control.VRRPStatus) {
	if len(st.Instances) > 0 {
		for i, in := range st.Instances {
			if i > 0 {
				fmt.Fprintln(tw)
			}
			fmt.Fprintf(tw, "instance\t%s\n", in.Name)
			printVRRP(tw, in)
		}
		return
	}
	vips := make([]string, len(st.VIPs))
	for i, v := range st.VIPs {
		vips[i] = v.String()
	}
	fmt.Fprintf(tw, "virtual router\t%d on %s, priority %d\n", st.VRID, st.Interface, st.Priority)
	fmt.Fprintf(tw, "vips\t%s\n", strings.Join(vips, " "))
	state := st.State.String()
	if st.Demoted {
		state += " (demoted)"
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "forwarding\t%v\n", st.Forwarding)
	fmt.Fprintf(tw, "source\t%s\n", addrOrNone(st.Source.IsValid(), st.Source.String()))
	master := addrOrNone(st.Master.IsValid(), fmt.Sprintf("%s (priority %d)", st.Master, st.MasterPriority))
	fmt.Fprintf(tw, "master\t%s\n", master)
	if st.MasterAdvertInterval > 0 {
		fmt.Fprintf(tw, "master advert interval\t%s\n", st.MasterAdvertInterval)
	}
	if st.MasterDownInterval > 0 {
		fmt.Fprintf(tw, "master down interval\t%s\n", st.MasterDownInterval)
	}
	last := ""
	if !st.LastTransition.IsZero() {
		last = fmt.Sprintf(", last %s ago", time.Since(st.LastTransition).Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "transitions\t%d%s\n", st.Transitions, last)
	fmt.Fprintf(tw, "adverts\t%d sent, %d received, %d send errors, %d resigns received\n",
		st.AdvertsSent, st.AdvertsReceived, st.SendErrors, st.ResignsReceived)
	fmt.Fprintf(tw, "announcements\t%d\n", st.Announcements)
	if st.HookErrors > 0 {
		fmt.Fprintf(tw, "hook errors\t%d (see the log)\n", st.HookErrors)
	}
	if st.AddrMismatches > 0 {
		fmt.Fprintf(tw, "vip list mismatches\t%d\n", st.AddrMismatches)
	}
	if drops := st.DropCounts(); len(drops) > 0 {
		reasons := make([]string, 0, len(drops))
		for r, n := range drops {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
		}
		sort.Strings(reasons)
		fmt.Fprintf(tw, "drops\t%s\n", strings.Join(reasons, " "))
	}
	if st.SplitBrain || st.SplitBrainEvents > 0 {
		fmt.Fprintf(tw, "split brain\t%v (%d events, last peer %s)\n", st.SplitBrain, st.SplitBrainEvents, st.SplitBrainPeer)
	}
}

func addrOrNone(ok bool, s string) string {
	if !ok {
		return "none"
	}
	return s
}
