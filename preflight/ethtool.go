package preflight

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ethtool commands and flags (linux/ethtool.h) the checks read.
const (
	ethtoolGChannels = 0x3c // get channels
	ethtoolGRXFH     = 0x29 // get RX flow hash fields

	tcpV4Flow = 0x01
	udpV4Flow = 0x02

	rxhIPSrc = 1 << 4
	rxhIPDst = 1 << 5
	rxhL4B01 = 1 << 6 // source port
	rxhL4B23 = 1 << 7 // destination port
)

// channels is struct ethtool_channels.
type channels struct {
	cmd                                         uint32
	maxRx, maxTx, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

// rxnfc is the head of struct ethtool_rxnfc: all that ETHTOOL_GRXFH and
// ETHTOOL_GRXRINGS read and write.
type rxnfc struct {
	cmd      uint32
	flowType uint32
	data     uint64
}

// ifreqData is struct ifreq with the ifr_data pointer member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// ethtool runs one SIOCETHTOOL command on ifname with arg (a pointer to the
// command's struct, whose first word is the command), in the calling
// thread's network namespace.
func ethtool(ifname string, arg unsafe.Pointer) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = arg
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return errno
	}
	return nil
}

func getChannels(ifname string) (channels, error) {
	c := channels{cmd: ethtoolGChannels}
	err := ethtool(ifname, unsafe.Pointer(&c))
	return c, err
}

func getRXFH(ifname string, flow uint32) (uint64, error) {
	r := rxnfc{cmd: ethtoolGRXFH, flowType: flow}
	err := ethtool(ifname, unsafe.Pointer(&r))
	return r.data, err
}

func driverInfo(ifname string) (driver, version, bus string, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", "", "", fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	d, err := unix.IoctlGetEthtoolDrvinfo(fd, ifname)
	if err != nil {
		return "", "", "", err
	}
	return unix.ByteSliceToString(d.Driver[:]), unix.ByteSliceToString(d.Version[:]), unix.ByteSliceToString(d.Bus_info[:]), nil
}
