package dataplane

import (
	"errors"
	"testing"

	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
)

// fakeMaps is an XDP program's steering maps that refuse the keys in fail.
type fakeMaps struct {
	svcs, nat map[xdpprog.Key]bool
	fail      map[xdpprog.Key]bool
}

var errMapFull = errors.New("map full")

func newFakeMaps() *fakeMaps {
	return &fakeMaps{svcs: map[xdpprog.Key]bool{}, nat: map[xdpprog.Key]bool{}, fail: map[xdpprog.Key]bool{}}
}

func (f *fakeMaps) set(m map[xdpprog.Key]bool, k xdpprog.Key, on bool) error {
	if f.fail[k] {
		return errMapFull
	}
	if on {
		m[k] = true
	} else {
		delete(m, k)
	}
	return nil
}

func (f *fakeMaps) AddService(k xdpprog.Key) error       { return f.set(f.svcs, k, true) }
func (f *fakeMaps) DeleteService(k xdpprog.Key) error    { return f.set(f.svcs, k, false) }
func (f *fakeMaps) AddNATBackend(k xdpprog.Key) error    { return f.set(f.nat, k, true) }
func (f *fakeMaps) DeleteNATBackend(k xdpprog.Key) error { return f.set(f.nat, k, false) }

// TestPublishRetriesFailedMapUpdates: a service or NAT key a program refused
// to add is added by the next Publish, and one it refused to delete is
// deleted by the next, instead of being recorded as done.
func TestPublishRetriesFailedMapUpdates(t *testing.T) {
	good, bad := newFakeMaps(), newFakeMaps()
	d := &Dataplane{ifaces: []*iface{{info: InterfaceInfo{Name: "eth0"}, maps: good}, {info: InterfaceInfo{Name: "eth1"}, maps: bad}},
		services: map[xdpprog.Key]bool{}, nat: map[xdpprog.Key]bool{}}
	snap := mustSnapshot(t, nil, spec(t, "web", 0, vip4, 80, MethodNAT, 2))
	svcKeys, natKeys := steeringKeys(snap)
	var svc, nat xdpprog.Key
	for k := range svcKeys {
		svc = k
	}
	for k := range natKeys {
		nat = k
	}
	bad.fail[svc], bad.fail[nat] = true, true
	if err := d.Publish(snap); !errors.Is(err, errMapFull) {
		t.Fatalf("publish with refused adds: %v", err)
	}
	if d.Snapshot() != snap {
		t.Error("the snapshot was not published")
	}
	delete(bad.fail, svc)
	delete(bad.fail, nat)
	if err := d.Publish(snap); err != nil {
		t.Fatalf("second publish: %v", err)
	}
	if !bad.svcs[svc] || !bad.nat[nat] || len(bad.nat) != len(natKeys) {
		t.Errorf("refused keys not added by the next publish: services %v nat %v", bad.svcs, bad.nat)
	}

	empty := mustSnapshot(t, nil)
	bad.fail[svc], bad.fail[nat] = true, true
	if err := d.Publish(empty); !errors.Is(err, errMapFull) {
		t.Fatalf("publish with refused deletes: %v", err)
	}
	if good.svcs[svc] || good.nat[nat] {
		t.Error("the program that accepted the deletes still steers the keys")
	}
	delete(bad.fail, svc)
	delete(bad.fail, nat)
	if err := d.Publish(empty); err != nil {
		t.Fatalf("second publish: %v", err)
	}
	if len(bad.svcs) != 0 || len(bad.nat) != 0 {
		t.Errorf("refused deletes not retried: services %v nat %v", bad.svcs, bad.nat)
	}
}
