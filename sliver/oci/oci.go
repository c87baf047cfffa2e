//go:build linux

// Package oci is the sliver backend that drives an OCI runtime binary (runc
// by default) with specs built from the runtime-spec types.
//
// A sliver here is: a btrfs subvolume holding its writable layer (sliver/disk,
// size enforced by a qgroup), an overlayfs root whose lower layer is the image
// id-mapped to the sliver's own host UID range, a tiny init as PID 1, and the
// runtime's container in fresh namespaces and cgroups. No shim or daemon runs
// per sliver: after Start the runtime exits and the init is the only process.
//
// On disk, under Config.StateDir:
//
//	lock                      held by the one process that manages slivers
//	init                      the sliver init (196 bytes)
//	images/<image>/           reference root filesystems (package image)
//	layers/<name>/{upper,work} per-sliver writable layers (package disk)
//	layers.btrfs              the loop-backed pool when layers/ is not btrfs
//	slivers/<name>/           sliver.json, the runtime bundle, rootfs/
package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/image"
	"github.com/plab/plab/internal/atomicfile"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/cgroups"
	"github.com/plab/plab/sliver/disk"
	"golang.org/x/sys/unix"
)

// Config configures the backend. Zero fields take the defaults below.
type Config struct {
	// StateDir holds images, layers and sliver records
	// (default /var/lib/plab/node).
	StateDir string
	// RunDir holds the runtime's state, lost at reboot with the slivers'
	// processes (default /run/plab).
	RunDir string
	// Runtime is the OCI runtime binary, a path or a name in PATH
	// (default runc).
	Runtime string
	// CgroupParent is the cgroup under which slivers live (default plab).
	CgroupParent string
	// UIDBase is the first host UID of the sliver ID ranges
	// (default 1<<30); sliver i owns UIDBase+i*65536 onward.
	UIDBase uint32
	// MaxSlivers bounds the number of slivers (default 4096).
	MaxSlivers int
	// CPUs is the CPU capacity reservations are carved from
	// (default: every CPU of the host).
	CPUs sliver.MilliCPU
	// LayerImageSize is the size of the loop-backed layer file, when one is
	// created (default 16GiB, sparse).
	LayerImageSize int64
	// Log receives what the backend does (nil: discard).
	Log *slog.Logger
}

// Defaults of Config.
const (
	DefaultStateDir       = "/var/lib/plab/node"
	DefaultRunDir         = "/run/plab"
	DefaultRuntime        = "runc"
	DefaultCgroupParent   = "plab"
	DefaultUIDBase        = 1 << 30
	DefaultMaxSlivers     = 4096
	DefaultLayerImageSize = 16 << 30
)

func (c Config) withDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.Runtime == "" {
		c.Runtime = DefaultRuntime
	}
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultCgroupParent
	}
	if c.UIDBase == 0 {
		c.UIDBase = DefaultUIDBase
	}
	if c.MaxSlivers == 0 {
		c.MaxSlivers = DefaultMaxSlivers
	}
	if c.CPUs == 0 {
		c.CPUs = sliver.MilliCPU(runtime.NumCPU() * 1000)
	}
	if c.LayerImageSize == 0 {
		c.LayerImageSize = DefaultLayerImageSize
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("sliver backend config: "+format+": %w", append(a, errdefs.ErrInvalid)...)
	}
	switch {
	case !filepath.IsAbs(c.StateDir) || !filepath.IsAbs(c.RunDir):
		return bad("state dir %q and run dir %q must be absolute paths", c.StateDir, c.RunDir)
	case c.UIDBase < sliver.IDRangeSize:
		return bad("uid base %d overlaps the host's own users; use at least %d", c.UIDBase, sliver.IDRangeSize)
	case c.MaxSlivers < 1 || uint64(c.UIDBase)+uint64(c.MaxSlivers)*sliver.IDRangeSize > math.MaxUint32:
		return bad("%d slivers of %d IDs from uid base %d exceed the 32-bit ID space; lower one of them", c.MaxSlivers, sliver.IDRangeSize, c.UIDBase)
	case c.CPUs <= 0:
		return bad("cpu capacity %s must be positive", c.CPUs)
	case !cgroupParentRE(c.CgroupParent):
		return bad("cgroup parent %q must be a relative path of letters, digits, '_', '-' and '/'", c.CgroupParent)
	}
	return nil
}

