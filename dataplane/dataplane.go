package dataplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-dev/xlb/dataplane/internal/xdpprog"
	"github.com/xlb-dev/xlb/dataplane/xsk"
	"github.com/xlb-dev/xlb/sched"
	"golang.org/x/sys/unix"
)

// Errors of the Dataplane's life cycle.
var (
	ErrStarted = errors.New("dataplane already started")
	ErrClosed  = errors.New("dataplane closed")

	errNoQueue = errors.New("no interface has this queue")
)

// InterfaceInfo says what New set up on an interface.
type InterfaceInfo struct {
	Name     string
	Index    int
	MAC      [6]byte
	MTU      int
	Queues   int
	XDPMode  string // the attach mode in effect: native or generic
	ZeroCopy bool   // whether the sockets run in zero-copy mode (false: copy mode)
}

// WorkerStats are one worker's counters.
type WorkerStats struct {
	Queue      int
	CPU        int
	Interfaces []string // the interfaces whose queue the worker serves
	Counters
}

type iface struct {
	info InterfaceInfo
	cfg  InterfaceConfig
	prog *xdpprog.Program
	maps steeringMaps // prog; tests put failing maps here
}

// steeringMaps is what Publish changes in an interface's XDP program.
type steeringMaps interface {
	AddService(xdpprog.Key) error
	DeleteService(xdpprog.Key) error
	AddNATBackend(xdpprog.Key) error
	DeleteNATBackend(xdpprog.Key) error
}

// Dataplane is the running data path: the XDP program on every configured interface, one
// worker per queue id, and the published snapshot. Publish, Stats and Close are safe for
// concurrent use.
type Dataplane struct {
	cfg     Config
	ifaces  []*iface
	workers []*worker
	snap    atomic.Pointer[Snapshot]
	locals  *locals             // the host's addresses in the programs' locals maps
	persist *sched.PersistTable // shared by the workers' cores (persistent services)

	capt   atomic.Pointer[Capture] // the armed packet capture (capture.go)
	listMu sync.Mutex              // one connection listing at a time (conns.go)

	mu       sync.Mutex
	services map[xdpprog.Key]bool    // keys in the programs' services maps
	nat      map[xdpprog.Key]bool    // keys in the programs' nat_backends maps
	policies map[xdpprog.Key]*Policy // the programs' service policies
	started  bool
	closed   bool
}

