// Package caps knows the Linux capabilities `xlb run` needs and what needs
// each, reads the process's own, and explains a failure by the ones it
// lacks. The set was found by test (cmd/xlb's unprivileged end-to-end
// test drops each in turn and sees xlb run fail).
package caps

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cap is one capability with what xlb does with it.
type Cap struct {
	Bit  uint   // CAP_* number
	Name string // "CAP_NET_ADMIN"
	Why  string // what needs it
}

// Required is the smallest set `xlb run` works with as an unprivileged
// user (ambient capabilities), in the order systemd units list them.
var Required = []Cap{
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "attach XDP to the interfaces, create the XSKMAP, VRRP's VIPs and crash-guard table, routes and marks of through_vip checks"},
	{unix.CAP_NET_RAW, "CAP_NET_RAW", "AF_XDP sockets, the raw sockets of kernel-routed replies, ICMP checks, VRRP adverts and gratuitous ARP"},
	{unix.CAP_BPF, "CAP_BPF", "create the XDP program's maps and load it"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "the verifier's pointer arithmetic in the XDP program (refused without it for non-root)"},
	{unix.CAP_IPC_LOCK, "CAP_IPC_LOCK", "lock the AF_XDP packet memory (UMEM) beyond RLIMIT_MEMLOCK (or raise LimitMEMLOCK to infinity)"},
}

// Set is a capability bit mask (bit n: CAP number n).
type Set uint64

// Has reports whether s holds capability bit.
func (s Set) Has(bit uint) bool { return s&(1<<bit) != 0 }

// Names lists the capabilities of s that Required knows, by name.
func (s Set) Names() []string {
	var n []string
	for _, c := range Required {
		if s.Has(c.Bit) {
			n = append(n, c.Name)
		}
	}
	return n
}

// Of returns the set of the given capabilities.
func Of(cs ...Cap) Set {
	var s Set
	for _, c := range cs {
		s |= 1 << c.Bit
	}
	return s
}

// Effective returns the calling thread's effective capabilities.
func Effective() (Set, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, (*unix.CapUserData)(unsafe.Pointer(&data[0]))); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return Set(data[0].Effective) | Set(data[1].Effective)<<32, nil
}

// Missing returns the capabilities of Required that have lacks. CAP_IPC_LOCK
// counts as present when RLIMIT_MEMLOCK is at least memlock bytes.
func Missing(have Set, memlock uint64) []Cap {
	var out []Cap
	for _, c := range Required {
		if have.Has(c.Bit) {
			continue
		}
		if c.Bit == unix.CAP_IPC_LOCK && memlockAtLeast(memlock) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func memlockAtLeast(n uint64) bool {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) != nil {
		return false
	}
	return lim.Cur == unix.RLIM_INFINITY || lim.Cur >= n
}

// ErrMissing is matched by the error Explain returns when capabilities
// are missing.
var ErrMissing = errors.New("missing capabilities")

// MissingError names the capabilities a failed run lacked.
type MissingError struct {
	Err     error // the failure
	Missing []Cap
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v\n%v (uid %d); xlb run needs:", e.Err, ErrMissing, os.Getuid())
	names := make([]string, len(e.Missing))
	for i, c := range e.Missing {
		fmt.Fprintf(&b, "\n  %s: %s", c.Name, c.Why)
		names[i] = strings.ToLower(strings.TrimPrefix(c.Name, "CAP_"))
	}
	fmt.Fprintf(&b, "\ngrant them: AmbientCapabilities= in the systemd unit, or setpriv --inh-caps +%s --ambient-caps +%s",
		strings.Join(names, ",+"), strings.Join(names, ",+"))
	return b.String()
}

func (e *MissingError) Unwrap() []error { return []error{e.Err, ErrMissing} }

// Explain returns err unchanged when it is nil or the process has every
// capability of Required (memlock: the UMEM bytes it needs locked), and
// otherwise a *MissingError that names the ones it lacks and what needs them.
func Explain(err error, memlock uint64) error {
	if err == nil {
		return nil
	}
	have, cerr := Effective()
	if cerr != nil {
		return err
	}
	if m := Missing(have, memlock); len(m) > 0 {
		return &MissingError{Err: err, Missing: m}
	}
	return err
}