func cgroupParentRE(p string) bool {
	if p == "" || p[0] == '/' || filepath.Clean(p) != p {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '/' || r == '.') {
			return false
		}
	}
	return true
}

// Backend runs slivers with an OCI runtime. Create it with New.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	images  *image.Store
	pool    *disk.Pool
	cg      *cgroups.Hierarchy
	rt      *runc
	initBin string
	lock    *os.File
	swap    bool // the host accounts memory+swap (cgroup v1 memsw)

	mu      sync.Mutex // guards slivers
	slivers map[string]*entry
}

// entry is one sliver; its mutex serializes operations on it.
type entry struct {
	mu    sync.Mutex
	rec   record
	watch *initWatch // the running init, if any
	gone  bool       // destroyed: the entry is stale
}

var _ sliver.Backend = (*Backend)(nil)

// New opens the backend: it checks the host, takes the state directory's
// lock, and recovers the slivers found there (see Recover).
func New(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withIdentity()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("managing slivers needs root (namespaces, cgroups, mounts); run the command as root, e.g. with sudo: %w", errdefs.ErrDenied)
	}
	rtBin, err := exec.LookPath(cfg.Runtime)
	if err != nil {
		return nil, fmt.Errorf("OCI runtime %q not found; install runc (apt-get install runc) or name another with --runtime: %w", cfg.Runtime, errdefs.ErrUnavailable)
	}
	b := &Backend{cfg: cfg, log: cfg.Log, rt: &runc{bin: rtBin, root: filepath.Join(cfg.RunDir, "runc")}, slivers: map[string]*entry{}}
	if err := becomeSubreaper(); err != nil {
		b.log.Warn("cannot reap sliver inits; the host's init will", "err", err)
	}
	if err := b.open(ctx); err != nil {
		b.Close()
		return nil, err
	}
	if _, err := b.Recover(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Backend) open(ctx context.Context) error {
	for _, d := range []string{b.cfg.StateDir, b.sliversDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
	}
	if err := checkSearchable(b.cfg.StateDir); err != nil {
		return fmt.Errorf("state dir: %w: %w", err, errdefs.ErrInvalid)
	}
	if err := saveIdentity(b.cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(b.rt.root, 0o700); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	if err := b.takeLock(); err != nil {
		return err
	}
	var err error
	if b.images, err = image.Open(filepath.Join(b.cfg.StateDir, "images"), b.log); err != nil {
		return err
	}
	b.initBin = filepath.Join(b.cfg.StateDir, "init")
	if err := writeInit(b.initBin); err != nil {
		return err
	}
	if b.cg, err = cgroups.Detect(); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	for _, class := range []string{classReserved, classShared} {
		if err := b.cg.EnsureParent(b.cfg.CgroupParent + "/" + class); err != nil {
			return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
		}
	}
	if b.cg.Version() == cgroups.V1 {
		b.swap = b.memswAccounted()
	}
	b.pool, err = disk.Open(ctx, disk.Config{
		Dir:       filepath.Join(b.cfg.StateDir, "layers"),
		ImageFile: filepath.Join(b.cfg.StateDir, "layers.btrfs"),
		ImageSize: b.cfg.LayerImageSize,
		Log:       b.log,
	})
	return err
}

// takeLock makes this process the only one managing the state directory.
// The kernel drops the lock when the process dies, however it dies.
func (b *Backend) takeLock() error {
	path := filepath.Join(b.cfg.StateDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return fmt.Errorf("another plab process (pid %s) manages the slivers in %s; stop it, or run this command through it: %w",
			trimSpace(holder), b.cfg.StateDir, errdefs.ErrConflict)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	b.lock = f
	return nil
}

func trimSpace(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "unknown"
	}
	return s
}

func (b *Backend) memswAccounted() bool {
	for _, d := range b.cg.Dirs("") {
		if _, err := os.Stat(filepath.Join(d, "memory.memsw.limit_in_bytes")); err == nil {
			return true
		}
	}
	return false
}

// Close releases the backend and its lock; slivers keep running.
func (b *Backend) Close() error {
	b.mu.Lock()
	for _, e := range b.slivers {
		e.watch.close()
	}
	b.mu.Unlock()
	if b.pool != nil {
		b.pool.Close()
	}
	if b.lock != nil {
		b.lock.Close()
		b.lock = nil
	}
	return nil
}

// Images is the node's image store.
func (b *Backend) Images() *image.Store { return b.images }

// CgroupVersion reports the host's cgroup version.
func (b *Backend) CgroupVersion() cgroups.Version { return b.cg.Version() }

const (
	classReserved = "reserved"
	classShared   = "shared"
)

func (b *Backend) sliversDir() string { return filepath.Join(b.cfg.StateDir, "slivers") }

func (b *Backend) dir(name string) string { return filepath.Join(b.sliversDir(), name) }

func (b *Backend) rootfs(name string) string { return filepath.Join(b.dir(name), "rootfs") }

func (b *Backend) recordPath(name string) string { return filepath.Join(b.dir(name), "sliver.json") }

// cgroupRel is the cgroup of a sliver, relative to the hierarchy roots.
func (b *Backend) cgroupRel(r *record) string {
	class := classShared
	if r.Resources.Reserved() {
		class = classReserved
	}
	return b.cfg.CgroupParent + "/" + class + "/" + r.Name
}

func jsonMarshal(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func (b *Backend) save(r *record) error {
	data, err := jsonMarshal(r)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(b.recordPath(r.Name), data, 0o600); err != nil {
		return fmt.Errorf("save sliver %s: %w", r.Name, err)
	}
	return nil
}

// get returns the entry of a live sliver, locked. The caller unlocks it.
func (b *Backend) get(name string) (*entry, error) {
	if err := sliver.ValidateName(name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	e := b.slivers[name]
	b.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		if !e.gone {
			return e, nil
		}
		e.mu.Unlock()
	}
	return nil, fmt.Errorf("sliver %s does not exist; see plab sliver list: %w", name, errdefs.ErrNotFound)
}

// observe reports the state of a sliver as it is now: a sliver recorded as
// running whose init has died is stopped.
func observe(r *record) sliver.State {
	if r.State == sliver.Running && (r.Pid == 0 || procStart(r.Pid) != r.PidStart) {
		return sliver.Stopped
	}
	return r.State
}

func (b *Backend) info(r *record) sliver.Info {
	in := sliver.Info{
		Name: r.Name, Image: r.Image, State: observe(r), Resources: r.Resources,
		UIDBase: r.UIDBase, Created: r.Created, Started: r.Started,
	}
	if in.State == sliver.Running {
		in.Pid = r.Pid
	}
	return in
}

// Create prepares a sliver: its record, its ID range and its writable
// layer. Nothing is left behind when it fails.
func (b *Backend) Create(ctx context.Context, spec sliver.Spec) (sliver.Info, error) {
	if err := sliver.ValidateName(spec.Name); err != nil {
		return sliver.Info{}, err
	}
	res := spec.Resources.WithDefaults()
	if err := res.Validate(b.cfg.CPUs); err != nil {
		return sliver.Info{}, fmt.Errorf("create sliver %s: %w", spec.Name, err)
	}
	if spec.Image == "" {
		spec.Image = image.DefaultImage
	}
	if _, err := b.imageRoot(ctx, spec.Image); err != nil {
		return sliver.Info{}, fmt.Errorf("create sliver %s: %w", spec.Name, err)
	}

	b.mu.Lock()
	if _, ok := b.slivers[spec.Name]; ok {
		b.mu.Unlock()
		return sliver.Info{}, fmt.Errorf("sliver %s exists; destroy it first or choose another name: %w", spec.Name, errdefs.ErrConflict)
	}
	slot, err := b.freeSlot()
	if err == nil {
		err = b.checkReservation(spec.Name, res)
	}
	if err != nil {
		b.mu.Unlock()
		return sliver.Info{}, fmt.Errorf("create sliver %s: %w", spec.Name, err)
	}
	e := &entry{rec: record{
		Name: spec.Name, Image: spec.Image, State: sliver.Creating, Resources: res,
		Slot: slot, UIDBase: b.cfg.UIDBase + uint32(slot)*sliver.IDRangeSize,
		Created: time.Now().UTC().Truncate(time.Millisecond),
	}}
	e.mu.Lock()
	defer e.mu.Unlock()
	b.slivers[spec.Name] = e
	b.mu.Unlock()

	if err := b.create(&e.rec); err != nil {
		b.remove(e)
		return sliver.Info{}, fmt.Errorf("create sliver %s: %w", spec.Name, err)
	}
	if res.Reserved() {
		b.reweight()
	}
	b.log.Info("sliver created", "sliver", spec.Name, "image", spec.Image, "uid_base", e.rec.UIDBase)
	return b.info(&e.rec), nil
}

// create makes a sliver's directory, layer and record, in that order: a
// directory without a record marks a creation that did not finish, which
// Recover rolls back.
func (b *Backend) create(r *record) error {
	dir := b.dir(r.Name)
	if err := os.Mkdir(dir, 0o711); err != nil {
		return err
	}
	if err := b.pool.Create(r.Name, r.Resources.DiskBytes, r.UIDBase, r.UIDBase); err != nil {
		return err
	}
	for _, d := range []string{"rootfs", "lower"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o711); err != nil {
			return err
		}
	}
	r.State = sliver.Created
	return b.save(r)
}

// imageRoot returns the root directory of an image, building the default
// image on first use.
func (b *Backend) imageRoot(ctx context.Context, name string) (string, error) {
	root, err := b.images.RootFS(name)
	if errors.Is(err, errdefs.ErrNotFound) && name == image.DefaultImage {
		if _, err = b.images.EnsureDefault(ctx); err == nil {
			root, err = b.images.RootFS(name)
		}
	}
	return root, err
}

// freeSlot picks the lowest free ID range. Called with b.mu held.
func (b *Backend) freeSlot() (int, error) {
	used := make(map[int]bool, len(b.slivers))
	for _, e := range b.slivers {
		used[e.rec.Slot] = true
	}
	for s := 0; s < b.cfg.MaxSlivers; s++ {
		if !used[s] {
			return s, nil
		}
	}
	return 0, fmt.Errorf("this node holds its maximum of %d slivers; destroy one first: %w", b.cfg.MaxSlivers, errdefs.ErrNoCapacity)
}

// checkReservation refuses a CPU reservation the node cannot guarantee.
// Called with b.mu held.
func (b *Backend) checkReservation(name string, r sliver.Resources) error {
	if !r.Reserved() {
		return nil
	}
	var sum sliver.MilliCPU
	for n, e := range b.slivers {
		if n != name {
			sum += e.rec.Resources.CPUReserve
		}
	}
	if sum+r.CPUReserve > b.cfg.CPUs {
		return fmt.Errorf("cpu reservation %s does not fit: %s of this node's %s is reserved already: %w", r.CPUReserve, sum, b.cfg.CPUs, errdefs.ErrNoCapacity)
	}
	return nil
}

// Weights are in cgroup v2 units; weightScale is the whole node.
const weightScale = 10000

// reservedWeight is a reserved sliver's CPU weight: its fraction of the
// node's capacity.
func (b *Backend) reservedWeight(m sliver.MilliCPU) int {
	return max(1, int(int64(m)*weightScale/int64(b.cfg.CPUs)))
}

// weight is a sliver's CPU weight among its siblings.
func (b *Backend) weight(r sliver.Resources) int {
	if r.Reserved() {
		return b.reservedWeight(r.CPUReserve)
	}
	return r.CPUShares * 100
}

// reweight sets the weights of the two CPU classes: reserved slivers
// together get the fraction of the node they reserved, best-effort slivers
// the rest. Under full load each reserved sliver thus gets its reservation;
// what anyone leaves idle goes to the others.
func (b *Backend) reweight() {
	b.mu.Lock()
	var sum sliver.MilliCPU
	for _, e := range b.slivers {
		sum += e.rec.Resources.CPUReserve
	}
	b.mu.Unlock()
	reserved := b.reservedWeight(sum)
	shared := max(1, weightScale-reserved)
	for class, w := range map[string]int{classReserved: reserved, classShared: shared} {
		if err := b.cg.SetCPUWeight(b.cfg.CgroupParent+"/"+class, w); err != nil {
			b.log.Error("set class cpu weight", "class", class, "err", err)
		}
	}
}

// Start starts a created or stopped sliver.
func (b *Backend) Start(ctx context.Context, name string) error {
	e, err := b.get(name)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	state := observe(&e.rec)
	if state == sliver.Running {
		return nil
	}
	if err := sliver.Transition(state, sliver.Running); err != nil {
		return fmt.Errorf("start sliver %s: %w", name, err)
	}
	if err := b.start(ctx, e); err != nil {
		if cerr := b.stopRuntime(context.WithoutCancel(ctx), e); cerr != nil {
			b.log.Error("clean up failed start", "sliver", name, "err", cerr)
		}
		return fmt.Errorf("start sliver %s: %w", name, err)
	}
	b.log.Info("sliver started", "sliver", name, "pid", e.rec.Pid)
	return nil
}

func (b *Backend) start(ctx context.Context, e *entry) error {
	r := &e.rec
	if b.rt.exists(r.Name) {
		if err := b.stopRuntime(ctx, e); err != nil {
			return err
		}
	}
	imageRoot, err := b.imageRoot(ctx, r.Image)
	if err != nil {
		return err
	}
	dir := b.dir(r.Name)
	t0 := time.Now()
	if !isMountPoint(b.rootfs(r.Name)) {
		fd, err := userns(b.initBin, r.UIDBase, sliver.IDRangeSize)
		if err != nil {
			return err
		}
		layer := b.pool.Path(r.Name)
		err = mountRootfs(fd, imageRoot, filepath.Join(layer, "upper"), filepath.Join(layer, "work"), filepath.Join(dir, "lower"), b.rootfs(r.Name))
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	res := sliverResources(r.Resources, b.weight(r.Resources), b.cg.Version(), b.swap)
	spec := sliverSpec(b.rootfs(r.Name), r.Name, b.initBin, r.UIDBase, "/"+b.cgroupRel(r), res)
	data, err := jsonMarshal(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return err
	}
	pidFile := filepath.Join(dir, "init.pid")
	os.Remove(pidFile)
	os.Remove(filepath.Join(dir, ".init.pid")) // the runtime's temporary, if a start was killed
	t1 := time.Now()
	if err := b.rt.run(ctx, r.Name, dir, pidFile); err != nil {
		return err
	}
	b.log.Debug("sliver runtime started", "sliver", r.Name, "rootfs", t1.Sub(t0), "runtime", time.Since(t1))
	pidb, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("read init pid: %w", err)
	}
	pid, err := strconv.Atoi(trimSpace(pidb))
	if err != nil {
		return fmt.Errorf("read init pid: %w", err)
	}
	r.State, r.Pid, r.PidStart, r.Started = sliver.Running, pid, procStart(pid), time.Now().UTC().Truncate(time.Millisecond)
	if e.watch, err = watchInit(r.Pid, r.PidStart); err != nil {
		return err
	}
	// The sliver's mount namespace holds its root now; the host's copy of
	// the mount would only grow the host's mount table (which every later
	// start copies and scans), so it goes.
	if err := unmountRootfs(b.rootfs(r.Name)); err != nil {
		return err
	}
	return b.save(r)
}

// Stop kills every process of a sliver and unmounts its root; its files
// stay.
func (b *Backend) Stop(ctx context.Context, name string) error {
	e, err := b.get(name)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	if err := sliver.Transition(observe(&e.rec), sliver.Stopped); err != nil {
		return fmt.Errorf("stop sliver %s: %w", name, err)
	}
	if err := b.stopRuntime(ctx, e); err != nil {
		return fmt.Errorf("stop sliver %s: %w", name, err)
	}
	e.rec.State = sliver.Stopped
	e.rec.Pid, e.rec.PidStart = 0, 0
	if err := b.save(&e.rec); err != nil {
		return err
	}
	b.log.Info("sliver stopped", "sliver", name)
	return nil
}

// stopRuntime removes everything a started sliver has on the host besides
// its files: the runtime's container, every process, the cgroups and the
// root filesystem mount. It is idempotent.
func (b *Backend) stopRuntime(ctx context.Context, e *entry) error {
	r := &e.rec
	var errs []error
	t0 := time.Now()
	if e.watch == nil {
		e.watch = b.adoptInit(r)
	}
	if e.watch != nil {
		// Killing the init ourselves and reaping it at once beats the
		// runtime's forced delete, which polls every 100ms.
		if err := e.watch.kill(ctx); err != nil {
			errs = append(errs, err)
		}
		e.watch.close()
		e.watch = nil
	}
	if err := b.rt.delete(ctx, r.Name, filepath.Join(b.dir(r.Name), "runc.log")); err != nil {
		errs = append(errs, err)
	}
	t1 := time.Now()
	// The runtime removes the cgroups it made; whatever survived a crash
	// (or a failed delete) goes here.
	rel := b.cgroupRel(r)
	if err := b.cg.Kill(rel, time.Now().Add(10*time.Second)); err != nil {
		errs = append(errs, err)
	} else if err := b.cg.Remove(rel); err != nil {
		errs = append(errs, err)
	}
	// The root, and the id-mapped image if a start died while it was
	// attached for a moment.
	for _, m := range []string{b.rootfs(r.Name), filepath.Join(b.dir(r.Name), "lower")} {
		if err := unmountRootfs(m); err != nil {
			errs = append(errs, err)
		}
	}
	b.log.Debug("sliver runtime stopped", "sliver", r.Name, "runtime", t1.Sub(t0), "cgroups+mount", time.Since(t1))
	return errors.Join(errs...)
}

// adoptInit finds the init of a container whose start was never recorded
// (the starting process died between the runtime's start and its record):
// the PID the runtime wrote, if that process lives in the sliver's cgroup.
// Watching it lets stopRuntime kill and reap it like any other.
func (b *Backend) adoptInit(r *record) *initWatch {
	raw, err := os.ReadFile(filepath.Join(b.dir(r.Name), "init.pid"))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(trimSpace(raw))
	if err != nil || pid <= 0 {
		return nil
	}
	if reapZombieChild(pid) {
		return nil // it died already; it was ours to reap
	}
	start := procStart(pid)
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || !strings.Contains(string(cg), ":/"+b.cgroupRel(r)+"\n") {
		return nil
	}
	w, err := watchInit(pid, start)
	if err != nil {
		return nil
	}
	return w
}

// Destroy stops a sliver and removes all of it.
func (b *Backend) Destroy(ctx context.Context, name string) error {
	e, err := b.get(name)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	if err := b.stopRuntime(ctx, e); err != nil {
		return fmt.Errorf("destroy sliver %s: %w", name, err)
	}
	if err := b.remove(e); err != nil {
		return fmt.Errorf("destroy sliver %s: %w", name, err)
	}
	if e.rec.Resources.Reserved() {
		b.reweight()
	}
	reapStrays()
	b.log.Info("sliver destroyed", "sliver", name)
	return nil
}

// remove deletes a stopped sliver's layer and directory and forgets it.
// Called with e.mu held.
func (b *Backend) remove(e *entry) error {
	name := e.rec.Name
	t0 := time.Now()
	if err := b.pool.Remove(name); err != nil {
		return err
	}
	t1 := time.Now()
	if err := removeUnmounted(b.dir(name)); err != nil {
		return err
	}
	b.log.Debug("sliver files removed", "sliver", name, "layer", t1.Sub(t0), "dir", time.Since(t1))
	e.gone = true
	b.mu.Lock()
	if b.slivers[name] == e {
		delete(b.slivers, name)
	}
	b.mu.Unlock()
	return nil
}

// removeUnmounted removes dir and everything in it, but refuses, before
// removing anything, if a mount point lies inside: a mount there would be
// the shared image or a sliver's root, never something to delete.
func removeUnmounted(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && isMountPoint(p) {
			return fmt.Errorf("%s is still mounted; run plab node cleanup: %w", p, errdefs.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return os.RemoveAll(dir)
}

// Update changes a sliver's limits, live when it runs. The CPU class
// (best effort or reserved) cannot change while the sliver exists.
func (b *Backend) Update(ctx context.Context, name string, r sliver.Resources) error {
	e, err := b.get(name)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	r = r.WithDefaults()
	if err := r.Validate(b.cfg.CPUs); err != nil {
		return fmt.Errorf("update sliver %s: %w", name, err)
	}
	if r.Reserved() != e.rec.Resources.Reserved() {
		return fmt.Errorf("update sliver %s: a sliver cannot move between best-effort and reserved CPU while it exists; destroy and recreate it: %w", name, errdefs.ErrInvalid)
	}
	b.mu.Lock()
	err = b.checkReservation(name, r)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("update sliver %s: %w", name, err)
	}
	if observe(&e.rec) == sliver.Running {
		res := sliverResources(r, b.weight(r), b.cg.Version(), b.swap)
		if err := b.rt.update(ctx, name, filepath.Join(b.dir(name), "runc.log"), &res); err != nil {
			return fmt.Errorf("update sliver %s: %w", name, err)
		}
	}
	if err := b.pool.SetLimit(name, r.DiskBytes); err != nil {
		return fmt.Errorf("update sliver %s: %w", name, err)
	}
	b.mu.Lock() // checkReservation reads every sliver's resources under b.mu
	e.rec.Resources = r
	b.mu.Unlock()
	if err := b.save(&e.rec); err != nil {
		return err
	}
	if r.Reserved() {
		b.reweight()
	}
	return nil
}

// State reports one sliver.
func (b *Backend) State(ctx context.Context, name string) (sliver.Info, error) {
	e, err := b.get(name)
	if err != nil {
		return sliver.Info{}, err
	}
	defer e.mu.Unlock()
	return b.info(&e.rec), nil
}

// Stats reports a sliver's usage. A sliver that is not running reports only
// its disk.
func (b *Backend) Stats(ctx context.Context, name string) (sliver.Stats, error) {
	e, err := b.get(name)
	if err != nil {
		return sliver.Stats{}, err
	}
	defer e.mu.Unlock()
	var st sliver.Stats
	if observe(&e.rec) == sliver.Running {
		u, err := b.cg.Usage(b.cgroupRel(&e.rec))
		if err != nil {
			return st, fmt.Errorf("stats of sliver %s: %w", name, err)
		}
		st = sliver.Stats{CPUTime: u.CPU, MemoryBytes: u.MemoryBytes, OOMKills: u.OOMKills, Processes: u.Pids}
	}
	if st.DiskBytes, err = b.pool.Usage(name); err != nil {
		return st, fmt.Errorf("stats of sliver %s: %w", name, err)
	}
	return st, nil
}

// SyncDisk commits the layer filesystem so disk usage in Stats is current.
func (b *Backend) SyncDisk() error { return b.pool.Sync() }

// List reports every sliver, sorted by name.
func (b *Backend) List(ctx context.Context) ([]sliver.Info, error) {
	b.mu.Lock()
	entries := make([]*entry, 0, len(b.slivers))
	for _, e := range b.slivers {
		entries = append(entries, e)
	}
	b.mu.Unlock()
	infos := make([]sliver.Info, 0, len(entries))
	for _, e := range entries {
		e.mu.Lock()
		if !e.gone {
			infos = append(infos, b.info(&e.rec))
		}
		e.mu.Unlock()
	}
	slices.SortFunc(infos, func(a, b sliver.Info) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return infos, nil
}

// Recover reads the state directory and reconciles it with the host:
//   - a sliver whose creation was interrupted is rolled back;
//   - a sliver recorded as running whose init is gone is cleaned up and
//     marked stopped (the caller decides whether to start it again);
//   - runtime containers, layers and cgroups that belong to no sliver are
//     removed.
func (b *Backend) Recover(ctx context.Context) ([]sliver.Info, error) {
	ents, err := os.ReadDir(b.sliversDir())
	if err != nil {
		return nil, fmt.Errorf("recover slivers: %w", err)
	}
	var errs []error
	for _, d := range ents {
		if !d.IsDir() || sliver.ValidateName(d.Name()) != nil {
			continue
		}
		if err := b.recoverOne(ctx, d.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, b.removeOrphans(ctx)...)
	reapStrays()
	if b.anyReserved() {
		b.reweight()
	}
	infos, _ := b.List(ctx)
	return infos, errors.Join(errs...)
}

func (b *Backend) recoverOne(ctx context.Context, name string) error {
	b.mu.Lock()
	e := b.slivers[name]
	b.mu.Unlock()
	if e == nil {
		r, err := readRecord(b.recordPath(name))
		if errors.Is(err, fs.ErrNotExist) {
			// Interrupted right after the directory was made.
			r = record{Name: name, State: sliver.Creating}
		} else if err != nil {
			return fmt.Errorf("recover sliver %s: %w", name, err)
		}
		e = &entry{rec: r}
		b.mu.Lock()
		if _, dup := b.slivers[name]; !dup {
			b.slivers[name] = e
		}
		b.mu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := &e.rec
	switch observe(r) {
	case sliver.Creating:
		b.log.Warn("rolling back interrupted sliver creation", "sliver", name)
		if err := b.stopRuntime(ctx, e); err != nil {
			return err
		}
		return b.remove(e)
	case sliver.Running:
		if e.watch != nil {
			return nil
		}
		w, err := watchInit(r.Pid, r.PidStart)
		if err == nil {
			e.watch = w
			return nil
		}
		// The init died a moment ago: clean up below.
	}
	// Not running: nothing of the runtime may remain.
	if b.rt.exists(name) || isMountPoint(b.rootfs(name)) || r.State == sliver.Running {
		if r.State == sliver.Running {
			b.log.Warn("sliver init is gone; marking stopped", "sliver", name, "pid", r.Pid)
			r.State = sliver.Stopped
		}
		if err := b.stopRuntime(ctx, e); err != nil {
			return fmt.Errorf("recover sliver %s: %w", name, err)
		}
		r.Pid, r.PidStart = 0, 0
		return b.save(r)
	}
	return nil
}

// removeOrphans removes runtime containers, layers and cgroups that belong
// to no sliver: what a crash in the middle of Create or Destroy can leave.
func (b *Backend) removeOrphans(ctx context.Context) []error {
	b.mu.Lock()
	known := make(map[string]bool, len(b.slivers))
	for n := range b.slivers {
		known[n] = true
	}
	b.mu.Unlock()
	var errs []error
	for _, id := range b.rt.ids() {
		if !known[id] {
			b.log.Warn("removing orphaned runtime container", "id", id)
			if err := b.rt.delete(ctx, id, filepath.Join(b.cfg.RunDir, "orphan.log")); err != nil {
				errs = append(errs, err)
			}
		}
	}
	layers, _ := b.pool.List()
	for _, n := range layers {
		if !known[n] {
			b.log.Warn("removing orphaned layer", "layer", n)
			if err := b.pool.Remove(n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, class := range []string{classReserved, classShared} {
		for _, d := range b.cg.Dirs(b.cfg.CgroupParent + "/" + class) {
			sub, _ := os.ReadDir(d)
			for _, s := range sub {
				if s.IsDir() && !known[s.Name()] {
					rel := b.cfg.CgroupParent + "/" + class + "/" + s.Name()
					b.log.Warn("removing orphaned cgroup", "cgroup", rel)
					if err := b.cg.Kill(rel, time.Now().Add(10*time.Second)); err != nil {
						errs = append(errs, err)
					} else if err := b.cg.Remove(rel); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	return errs
}

func (b *Backend) anyReserved() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.slivers {
		if e.rec.Resources.Reserved() {
			return true
		}
	}
	return false
}

// Cleanup removes every kernel object and process the backend made on the
// host (runtime containers, sliver processes, cgroups, root filesystem
// mounts, the layer pool's mount and loop device), keeping the slivers'
// files and records: a later New finds them stopped. It needs no lock
// holder to cooperate: it is what an operator runs when things went wrong.
func Cleanup(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withIdentity()
	if err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	var errs []error
	rt := &runc{bin: cfg.Runtime, root: filepath.Join(cfg.RunDir, "runc")}
	if bin, err := exec.LookPath(cfg.Runtime); err == nil {
		rt.bin = bin
		for _, id := range rt.ids() {
			if err := rt.delete(ctx, id, filepath.Join(cfg.RunDir, "cleanup.log")); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if cg, err := cgroups.Detect(); err == nil {
		if err := cg.Kill(cfg.CgroupParent, time.Now().Add(10*time.Second)); err != nil {
			errs = append(errs, err)
		} else if err := cg.Remove(cfg.CgroupParent); err != nil {
			errs = append(errs, err)
		}
	}
	sliversDir := filepath.Join(cfg.StateDir, "slivers")
	ents, _ := os.ReadDir(sliversDir)
	for _, d := range ents {
		for _, m := range []string{"rootfs", "lower"} {
			if p := filepath.Join(sliversDir, d.Name(), m); isMountPoint(p) {
				if err := unmountRootfs(p); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := disk.Unmount(disk.Config{Dir: filepath.Join(cfg.StateDir, "layers"), ImageFile: filepath.Join(cfg.StateDir, "layers.btrfs")}); err != nil {
		errs = append(errs, err)
	}
	os.Remove(filepath.Join(cfg.RunDir, "cleanup.log"))
	os.RemoveAll(filepath.Join(cfg.RunDir, "runc"))
	os.RemoveAll(filepath.Join(cfg.RunDir, "exec"))
	return errors.Join(errs...)
}

// RemoveImage removes an image that no sliver uses.
func (b *Backend) RemoveImage(ctx context.Context, name string) error {
	b.mu.Lock()
	var users []string
	for n, e := range b.slivers {
		if e.rec.Image == name {
			users = append(users, n)
		}
	}
	b.mu.Unlock()
	if len(users) > 0 {
		slices.Sort(users)
		return fmt.Errorf("image %s is used by sliver(s) %v; destroy them first: %w", name, users, errdefs.ErrConflict)
	}
	return b.images.Remove(name)
}
