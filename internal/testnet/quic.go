package testnet

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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xlb-dev/xlb/encap"
	"github.com/xlb-dev/xlb/internal/lab"
)

// QUIC end-to-end helpers: quic-go servers on the backends that issue QUIC-LB connection IDs,
// and a client transfer that migrates to another address and port while it runs.

// QUICALPN is the ALPN of the test servers and clients.
const QUICALPN = "xlb-quic-test"

// QUICConnIDs is a quic-go ConnectionIDGenerator for one QUIC-LB configuration and server
// ID: the server ID encoded (and encrypted) as the draft says, with random nonces.
type QUICConnIDs struct {
	LB       *encap.QUICLB
	ServerID []byte
}

// GenerateConnectionID implements quic.ConnectionIDGenerator.
func (g QUICConnIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	nonce := make([]byte, g.LB.ConnIDLen()-1-g.LB.ServerIDLen())
	if _, err := rand.Read(nonce); err != nil {
		return quic.ConnectionID{}, err
	}
	cid, err := g.LB.Encode(make([]byte, g.LB.ConnIDLen()), g.ServerID, nonce)
	if err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(cid), nil
}

// ConnectionIDLen implements quic.ConnectionIDGenerator.
func (g QUICConnIDs) ConnectionIDLen() int { return g.LB.ConnIDLen() }

// SelfSignedTLS returns a server TLS configuration with a fresh self-signed certificate.
func SelfSignedTLS(t TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xlb-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"xlb-test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{QUICALPN}}
}

// quicRecord is what the client sends per record: an 8-byte sequence number and data.
const quicRecord = 8 + 4096

// ServeQUIC runs a QUIC server on backend b at addr whose connection IDs come from gen: for
// every stream it reads records (an 8-byte sequence number and 4 KiB) and answers each with
// a line "name remote seq" (remote: the client address the connection uses now). It stops
// in t.Cleanup.
func ServeQUIC(t TB, b *lab.Backend, addr netip.AddrPort, gen QUICConnIDs, tc *tls.Config) {
	t.Helper()
	pc, err := b.ListenPacket("udp", addr.String())
	if err != nil {
		t.Fatalf("quic server: %v", err)
	}
	tr := &quic.Transport{Conn: pc, ConnectionIDGenerator: gen}
	ln, err := tr.Listen(tc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("quic listen: %v", err)
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
			wg.Go(func() { answerRecords(conn, b.Name) })
		}
	})
}

func answerRecords(conn *quic.Conn, name string) {
	defer conn.CloseWithError(0, "")
	str, err := conn.AcceptStream(context.Background())
	if err != nil {
		return
	}
	rec := make([]byte, quicRecord)
	for {
		if _, err := io.ReadFull(str, rec); err != nil {
			return
		}
		seq := binary.BigEndian.Uint64(rec)
		if _, err := fmt.Fprintf(str, "%s %s %d\n", name, conn.RemoteAddr(), seq); err != nil {
			return
		}
	}
}

// QUICMigration describes one migrating transfer (RunQUICMigration).
type QUICMigration struct {
	Client *lab.Host
	VIP    netip.AddrPort
	// From is the client's first local address; default the client's address of the VIP's
	// family.
	From netip.Addr
	// Before is called after 20 answered records with the name of the server that answers:
	// change the backend set there, and return the client's new local address and port.
	Before func(server string) netip.AddrPort
	// Records is how many records to exchange after the move (default 20).
	Records int
}

// QUICMigrationResult is what RunQUICMigration saw.
type QUICMigrationResult struct {
	Server     string // the server that answered every record
	Records    int    // answered in all
	Moved      int    // answered before the client moved
	SawNewAddr bool   // the server saw the client's new address
}

// RunQUICMigration dials the VIP from m.From, streams records, and after 20
// answers calls m.Before and moves the connection to the address it returns (quic-go's
// AddPath on a new transport, Probe, Switch) while the transfer goes on. It fails t unless
// every record, before and after the move, is answered in order by the same server.
func RunQUICMigration(t TB, m QUICMigration) QUICMigrationResult {
	t.Helper()
	if m.Records == 0 {
		m.Records = 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(local netip.AddrPort) *quic.Transport {
		pc, err := m.Client.ListenPacket("udp", local.String())
		if err != nil {
			t.Fatalf("quic client: %v", err)
		}
		return &quic.Transport{Conn: pc}
	}
	if !m.From.IsValid() {
		m.From = m.Client.Addr()
		if m.VIP.Addr().Is6() {
			m.From = m.Client.Addr6()
		}
	}
	tr := dial(netip.AddrPortFrom(m.From, 0))
	defer tr.Close()
	ctc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{QUICALPN}} // a test certificate
	conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(m.VIP), ctc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("quic dial %v: %v", m.VIP, err)
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("quic stream: %v", err)
	}
	x := startTransfer(str)
	defer x.stop()
	x.wait(t, 20)
	server := strings.Fields(x.answer(0))[0]
	local := m.Before(server)
	tr2 := dial(local)
	defer tr2.Close()
	path, err := conn.AddPath(tr2)
	if err != nil {
		t.Fatalf("add path: %v", err)
	}
	if err := path.Probe(ctx); err != nil {
		t.Fatalf("probe the new path from %v: %v", local, err)
	}
	if err := path.Switch(); err != nil {
		t.Fatalf("switch to the new path: %v", err)
	}
	res := QUICMigrationResult{Server: server, Moved: x.count()}
	x.wait(t, res.Moved+m.Records)
	answers := x.stop()
	res.Records = len(answers)
	for i, a := range answers {
		f := strings.Fields(a)
		if len(f) != 3 || f[0] != server || f[2] != fmt.Sprint(i) {
			t.Fatalf("record %d answered %q, want %s and seq %d", i, a, server, i)
		}
		if i >= res.Moved && f[1] == local.String() {
			res.SawNewAddr = true
		}
	}
	if !res.SawNewAddr {
		t.Errorf("the server never saw the client's new address %s: last answer %q", local, answers[len(answers)-1])
	}
	return res
}

// quicTransfer streams records on a stream until stopped and keeps every answer.
type quicTransfer struct {
	mu      sync.Mutex
	answers []string
	err     error
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func startTransfer(str *quic.Stream) *quicTransfer {
	x := &quicTransfer{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(x.done)
		rd := bufio.NewReader(str)
		rec := make([]byte, quicRecord)
		for seq := uint64(0); ; seq++ {
			select {
			case <-x.quit:
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

func (x *quicTransfer) answer(i int) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.answers[i]
}

// wait waits until n records are answered; it fails t when the transfer ends first or
// takes more than 10 s.
func (x *quicTransfer) wait(t TB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for x.count() < n {
		select {
		case <-x.done:
			x.mu.Lock()
			err := x.err
			x.mu.Unlock()
			t.Fatalf("transfer ended after %d records: %v", x.count(), err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records answered in 10s", x.count(), n)
		}
	}
}

// stop ends the transfer and returns the answers.
func (x *quicTransfer) stop() []string {
	x.once.Do(func() { close(x.quit) })
	<-x.done
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.answers
}