// New sets up the data path: it attaches the XDP program to every interface, creates a UMEM
// and the AF_XDP sockets of each worker and registers them with the program. Interface
// names are resolved, and sockets and programs created, in the calling thread's network
// namespace. Nothing is forwarded before Publish and Start.
func New(cfg Config) (_ *Dataplane, err error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: c, services: map[xdpprog.Key]bool{}, nat: map[xdpprog.Key]bool{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.teardown())
		}
	}()
	maxQ := 0
	for _, ic := range c.Interfaces {
		ifc, err := openIface(ic, c.ReplaceXDP)
		if err != nil {
			return nil, err
		}
		d.ifaces = append(d.ifaces, ifc)
		maxQ = max(maxQ, ifc.info.Queues)
	}
	if d.locals, err = startLocals(d.ifaces); err != nil {
		return nil, err
	}
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, err
	}
	if d.persist, err = sched.NewPersistTable(c.PersistSize); err != nil {
		return nil, err
	}
	start := time.Now()
	for q := range maxQ {
		w, err := d.newWorker(q, cpus, start)
		if errors.Is(err, errNoQueue) {
			break
		}
		if err != nil {
			return nil, err
		}
		d.workers = append(d.workers, w)
	}
	if c.ThreadedNAPI {
		for _, ifc := range d.ifaces {
			if err := SetThreadedNAPI(ifc.info.Name, ifc.info.Index, ifc.info.MAC, true); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

func openIface(ic InterfaceConfig, replace bool) (*iface, error) {
	l, err := netlink.LinkByName(ic.Name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	a := l.Attrs()
	info := InterfaceInfo{Name: ic.Name, Index: a.Index, MTU: a.MTU, Queues: a.NumRxQueues}
	if len(a.HardwareAddr) == 6 {
		copy(info.MAC[:], a.HardwareAddr)
	}
	if info.Queues < 1 {
		info.Queues = 1
	}
	if ic.Queues > 0 {
		if ic.Queues > info.Queues {
			return nil, fmt.Errorf("interface %s: %w: %d queues asked, it has %d", ic.Name, ErrBadConfig, ic.Queues, info.Queues)
		}
		info.Queues = ic.Queues
	}
	if info.Queues > xdpprog.MaxQueues {
		info.Queues = xdpprog.MaxQueues
	}
	mode, err := xdpprog.ParseMode(ic.XDPMode)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	prog, err := xdpprog.Attach(a.Index, xdpprog.Options{Mode: mode, Replace: replace})
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	info.XDPMode = prog.Mode().String()
	return &iface{info: info, cfg: ic, prog: prog, maps: prog}, nil
}

// parseZeroCopy parses InterfaceConfig.ZeroCopy: auto (or ""), on or off.
func parseZeroCopy(s string) (xsk.ZeroCopy, error) {
	switch s {
	case "", "auto":
		return xsk.ZeroCopyAuto, nil
	case "on":
		return xsk.ZeroCopyOn, nil
	case "off":
		return xsk.ZeroCopyOff, nil
	}
	return 0, fmt.Errorf("zero_copy %q (want auto, on or off)", s)
}

func (d *Dataplane) newWorker(q int, cpus []int, start time.Time) (_ *worker, err error) {
	c := &d.cfg
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: c.FrameSize, FrameCount: c.FrameCount})
	if err != nil {
		return nil, fmt.Errorf("queue %d: %w", q, err)
	}
	engine, err := NewEngineCore(sched.CoreConfig{ID: q, Capacity: c.ConnTableSize, Timeouts: c.ConnTimeouts,
		Persist: d.persist})
	if err != nil {
		_ = umem.Close()
		return nil, err
	}
	if c.Sync != nil {
		engine.SetSync(c.Sync.Ring(), c.Sync.Table(), c.Sync.Refresh(), c.Sync.Templates())
	}
	w := &worker{id: q, queue: q, umem: umem, engine: engine, batch: c.BatchSize, snap: &d.snap, capt: &d.capt,
		start: start, descs: make([]xsk.Desc, maxBatch), frames: make([]Frame, maxBatch),
		done: make(chan struct{})}
	if w.kern, err = newKernelTx(); err != nil {
		_ = umem.Close()
		return nil, fmt.Errorf("queue %d: %w", q, err)
	}
	w.cpu = cpus[q%len(cpus)]
	for _, ifc := range d.ifaces {
		w.busy = w.busy || ifc.cfg.BusyPoll
	}
	for _, ifc := range d.ifaces {
		if len(ifc.cfg.Cores) > 0 {
			w.cpu = ifc.cfg.Cores[q%len(ifc.cfg.Cores)]
			break
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.close())
		}
	}()
	for _, ifc := range d.ifaces {
		if q >= ifc.info.Queues {
			continue
		}
		zc, err := parseZeroCopy(ifc.cfg.ZeroCopy) // validated by New
		if err != nil {
			return nil, err
		}
		scfg := xsk.Config{Ifindex: ifc.info.Index, Queue: q, RxSize: c.RingSize, TxSize: c.RingSize,
			FillSize: c.RingSize, CompletionSize: c.RingSize, ZeroCopy: zc,
			TxBudget: maxBatch}
		u := umem
		var s *xsk.Socket
		if len(w.socks) > 0 && c.SeparateUMEMs {
			err = xsk.ErrSharedUMEM // as if the kernel had refused
		} else {
			s, err = xsk.Open(u, scfg)
		}
		if errors.Is(err, xsk.ErrSharedUMEM) {
			// The kernel will not share the UMEM with this interface: a UMEM of its own,
			// and frames forwarded between the two get copied.
			if u, err = xsk.NewUMEM(xsk.UMEMConfig{FrameSize: c.FrameSize, FrameCount: c.FrameCount}); err != nil {
				return nil, fmt.Errorf("interface %s queue %d: %w", ifc.info.Name, q, err)
			}
			s, err = xsk.Open(u, scfg)
			if err != nil {
				_ = u.Close()
			}
		}
		if err != nil && q > 0 && ifc.cfg.Queues == 0 && errors.Is(err, unix.EINVAL) {
			// The interface has fewer queues in use than allocated (veth allocates one
			// per CPU and uses one): the kernel refuses to bind past the last one in use.
			ifc.info.Queues = q
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("interface %s queue %d: %w", ifc.info.Name, q, err)
		}
		ifc.info.ZeroCopy = s.ZeroCopyOn()
		w.socks = append(w.socks, &wsock{s: s, u: u, ifindex: ifc.info.Index, ifname: ifc.info.Name,
			txq: make([]xsk.Desc, 0, maxBatch)})
	}
	if len(w.socks) == 0 {
		return nil, errNoQueue
	}
	// Share each UMEM's frames between its sockets' fill rings, leaving half for frames in
	// flight (being forwarded, on tx rings, awaiting completion).
	perUMEM := map[*xsk.UMEM]int{}
	for _, s := range w.socks {
		perUMEM[s.u]++
	}
	for _, s := range w.socks {
		s.fillCap = min(c.RingSize, s.u.FrameCount()/(2*perUMEM[s.u]))
	}
	w.fill() // stocked before the XDP program can redirect anything to the sockets
	w.pollfd = make([]unix.PollFd, len(w.socks))
	return w, nil
}

