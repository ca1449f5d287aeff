package main

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/sched"
)

// TestListLayout pins the ipvsadm -Ln layouts: column widths as ipvsadm prints them.
func TestListLayout(t *testing.T) {
	l := control.Listing{Capacity: 2097152, Services: []control.ListService{{
		Name: "web", Protocol: config.TCP, Address: "198.18.0.100:80", Scheduler: sched.Maglev,
		Stats: control.ListStats{Conns: 12, InPkts: 123456789, InBytes: 98765432109},
		Backends: []control.ListBackend{{Address: "198.18.0.11:80", Forward: "Route", Weight: 100, ActiveConn: 3, InActConn: 1,
			Stats: control.ListStats{Conns: 7, InPkts: 70, InBytes: 7000}}},
	}}}
	var b bytes.Buffer
	printList(&b, l, false, false)
	want := "xlb virtual server (connection tables: size=2097152)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  198.18.0.100:80 maglev\n" +
		"  -> 198.18.0.11:80               Route   100    3          1         \n"
	if b.String() != want {
		t.Errorf("list:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	printList(&b, l, true, false)
	want = "xlb virtual server (connection tables: size=2097152)\n" +
		"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  198.18.0.100:80                    12  123456K        0   98765M        0\n" +
		"  -> 198.18.0.11:80                      7       70        0     7000        0\n"
	if b.String() != want {
		t.Errorf("list --stats:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	printList(&b, l, false, true)
	if lines := strings.Split(b.String(), "\n"); !strings.Contains(lines[1], "     CPS    InPPS   OutPPS    InBPS   OutBPS") ||
		lines[4] != "  -> 198.18.0.11:80                      7       70        0     7000        0" {
		t.Errorf("list --rate:\n%s", b.String())
	}
}

func TestConnsLayout(t *testing.T) {
	l := dataplane.ConnListing{Conns: []dataplane.Conn{{Proto: 6, State: "ESTABLISHED", Expires: 14*time.Minute + 59*time.Second,
		Client: netip.MustParseAddrPort("198.18.0.1:40000"), VIP: netip.MustParseAddrPort("198.18.0.100:80"),
		Backend: netip.MustParseAddrPort("198.18.0.11:80")}}}
	var b bytes.Buffer
	printConns(&b, l)
	want := "xlb connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"TCP 14:59  ESTABLISHED 198.18.0.1:40000   198.18.0.100:80    198.18.0.11:80\n"
	if b.String() != want {
		t.Errorf("conns:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestLargeNum(t *testing.T) {
	for n, want := range map[uint64]string{0: "        0", 99_999_999: " 99999999", 100_000_000: "  100000K",
		5_000_000_000: "    5000M", 200_000_000_000: "     200G", 300_000_000_000_000: "     300T"} {
		if got := largeNum(n); got != want {
			t.Errorf("largeNum(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBackendFlag(t *testing.T) {
	for in, want := range map[string]map[string]any{
		"198.18.0.11":          {"address": "198.18.0.11"},
		"198.18.0.11:8080@50":  {"address": "198.18.0.11", "port": uint16(8080), "weight": uint64(50)},
		"[2001:2::11]:80":      {"address": "2001:2::11", "port": uint16(80)},
		"2001:2::11@7":         {"address": "2001:2::11", "weight": uint64(7)},
		"not-an-address:what?": {"address": "not-an-address:what?"},
	} {
		got, err := backendFlag(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("backendFlag(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := backendFlag("198.18.0.11@heavy"); err == nil {
		t.Error("a weight that is not a number was taken")
	}
}

func TestListRates(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := control.Listing{Time: t0, Services: []control.ListService{{Name: "web", Stats: control.ListStats{Conns: 10, InPkts: 100, InBytes: 1000},
		Backends: []control.ListBackend{{ID: 1, Stats: control.ListStats{Conns: 4, InPkts: 40, InBytes: 400}}}}}}
	b := control.Listing{Time: t0.Add(2 * time.Second), Services: []control.ListService{
		{Name: "web", Stats: control.ListStats{Conns: 30, InPkts: 300, InBytes: 5000},
			Backends: []control.ListBackend{{ID: 1, Stats: control.ListStats{Conns: 10, InPkts: 100, InBytes: 2400}},
				{ID: 2, Stats: control.ListStats{Conns: 6, InPkts: 8}}}},
		{Name: "new", Stats: control.ListStats{Conns: 99}}}}
	r := listRates(a, b)
	want := []control.ListStats{{Conns: 10, InPkts: 100, InBytes: 2000}, {Conns: 3, InPkts: 30, InBytes: 1000}, {Conns: 3, InPkts: 4}}
	got := []control.ListStats{r.Services[0].Stats, r.Services[0].Backends[0].Stats, r.Services[0].Backends[1].Stats}
	if !reflect.DeepEqual(got, want) || r.Services[1].Stats != (control.ListStats{}) {
		t.Fatalf("rates %+v, want %+v (a service new in the second sample: 0)", got, want)
	}
}
