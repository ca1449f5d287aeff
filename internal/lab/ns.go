package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-dev/xlb/internal/inns"
)

// netnsDir is where named network namespaces are bind-mounted (the iproute2 convention, so
// `ip netns exec NAME ...` works on them while a test runs).
const netnsDir = "/var/run/netns"

// NS is one network namespace made by this package. Its methods are safe for concurrent use.
type NS struct {
	name   string
	handle netns.NsHandle
	nl     *netlink.Handle

	// use is held shared by Do and exclusively by Close while it closes the handle: a
	// dial that outlives its test (an HTTP transport finishes dials in the background)
	// never enters a closed or reused descriptor, nor runs in the host's namespace.
	use      sync.RWMutex
	nsClosed bool
	mu       sync.Mutex
	procs    []*exec.Cmd
	closers  []io.Closer
	closed   bool
}

// newID returns a short random id that no namespace in netnsDir uses yet.
func newID() (string, error) {
	for range 16 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("random id: %w", err)
		}
		id := hex.EncodeToString(b[:])
		m, _ := filepath.Glob(filepath.Join(netnsDir, "xlb-"+id+"-*"))
		if len(m) == 0 {
			return id, nil
		}
	}
	return "", errors.New("lab: no free namespace id")
}

// NewNS makes the network namespace "xlb-<id>-<role>", bind-mounted under /var/run/netns, with
// its loopback up and IPv6 duplicate address detection off. The caller's thread is left in
// its original namespace. Close removes it.
func NewNS(id, role string) (*NS, error) {
	name := "xlb-" + id + "-" + role
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("make %s: %w", netnsDir, err)
	}
	h, err := newNamed(name)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	n := &NS{name: name, handle: h}
	n.nl, err = netlink.NewHandleAt(h)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	if err := n.setup(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// newNamed creates the named namespace on a locked thread and puts the thread back.
func newNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	h, nerr := netns.NewNamed(name)
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in a foreign namespace: leave it locked so the runtime
		// discards it when this goroutine ends.
		if nerr == nil {
			h.Close()
			_ = netns.DeleteNamed(name)
		}
		return netns.None(), fmt.Errorf("restore namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if nerr != nil {
		// NewNamed may have left the file behind when the bind mount failed.
		_ = os.Remove(filepath.Join(netnsDir, name))
		return netns.None(), nerr
	}
	return h, nil
}

// setup brings lo up and turns DAD off so IPv6 addresses are usable at once.
func (n *NS) setup() error {
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("%s: find lo: %w", n.name, err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("%s: set lo up: %w", n.name, err)
	}
	return n.Sysctls(map[string]string{
		"net.ipv6.conf.all.accept_dad":       "0",
		"net.ipv6.conf.default.accept_dad":   "0",
		"net.ipv6.conf.all.disable_ipv6":     "0",
		"net.ipv6.conf.default.disable_ipv6": "0",
		"net.ipv4.conf.all.rp_filter":        "0",
		"net.ipv4.conf.default.rp_filter":    "0",
	})
}

// Name is the namespace's name ("xlb-<id>-<role>"), usable with `ip netns exec`.
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind mount, e.g. for nsenter --net=PATH.
func (n *NS) Path() string { return filepath.Join(netnsDir, n.name) }

// Handle is a netlink handle bound to the namespace; it is closed by Close.
func (n *NS) Handle() *netlink.Handle { return n.nl }

// NsHandle is the namespace's file descriptor; it is closed by Close.
func (n *NS) NsHandle() netns.NsHandle { return n.handle }

// Do runs fn on an OS thread switched into the namespace and switches back afterwards.
// Sockets created inside fn stay in the namespace after Do returns. fn must not start
// goroutines that expect to run in the namespace (they run on other threads).
func (n *NS) Do(fn func() error) error {
	n.use.RLock()
	defer n.use.RUnlock()
	if n.nsClosed {
		return fmt.Errorf("%s: namespace closed", n.name)
	}
	if err := inns.Do(n.handle, fn); err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	return nil
}

// Sysctl writes one sysctl (dotted name, e.g. "net.ipv4.ip_forward") inside the namespace.
func (n *NS) Sysctl(key, value string) error {
	return n.Do(func() error { return writeSysctl(key, value) })
}

// Sysctls writes several sysctls inside the namespace.
func (n *NS) Sysctls(kv map[string]string) error {
	return n.Do(func() error {
		for k, v := range kv {
			if err := writeSysctl(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReadSysctl reads one sysctl inside the namespace.
func (n *NS) ReadSysctl(key string) (string, error) {
	var s string
	err := n.Do(func() error {
		b, err := os.ReadFile(sysctlPath(key))
		s = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("%s: read sysctl %s: %w", n.name, key, err)
	}
	return s, nil
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// writeSysctl must run on a thread inside the target namespace: /proc/sys/net resolves the
// namespace of the opening thread.
func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// Start starts cmd inside the namespace (the child is forked from a thread switched into
// it) and remembers it: Close kills its process group and waits for it. Unless the caller
// set cmd.SysProcAttr, the child gets its own process group.
func (n *NS) Start(cmd *exec.Cmd) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := n.Do(cmd.Start); err != nil {
		return fmt.Errorf("%s: start %s: %w", n.name, cmd.Path, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
	return nil
}

// Command returns an *exec.Cmd for name and args; start it with Start (or run it with Run).
func (n *NS) Command(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// Run runs cmd inside the namespace to completion and returns its combined output.
func (n *NS) Run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := n.Start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	n.forget(cmd)
	if err != nil {
		return []byte(out.String()), fmt.Errorf("%s: %s: %w", n.name, strings.Join(cmd.Args, " "), err)
	}
	return []byte(out.String()), nil
}

// track registers c to be closed by Close (servers and listeners made in the namespace).
// It returns ErrClosed (and closes c) when the namespace is already closed.
func (n *NS) track(c io.Closer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		_ = c.Close()
		return ErrClosed
	}
	n.closers = append(n.closers, c)
	return nil
}

func (n *NS) forget(cmd *exec.Cmd) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, c := range n.procs {
		if c == cmd {
			n.procs = append(n.procs[:i], n.procs[i+1:]...)
			return
		}
	}
}

// killProcs kills the processes Start started and reaps them (bounded wait).
func (n *NS) killProcs() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, c := range procs {
		if c.Process == nil {
			continue
		}
		pid := c.Process.Pid
		if c.SysProcAttr != nil && c.SysProcAttr.Setpgid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = c.Process.Kill()
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}

// Close kills the processes started in the namespace, closes its handles and removes its
// bind mount; the namespace (and the veths in it) is freed by the kernel once no socket
// or process holds it. Close is idempotent.
func (n *NS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	closers := n.closers
	n.closers = nil
	n.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		// A listener or connection the test closed itself is not an error.
		if err := closers[i].Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
		}
	}
	n.killProcs()
	if n.nl != nil {
		n.nl.Close()
	}
	n.use.Lock()
	n.nsClosed = true
	err := n.handle.Close()
	n.use.Unlock()
	if err != nil {
		errs = append(errs, fmt.Errorf("close %s handle: %w", n.name, err))
	}
	if err := netns.DeleteNamed(n.name); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("delete namespace %s: %w", n.name, err))
	}
	return errors.Join(errs...)
}