// Interfaces describes the interfaces New set up.
func (d *Dataplane) Interfaces() []InterfaceInfo {
	out := make([]InterfaceInfo, len(d.ifaces))
	for i, ifc := range d.ifaces {
		out[i] = ifc.info
	}
	return out
}

// Publish makes s the snapshot every worker uses from its next batch on, and brings the
// XDP programs' services and nat_backends maps in step with it: keys it adds are steered
// before the workers can see them, keys it drops stop being steered after; a service's
// changed Policy is in the programs before the workers see s (see applyPolicies). It also relists
// the host's own addresses into the programs' locals maps (kept current between publishes
// by address notifications), whose packets from NAT backends go to the kernel. On a map error
// the snapshot is still published and the error says which key failed.
func (d *Dataplane) Publish(s *Snapshot) error {
	if s == nil {
		return fmt.Errorf("publish: %w: nil snapshot", ErrBadService)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	svcs, nat := steeringKeys(s)
	// Keys are added before the workers can see them and deleted after; a key
	// counts as installed only once every program has it, and stays counted
	// until every program dropped it, so a failed map update is retried by
	// the next Publish.
	services, errs := d.addKeys(d.services, svcs, steeringMaps.AddService)
	nats, nerrs := d.addKeys(d.nat, nat, steeringMaps.AddNATBackend)
	errs = append(errs, nerrs...)
	errs = append(errs, d.applyPolicies(s)...)
	d.snap.Store(s)
	errs = append(errs, d.deleteKeys(services, svcs, steeringMaps.DeleteService)...)
	errs = append(errs, d.deleteKeys(nats, nat, steeringMaps.DeleteNATBackend)...)
	d.services, d.nat = services, nats
	if d.locals != nil { // nil only in tests of the maps
		if err := d.locals.sync(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addKeys adds to every program the keys of want that are not installed yet
// and returns the keys installed after it: those already installed and those
// every program took.
func (d *Dataplane) addKeys(installed, want map[xdpprog.Key]bool, add func(steeringMaps, xdpprog.Key) error) (map[xdpprog.Key]bool, []error) {
	out := maps.Clone(installed)
	var errs []error
	for k := range want {
		if installed[k] {
			continue
		}
		ok := true
		for _, ifc := range d.ifaces {
			if err := add(ifc.maps, k); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ifc.info.Name, err))
				ok = false
			}
		}
		if ok {
			out[k] = true
		}
	}
	return out, errs
}

// deleteKeys removes from every program the keys of installed that want no
// longer has, and from installed those every program dropped.
func (d *Dataplane) deleteKeys(installed, want map[xdpprog.Key]bool, del func(steeringMaps, xdpprog.Key) error) []error {
	var errs []error
	for k := range installed {
		if want[k] {
			continue
		}
		ok := true
		for _, ifc := range d.ifaces {
			if err := del(ifc.maps, k); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ifc.info.Name, err))
				ok = false
			}
		}
		if ok {
			delete(installed, k)
		}
	}
	return errs
}

// steeringKeys lists what the XDP program must steer for s: every service's (VIP, port,
// protocol) and every nat backend's (address, reply source port, protocol).
func steeringKeys(s *Snapshot) (svcs, nat map[xdpprog.Key]bool) {
	svcs, nat = map[xdpprog.Key]bool{}, map[xdpprog.Key]bool{}
	for i := range s.services {
		sv := &s.services[i]
		sv.each(func(f frontend) bool {
			svcs[xdpprog.Key{Addr: f.ip, Port: f.port, Proto: sv.spec.Proto}] = true
			return true
		})
		if sv.spec.Method != MethodNAT {
			continue
		}
		for j := range sv.targets {
			t := &sv.targets[j]
			nat[xdpprog.Key{Addr: t.ip, Port: t.natPort(sv.spec.Port), Proto: sv.spec.Proto}] = true
		}
	}
	return svcs, nat
}

