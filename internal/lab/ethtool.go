package lab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands (linux/ethtool.h) that take a struct ethtool_value.
const (
	ethtoolSTXCSUM = 0x17 // set tx checksum offload
	ethtoolSTSO    = 0x1f // set TCP segmentation offload
	ethtoolSGSO    = 0x24 // set generic segmentation offload
	ethtoolSGRO    = 0x2c // set generic receive offload
	ethtoolGTXCSUM = 0x16 // get tx checksum offload
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with the ifr_data pointer member (40 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer // *ethtoolValue; a pointer type so the GC and stack copier see it
	_    [16]byte
}

// ethtoolValueIoctl runs one ETHTOOL_* get/set on ifname through SIOCETHTOOL. It must be
// called on a thread inside the interface's namespace (the socket's namespace decides which
// interface the name means).
func ethtoolValueIoctl(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return 0, fmt.Errorf("ethtool cmd %#x on %s: %w", cmd, ifname, errno)
	}
	return v.data, nil
}

// OffloadsOff turns off, on interface ifname inside the namespace, tx checksum offload (so
// every TCP/UDP packet leaves with a finished checksum: a frame that crosses AF_XDP or is
// captured raw is never left with a partial one), TSO and GSO (so the stack hands the veth
// MTU-sized frames: a 64 KiB GSO super-packet would be dropped by an XDP program that is not
// frags-aware, and would not be what a real wire carries), and GRO (so a receiver's stack and
// its captures see the frames that were sent, not coalesced ones).
func (n *NS) OffloadsOff(ifname string) error {
	return n.Do(func() error {
		for _, c := range []uint32{ethtoolSTXCSUM, ethtoolSTSO, ethtoolSGSO, ethtoolSGRO} {
			if _, err := ethtoolValueIoctl(ifname, c, 0); err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
		}
		return nil
	})
}

// TxChecksumOn reports whether tx checksum offload is on for ifname inside the namespace.
func (n *NS) TxChecksumOn(ifname string) (bool, error) {
	var on bool
	err := n.Do(func() error {
		v, err := ethtoolValueIoctl(ifname, ethtoolGTXCSUM, 0)
		on = v != 0
		return err
	})
	return on, err
}
