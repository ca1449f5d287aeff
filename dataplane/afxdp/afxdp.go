// Package afxdp exposes the data path's AF_XDP ring code (dataplane/internal/xsk) and its
// in-kernel baseline XDP programs (dataplane/internal/xdpprog) to tools outside dataplane,
// such as the bench package's traffic generator and sinks, which Go's internal rule would
// otherwise keep out. It adds nothing: every name is an alias of the internal one, with the
// same contract (see those packages' documentation).
package afxdp

import (
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/dataplane/internal/xsk"
)

// Ring code.
type (
	UMEM       = xsk.UMEM
	UMEMConfig = xsk.UMEMConfig
	Socket     = xsk.Socket
	Config     = xsk.Config
	Desc       = xsk.Desc
	Stats      = xsk.Stats
	ZeroCopy   = xsk.ZeroCopy
)

// Bind modes.
const (
	ZeroCopyAuto = xsk.ZeroCopyAuto
	ZeroCopyOn   = xsk.ZeroCopyOn
	ZeroCopyOff  = xsk.ZeroCopyOff
)

// KernelHeadroom is XDP_PACKET_HEADROOM.
const KernelHeadroom = xsk.KernelHeadroom

// NewUMEM and Open are xsk.NewUMEM and xsk.Open.
var (
	NewUMEM = xsk.NewUMEM
	Open    = xsk.Open
)

// Baseline is an in-kernel reference program (dataplane/bpf/bench.c) attached to an
// interface; AttachBaseline attaches one in native mode.
type Baseline = xdpprog.Baseline

// Baseline program names.
const (
	BaselineDrop = xdpprog.BaselineDrop
	BaselineSwap = xdpprog.BaselineSwap
)

// AttachBaseline is xdpprog.AttachBaseline.
var AttachBaseline = xdpprog.AttachBaseline