// Snapshot returns the published snapshot (nil before the first Publish).
func (d *Dataplane) Snapshot() *Snapshot { return d.snap.Load() }

// Start starts the workers and, once their fill rings are stocked, has the XDP programs
// redirect to their sockets. They run until Close; ctx bounds the start only. A worker that
// cannot pin its thread runs unpinned and says so in WorkerErrors.
func (d *Dataplane) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return ErrClosed
	case d.started:
		return ErrStarted
	}
	d.started = true
	for _, w := range d.workers {
		go w.run()
	}
	// Wait until every worker has filled its rings, so a caller can send right away.
	for _, w := range d.workers {
		for !w.running.Load() {
			select {
			case <-w.done:
			case <-ctx.Done():
				return fmt.Errorf("start workers: %w", ctx.Err())
			case <-time.After(time.Millisecond):
				continue
			}
			break
		}
	}
	// Only now steer traffic to the sockets: their fill rings are stocked.
	for _, w := range d.workers {
		for _, s := range w.socks {
			ifc := d.iface(s.ifindex)
			if err := ifc.prog.RegisterSocket(w.queue, s.s.FD()); err != nil {
				return fmt.Errorf("%s: %w", ifc.info.Name, err)
			}
		}
	}
	return nil
}

func (d *Dataplane) iface(ifindex int) *iface {
	for _, ifc := range d.ifaces {
		if ifc.info.Index == ifindex {
			return ifc
		}
	}
	return nil
}

// Stats returns every worker's counters, as of its last batch. Safe while the workers run.
func (d *Dataplane) Stats() []WorkerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]WorkerStats, 0, len(d.workers))
	for _, w := range d.workers {
		ws := WorkerStats{Queue: w.queue, CPU: w.cpu, Counters: w.stats()}
		for _, s := range w.socks {
			ws.Interfaces = append(ws.Interfaces, s.ifname)
			if d.closed {
				continue
			}
			if k, err := s.s.Stats(); err == nil {
				ws.Kernel.RxDropped += k.RxDropped
				ws.Kernel.RxInvalid += k.RxInvalidDescs
				ws.Kernel.TxInvalid += k.TxInvalidDescs
				ws.Kernel.RxRingFull += k.RxRingFull
				ws.Kernel.FillRingEmpty += k.FillRingEmpty
				ws.Kernel.TxRingEmpty += k.TxRingEmpty
			}
		}
		out = append(out, ws)
	}
	return out
}

// Total adds up the counters of every worker.
func (d *Dataplane) Total() Counters {
	var t Counters
	for _, ws := range d.Stats() {
		t.Add(&ws.Counters)
	}
	return t
}

// WorkerErrors returns the problems workers met while running (a CPU they could not pin
// to), one per worker at most.
func (d *Dataplane) WorkerErrors() []error {
	var errs []error
	for _, w := range d.workers {
		if w.running.Load() || isClosed(w.done) {
			if w.runErr != nil {
				errs = append(errs, fmt.Errorf("worker %d: %w", w.id, w.runErr))
			}
		}
	}
	return errs
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Close stops the data path cleanly: the programs stop redirecting to the sockets (traffic
// goes to the kernel again), the workers forward what their rings still hold and wait for
// their transmissions to complete, then the programs are detached and the sockets and
// UMEMs released.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, ifc := range d.ifaces {
		for q := range ifc.info.Queues {
			if err := ifc.prog.UnregisterSocket(q); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, w := range d.workers {
		w.stop.Store(true)
	}
	if d.started {
		for _, w := range d.workers {
			<-w.done
		}
	}
	return errors.Join(append(errs, d.teardown())...)
}

// teardown detaches the programs and releases sockets and UMEMs (workers stopped).
func (d *Dataplane) teardown() error {
	var errs []error
	if d.locals != nil {
		d.locals.close()
	}
	for _, ifc := range d.ifaces {
		if err := ifc.prog.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, w := range d.workers {
		if err := w.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
