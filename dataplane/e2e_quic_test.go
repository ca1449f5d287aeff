package dataplane

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
	"github.com/xlb-dev/xlb/internal/testnet"
	"github.com/xlb-dev/xlb/sched"
)

// The QUIC end-to-end test: quic-go servers on every backend issue connection IDs that carry
// their QUIC-LB server ID (through quic-go's ConnectionIDGenerator hook); a quic-go client
// streams through xlb, migrates to a new local address and port mid-transfer while the
// backend set changes, and must keep its server.

const quicALPN = "xlb-quic-test"

// cidGenerator is a QUIC server's connection ID generator for one QUIC-LB configuration and
// server ID: random nonces, the server ID encoded (and encrypted) as the draft says.
type cidGenerator struct {
	lb  *encap.QUICLB
	sid []byte
}

func (g cidGenerator) GenerateConnectionID() (quic.ConnectionID, error) {
	nonce := make([]byte, g.lb.ConnIDLen()-1-g.lb.ServerIDLen())
	if _, err := rand.Read(nonce); err != nil {
		return quic.ConnectionID{}, err
	}
	cid, err := g.lb.Encode(make([]byte, g.lb.ConnIDLen()), g.sid, nonce)
	if err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(cid), nil
}

func (g cidGenerator) ConnectionIDLen() int { return g.lb.ConnIDLen() }

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xlb-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"xlb-test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{quicALPN}}
}

// serveQUIC runs a QUIC server on the backend at addr: for every stream it reads records of
// an 8-byte sequence number and 4 KiB of data and answers each with a line "name remote seq"
// (remote: the client address the connection uses now).
func serveQUIC(t *testing.T, b *lab.Backend, addr netip.AddrPort, gen cidGenerator, tc *tls.Config) {
	t.Helper()
	pc, err := b.ListenPacket("udp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc, ConnectionIDGenerator: gen}
	ln, err := tr.Listen(tc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		tr.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.CloseWithError(0, "")
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				rec := make([]byte, 8+4096)
				for {
					if _, err := io.ReadFull(str, rec); err != nil {
						return
					}
					seq := binary.BigEndian.Uint64(rec)
					if _, err := fmt.Fprintf(str, "%s %s %d\n", b.Name, conn.RemoteAddr(), seq); err != nil {
						return
					}
				}
			})
		}
	})
}

// quicTransfer streams records on str until stop is closed and reports every answer.
type quicTransfer struct {
	mu      sync.Mutex
	answers []string // "name remote seq" per record, in order
	err     error
	done    chan struct{}
}

func startTransfer(str *quic.Stream, stop <-chan struct{}) *quicTransfer {
	x := &quicTransfer{done: make(chan struct{})}
	go func() {
		defer close(x.done)
		rd := bufio.NewReader(str)
		rec := make([]byte, 8+4096)
		for seq := uint64(0); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.BigEndian.PutUint64(rec, seq)
			_ = str.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := str.Write(rec); err != nil {
				x.fail(fmt.Errorf("record %d: write: %w", seq, err))
				return
			}
			line, err := rd.ReadString('\n')
			if err != nil {
				x.fail(fmt.Errorf("record %d: read: %w", seq, err))
				return
			}
			x.mu.Lock()
			x.answers = append(x.answers, strings.TrimSpace(line))
			x.mu.Unlock()
		}
	}()
	return x
}

func (x *quicTransfer) fail(err error) {
	x.mu.Lock()
	x.err = err
	x.mu.Unlock()
}

func (x *quicTransfer) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.answers)
}

