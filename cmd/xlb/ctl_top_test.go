package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/control"
)

func topReport(at time.Time, web, api [2]uint64) control.TrafficReport {
	be := func(id uint32, name string, p uint64, active uint64) control.BackendTraffic {
		return control.BackendTraffic{ID: id, Name: name, Traffic: control.TrafficStatus{Packets: p, Bytes: 100 * p, NewFlows: p / 10}, Active: active}
	}
	return control.TrafficReport{Time: at, Services: []control.ServiceTraffic{
		{Name: "web", Traffic: control.TrafficStatus{Packets: web[0] + web[1], Bytes: 100 * (web[0] + web[1]), NewFlows: (web[0] + web[1]) / 10},
			Active: 7, Backends: []control.BackendTraffic{be(1, "w0", web[0], 3), be(2, "w1", web[1], 4)}},
		{Name: "api", Traffic: control.TrafficStatus{Packets: api[0] + api[1], Bytes: 100 * (api[0] + api[1])},
			Active: 1, Backends: []control.BackendTraffic{be(3, "a0", api[0], 1), be(4, "a1", api[1], 0)}},
	}}
}

// TestTopRows: rates are deltas over the reports' interval; services sort by the key with
// their backends under them, sorted the same way; a counter that went back counts 0.
func TestTopRows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	prev := topReport(t0, [2]uint64{1000, 1000}, [2]uint64{0, 500})
	cur := topReport(t0.Add(2*time.Second), [2]uint64{1200, 1600}, [2]uint64{4000, 100})
	rows := topRows(prev, cur, "pps", "")
	var got []string
	for _, r := range rows {
		got = append(got, r.Service+"/"+r.Backend)
	}
	if want := "api/ api/a0 api/a1 web/ web/w1 web/w0"; strings.Join(got, " ") != want {
		t.Fatalf("order %q, want %q", strings.Join(got, " "), want)
	}
	if r := rows[1]; r.PPS != 2000 || r.BPS != 8*100*2000 || r.FPS != 200 || r.Active != 1 {
		t.Errorf("a0: %+v", r)
	}
	if r := rows[2]; r.PPS != 0 {
		t.Errorf("a1 went back from 500 to 100: %+v, want rate 0", r)
	}
	if r := rows[3]; r.PPS != 400 || r.Active != 7 {
		t.Errorf("web: %+v", r)
	}
	byName := topRows(prev, cur, "name", "web")
	if len(byName) != 3 || byName[1].Backend != "w0" {
		t.Errorf("--sort name --service web: %+v", byName)
	}
	var plain, term strings.Builder
	if err := printTop(&plain, rows[:2], cur.Time, "pps", false); err != nil {
		t.Fatal(err)
	}
	if want := "1970-01-01T00:16:42Z api - 1800 1440000 0 1\n1970-01-01T00:16:42Z api a0 2000 1600000 200 1\n"; plain.String() != want {
		t.Errorf("plain lines:\n%s\nwant:\n%s", plain.String(), want)
	}
	if err := printTop(&term, rows, cur.Time, "pps", true); err != nil {
		t.Fatal(err)
	}
	if s := term.String(); !strings.HasPrefix(s, "\x1b[H\x1b[2J") || !strings.Contains(s, "1.60M") || !strings.Contains(s, "sorted by pps") {
		t.Errorf("terminal screen:\n%q", s)
	}
}

// TestTopKeys: on a terminal (a pseudo-terminal here), top reads single key presses without
// waiting for a newline, and puts the terminal back as it was.
func TestTopKeys(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	keys, restore := topKeys(slave)
	if keys == nil {
		t.Fatal("topKeys refused a terminal")
	}
	if _, err := master.Write([]byte("b")); err != nil { // no newline: raw input
		t.Fatal(err)
	}
	select {
	case k := <-keys:
		if k != 'b' || topKeySorts[k] != "bps" {
			t.Errorf("key %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no key press delivered")
	}
	restore()
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag {
		t.Errorf("terminal flags %x after restore, were %x", after.Lflag, before.Lflag)
	}
	if isTerminal(&strings.Builder{}) || !isTerminal(slave) {
		t.Error("isTerminal: wrong about a strings.Builder or a pseudo-terminal")
	}
}
