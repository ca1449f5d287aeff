package connsync

import (
	"testing"
	"time"

	"github.com/xlb-dev/xlb/sched"
)

// testTemplate is a persistence template: client prefix 198.18.7.0/24 of the service
// 198.19.0.10:80/tcp, on backend .21.
func testTemplate() Record {
	return Record{Kind: KindTemplate, Key: sched.Key{Src: v4(198, 18, 7, 0), Dst: v4(198, 19, 0, 10), DstPort: 80, Proto: 6},
		Backend: v4(198, 18, 1, 21), BackendPort: 80}
}

// A removal from the sender that wrote an entry removes it on the peer; one from another
// sender, and forged, replayed or malformed removals, remove nothing.
func TestApplyRemoval(t *testing.T) {
	n := newReceiver(t, Config{})
	now := time.Now()
	r := testRecord(1)
	if d := n.feed(seal(t, testKey, 5, 1, now, r), now); d != -1 || backendOf(t, n.Table(), r.Key) == 0 {
		t.Fatalf("the connection was not applied: %s", DropName(d))
	}
	rm := Record{Kind: KindRemove, Key: r.Key, State: sched.ConnEstablished}
	malformed := seal(t, testKey, 5, 3, now, rm)
	malformed[HeaderSize+62] = 1
	malformed = n.s.resign(malformed)
	for _, c := range []struct {
		name string
		msg  []byte
		want int
	}{
		{"forged", seal(t, []byte("not the key, but 32 bytes long!!"), 5, 2, now, rm), DropAuth},
		{"replayed", seal(t, testKey, 5, 1, now, rm), DropReplay},
		{"stale", seal(t, testKey, 5, 4, now.Add(-time.Hour), rm), DropStale},
		{"malformed", malformed, DropRecord},
		{"another sender's", seal(t, testKey, 6, 1, now, rm), -1},
	} {
		if d := n.feed(c.msg, now); d != c.want {
			t.Errorf("%s removal: %s, want %s", c.name, DropName(d), DropName(c.want))
		}
		if backendOf(t, n.Table(), r.Key) == 0 {
			t.Fatalf("a %s removal removed the entry", c.name)
		}
	}
	if st := n.Stats(); st.Table.Removed != 0 || st.AppliedKinds[KindRemove] != 0 {
		t.Fatalf("removals counted without a removal: %+v", st)
	}
	if d := n.feed(seal(t, testKey, 5, 5, now, rm), now); d != -1 {
		t.Fatalf("the removal was dropped: %s", DropName(d))
	}
	if backendOf(t, n.Table(), r.Key) != 0 {
		t.Fatal("the sender's removal left the entry")
	}
	st := n.Stats()
	if st.Table.Removed != 1 || st.AppliedKinds[KindRemove] != 1 || st.Table.Entries != 0 {
		t.Errorf("after the removal: %+v kinds %v", st.Table, st.AppliedKinds)
	}
	// The slot is free again, and the flow can come back.
	if d := n.feed(seal(t, testKey, 5, 6, now, r), now); d != -1 || backendOf(t, n.Table(), r.Key) == 0 {
		t.Fatalf("the flow did not come back after its removal: %s", DropName(d))
	}
}

// A template lands in the table under a key no connection has, is found by LookupTemplate
// within its service's timeout and not after; forged, replayed or malformed templates are
// not applied.
func TestApplyTemplate(t *testing.T) {
	n := newReceiver(t, Config{})
	now := time.Now()
	tp := testTemplate()
	bad := tp
	bad.Backend[3] = 99
	badState := seal(t, testKey, 5, 4, now, bad)
	badState[HeaderSize+38] = 1 // a template has no state
	badState = n.s.resign(badState)
	for _, c := range []struct {
		name string
		msg  []byte
		want int
	}{
		{"forged", seal(t, []byte("not the key, but 32 bytes long!!"), 5, 1, now, bad), DropAuth},
		{"malformed", badState, DropRecord},
		{"future", seal(t, testKey, 5, 3, now.Add(time.Hour), bad), DropStale},
	} {
		if d := n.feed(c.msg, now); d != c.want {
			t.Errorf("%s template: %s, want %s", c.name, DropName(d), DropName(c.want))
		}
	}
	var got Record
	if n.Table().LookupTemplate(&tp.Key, time.Minute, &got) || n.Stats().Applied != 0 {
		t.Fatal("a refused template was applied")
	}
	if d := n.feed(seal(t, testKey, 5, 10, now, tp), now); d != -1 {
		t.Fatalf("the template was dropped: %s", DropName(d))
	}
	if !n.Table().LookupTemplate(&tp.Key, time.Minute, &got) || got != tp {
		t.Fatalf("template lookup: %+v, want %+v", got, tp)
	}
	if n.Table().Lookup(&tp.Key, &got) {
		t.Error("a template was found as a connection")
	}
	if d := n.feed(seal(t, testKey, 5, 10, now, bad), now); d != DropReplay {
		t.Errorf("replayed template: %s", DropName(d))
	}
	if n.Table().LookupTemplate(&tp.Key, time.Minute, &got); got.Backend[3] != 21 {
		t.Errorf("the replay moved the template to .%d", got.Backend[3])
	}
	if st := n.Stats(); st.AppliedKinds[KindTemplate] != 1 || st.Table.Templates != 1 || st.Table.TemplateHits != 2 {
		t.Errorf("counters: kinds %v table %+v", st.AppliedKinds, st.Table)
	}
	n.Table().start = n.Table().start.Add(-2 * time.Minute)
	if n.Table().LookupTemplate(&tp.Key, time.Minute, &got) {
		t.Error("a template received 2 minutes ago found under a 1-minute timeout")
	}
	if !n.Table().LookupTemplate(&tp.Key, 5*time.Minute, &got) {
		t.Error("a template received 2 minutes ago not found under a 5-minute timeout")
	}
}

// A record of a kind this version does not know is skipped and counted; the message's
// other records apply.
func TestApplyUnknownKind(t *testing.T) {
	n := newReceiver(t, Config{})
	now := time.Now()
	r, other := testRecord(1), testRecord(2)
	msg := seal(t, testKey, 5, 1, now, other, r)
	msg[HeaderSize+39] = byte(NumKinds) // the first record: a newer peer's kind
	msg = n.s.resign(msg)
	if d := n.feed(msg, now); d != -1 {
		t.Fatalf("dropped: %s", DropName(d))
	}
	st := n.Stats()
	if st.Dropped[DropKind] != 1 || st.Applied != 1 || backendOf(t, n.Table(), r.Key) == 0 ||
		backendOf(t, n.Table(), other.Key) != 0 {
		t.Errorf("unknown kind: dropped %v, applied %d", st.Dropped, st.Applied)
	}
}