// waitRecords waits until n records have been answered (or the transfer failed).
func (x *quicTransfer) waitRecords(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for x.count() < n {
		select {
		case <-x.done:
			t.Fatalf("transfer ended after %d records: %v", x.count(), x.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records answered in 10s", x.count(), n)
		}
	}
}

// quicService is a UDP service whose backend i has server ID serverID(i) and whose backends
// are up as up says.
func quicService(t *testing.T, tn *lab.Net, name string, index int, port uint16, lb *encap.QUICLB, up []bool) ServiceSpec {
	t.Helper()
	sp := backendSpec(t, tn, name, index, tn.VIP, port, MethodDR)
	bs := make([]sched.Backend, sp.Sched.Len())
	for i := range bs {
		bs[i] = sp.Sched.Backend(i)
		bs[i].Up = up[i]
		sp.Targets[i].ServerID = serverID(i)
	}
	var err error
	if sp.Sched, err = sched.NewService(sched.ServiceConfig{Index: index, Strategy: sched.Maglev}, bs); err != nil {
		t.Fatal(err)
	}
	sp.Proto, sp.QUIC = encap.ProtoUDP, lb
	return sp
}

// portAway returns a local port for src whose 4-tuple to the service the scheduler of sp
// sends to a backend other than avoid: so only connection-ID routing can keep a flow that
// migrates there on avoid.
func portAway(t *testing.T, sp ServiceSpec, src netip.Addr, avoid string) uint16 {
	t.Helper()
	a, _ := addr16(src)
	d, _ := addr16(sp.VIP)
	for p := uint16(20000); p < 30000; p++ {
		k := sched.Key{Src: a, Dst: d, SrcPort: p, DstPort: sp.Port, Proto: encap.ProtoUDP}
		if b := sp.Sched.LookupHash(sched.Hash(&k)); b >= 0 && sp.Sched.Backend(b).Name != avoid {
			return p
		}
	}
	t.Fatal("no port maps away from " + avoid)
	return 0
}

func TestE2EQUICMigration(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_GSO", "true") // the veths have checksum offload off
	tn := testnet.New(t, lab.Config{Backends: 3, NoHTTP: true, DisableIPv6: true})
	dp := startDataplane(t, tn.LB, "eth0")
	tc := selfSignedTLS(t)
	modes := []struct {
		name string
		port uint16
		lb   *encap.QUICLB
	}{{"plaintext", 443, quicLB(t, false, false)}, {"encrypted", 444, quicLB(t, true, false)}}
	for i, b := range tn.Backends {
		for _, m := range modes {
			serveQUIC(t, b, netip.AddrPortFrom(tn.VIP, m.port), cidGenerator{lb: m.lb, sid: serverID(i)}, tc)
		}
	}
	allUp := []bool{true, true, true}
	snap := func(up []bool) *Snapshot {
		return mustSnapshot(t, nil, quicService(t, tn, modes[0].name, 0, modes[0].port, modes[0].lb, up),
			quicService(t, tn, modes[1].name, 1, modes[1].port, modes[1].lb, up))
	}
	publishAndStart(t, dp, snap(allUp))
	for mi, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if err := dp.Publish(snap(allUp)); err != nil {
				t.Fatal(err)
			}
			newAddr := tn.ClientPool.Addr().Next().Next() // an address the client did not use yet
			for range mi {
				newAddr = newAddr.Next()
			}
			testQUICMigration(t, tn, dp, m.port, newAddr, tc, func(up []bool) (*Snapshot, ServiceSpec) {
				return snap(up), quicService(t, tn, m.name, mi, m.port, m.lb, up)
			})
		})
	}
}

// testQUICMigration runs one transfer through the service on port: after 20 records the
// backend set changes (another backend goes down) and the client moves to newAddr and a port
// the 4-tuple path would send elsewhere; 20 more records must come from the same server,
// which must see the new address.
func testQUICMigration(t *testing.T, tn *lab.Net, dp *Dataplane, port uint16, newAddr netip.Addr, tc *tls.Config,
	snap func(up []bool) (*Snapshot, ServiceSpec)) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := tn.Client.ListenPacket("udp4", netip.AddrPortFrom(tn.Client.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	before := dp.Total()
	ctc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{quicALPN}} // a test certificate
	conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tn.VIP, port)), ctc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dial: %v (counters %+v)", err, dp.Total())
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	x := startTransfer(str, stop)
	defer func() { close(stop); <-x.done }()
	x.waitRecords(t, 20)
	x.mu.Lock()
	server := strings.Fields(x.answers[0])[0]
	x.mu.Unlock()
	// The backend set changes: one of the other backends goes down.
	up := []bool{true, true, true}
	for i, b := range tn.Backends {
		if b.Name != server {
			up[i] = false
			break
		}
	}
	s, sp := snap(up)
	if err := dp.Publish(s); err != nil {
		t.Fatal(err)
	}
	// The client moves to another address and a port whose 4-tuple maps to another backend.
	np := portAway(t, sp, newAddr, server)
	pc2, err := tn.Client.ListenPacket("udp4", netip.AddrPortFrom(newAddr, np).String())
	if err != nil {
		t.Fatal(err)
	}
	tr2 := &quic.Transport{Conn: pc2}
	defer tr2.Close()
	path, err := conn.AddPath(tr2)
	if err != nil {
		t.Fatal(err)
	}
	if err := path.Probe(ctx); err != nil {
		t.Fatalf("probe the new path: %v (counters %+v)", err, dp.Total())
	}
	if err := path.Switch(); err != nil {
		t.Fatal(err)
	}
	moved := x.count()
	x.waitRecords(t, moved+20)
	close(stop)
	<-x.done
	stop = make(chan struct{}) // for the deferred close
	if x.err != nil && !errors.Is(x.err, context.Canceled) {
		t.Fatalf("transfer: %v", x.err)
	}
	remote := netip.AddrPortFrom(newAddr, np).String()
	seenNew := false
	for i, a := range x.answers {
		f := strings.Fields(a)
		if len(f) != 3 || f[0] != server || f[2] != fmt.Sprint(i) {
			t.Fatalf("record %d answered %q, want %s and seq %d", i, a, server, i)
		}
		if i >= moved && f[1] == remote {
			seenNew = true
		}
	}
	if !seenNew {
		t.Errorf("the server never saw the client's new address %s: last answer %q", remote, x.answers[len(x.answers)-1])
	}
	after := dp.Total()
	routed, fallback := after.QUICRouted-before.QUICRouted, after.QUICFallback-before.QUICFallback
	t.Logf("%d records, %d before the move; server %s; packets routed by connection ID %d, by 4-tuple %d",
		len(x.answers), moved, server, routed, fallback)
	if routed == 0 {
		t.Error("no packet was routed by its connection ID")
	}
	if fallback == 0 { // the client's first Initial carries a DCID of its own choosing
		t.Error("no handshake packet took the 4-tuple path")
	}
}
