package dataplane

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// kernelBudget bounds the packets a worker hands to the kernel per step (each one is a
// sendto(2)): a flood of replies to unroutable clients cannot stall the batch loop.
const kernelBudget = 32

// kernelTx hands IP packets to the host's kernel to route, through raw IPPROTO_RAW sockets
// (the IP header is the caller's; the kernel routes by its destination, resolves the next
// hop's neighbour entry, queueing the packet meanwhile, and transmits it). The worker uses it
// for NAT replies to clients the snapshot has no route to yet. Non-blocking: a full socket
// buffer is a counted drop, never a stall.
type kernelTx struct {
	fd4, fd6 int
	sa4      unix.SockaddrInet4
	sa6      unix.SockaddrInet6
}

// newKernelTx opens the sockets in the calling thread's network namespace.
func newKernelTx() (*kernelTx, error) {
	k := &kernelTx{fd4: -1, fd6: -1}
	var err error
	k.fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw ipv4 socket for kernel-routed replies: %w", err)
	}
	k.fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		_ = unix.Close(k.fd4)
		return nil, fmt.Errorf("raw ipv6 socket for kernel-routed replies: %w", err)
	}
	if err != nil {
		k.fd6 = -1 // no IPv6 in this kernel
	}
	return k, nil
}

var errNotIP = errors.New("not an ip packet")

// send hands the IP packet pkt to the kernel. It allocates nothing on success.
func (k *kernelTx) send(pkt []byte) error {
	if len(pkt) < 20 {
		return errNotIP
	}
	switch pkt[0] >> 4 {
	case 4:
		k.sa4.Addr = [4]byte(pkt[16:20])
		return unix.Sendto(k.fd4, pkt, 0, &k.sa4)
	case 6:
		if len(pkt) < 40 || k.fd6 < 0 {
			return errNotIP
		}
		k.sa6.Addr = [16]byte(pkt[24:40])
		return unix.Sendto(k.fd6, pkt, 0, &k.sa6)
	}
	return errNotIP
}

func (k *kernelTx) close() error {
	var errs []error
	for _, fd := range []int{k.fd4, k.fd6} {
		if fd >= 0 {
			if err := unix.Close(fd); err != nil {
				errs = append(errs, fmt.Errorf("close raw socket: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
