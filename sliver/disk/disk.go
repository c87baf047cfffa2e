//go:build linux

// Package disk gives each sliver a writable layer whose size the kernel
// enforces: a btrfs subvolume with a qgroup limit. Writes beyond the limit
// fail with EDQUOT inside the sliver; the node's disk stays untouched.
//
// The pool lives in one directory. When that directory is on btrfs (a
// partition the operator mounted there) it is used as is; otherwise the pool
// creates a sparse file beside it, formats it as btrfs and mounts it through
// a loop device, so any host works and the file caps what all slivers
// together can use. A fresh layer costs one subvolume: a few KiB.
//
// Usage figures come from the qgroup counters, which the kernel updates when
// it commits a transaction (every few seconds, or on sync).
package disk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/plab/plab/errdefs"
	"golang.org/x/sys/unix"
)

// Config says where the pool lives.
type Config struct {
	// Dir holds one subvolume per sliver.
	Dir string
	// ImageFile is the sparse file formatted as btrfs when Dir is not on
	// btrfs already.
	ImageFile string
	// ImageSize is the size of ImageFile when it is created: the most all
	// slivers together can write.
	ImageSize int64
	// Log receives what the pool does to the host (nil: discard).
	Log *slog.Logger
}

// Pool is a directory of size-limited layers.
type Pool struct {
	dir   string
	uuid  string
	loop  bool
	dirfd int
	log   *slog.Logger

	mu    sync.Mutex
	stale map[uint64]bool // qgroups of deleted subvolumes not yet removed
}

// Open makes sure cfg.Dir is a btrfs filesystem with quotas enabled,
// creating and mounting the loop-backed file if needed.
func Open(ctx context.Context, cfg Config) (*Pool, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("open disk pool: %w", err)
	}
	loop := false
	if !isBtrfs(cfg.Dir) {
		if err := mountImage(ctx, cfg, log); err != nil {
			return nil, fmt.Errorf("open disk pool %s: %w", cfg.Dir, err)
		}
		loop = true
	}
	if err := os.Chmod(cfg.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("open disk pool: %w", err)
	}
	fd, err := unix.Open(cfg.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk pool: %w", err)
	}
	p := &Pool{dir: cfg.Dir, dirfd: fd, loop: loop, log: log, stale: map[uint64]bool{}}
	if p.uuid, err = fsUUID(fd); err != nil {
		p.Close()
		return nil, fmt.Errorf("open disk pool: read btrfs uuid: %w", err)
	}
	if _, err := os.Stat(p.qgroupDir()); err != nil {
		if err := quotaEnable(fd); err != nil {
			p.Close()
			return nil, fmt.Errorf("open disk pool: enable btrfs quotas on %s: %w", cfg.Dir, err)
		}
		log.Info("enabled btrfs quotas", "dir", cfg.Dir)
	}
	p.sweep()
	return p, nil
}

// Dir is the pool's directory.
func (p *Pool) Dir() string { return p.dir }

// LoopBacked reports whether the pool lives in a loop-mounted file.
func (p *Pool) LoopBacked() bool { return p.loop }

// Close releases the pool; layers and the mount stay.
func (p *Pool) Close() error {
	if p.dirfd < 0 {
		return nil
	}
	err := unix.Close(p.dirfd)
	p.dirfd = -1
	return err
}

func isBtrfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && uint32(st.Type) == unix.BTRFS_SUPER_MAGIC
}

// Path is the directory of layer name.
func (p *Pool) Path(name string) string { return filepath.Join(p.dir, name) }

// Create makes layer name: a subvolume capped at limit bytes holding
// upper/ (owned by uid:gid, the sliver's root) and work/ for overlayfs.
func (p *Pool) Create(name string, limit int64, uid, gid uint32) error {
	if err := subvolCreate(p.dirfd, name); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create layer %s: exists: %w", name, errdefs.ErrConflict)
		}
		return fmt.Errorf("create layer %s: %w", name, err)
	}
	err := p.SetLimit(name, limit)
	if err == nil {
		err = os.Mkdir(filepath.Join(p.Path(name), "upper"), 0o755)
	}
	if err == nil {
		err = os.Chown(filepath.Join(p.Path(name), "upper"), int(uid), int(gid))
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(p.Path(name), "work"), 0o700)
	}
	if err != nil {
		_ = p.Remove(name)
		return fmt.Errorf("create layer %s: %w", name, err)
	}
	return nil
}

// SetLimit changes the size limit of layer name; it applies at once.
func (p *Pool) SetLimit(name string, limit int64) error {
	fd, err := unix.Open(p.Path(name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("limit layer %s: %w", name, notFound(err))
	}
	defer unix.Close(fd)
	if err := qgroupLimit(fd, uint64(limit)); err != nil {
		return fmt.Errorf("limit layer %s: %w", name, err)
	}
	return nil
}

// Usage reports the bytes (data and metadata) layer name references, as of
// the last committed transaction.
func (p *Pool) Usage(name string) (int64, error) {
	id, err := p.id(name)
	if err != nil {
		return 0, fmt.Errorf("layer usage %s: %w", name, err)
	}
	b, err := os.ReadFile(filepath.Join(p.qgroupDir(), "0_"+strconv.FormatUint(id, 10), "referenced"))
	if err != nil {
		return 0, fmt.Errorf("layer usage %s: %w", name, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Sync commits the pool's filesystem so Usage is current.
func (p *Pool) Sync() error { return unix.Syncfs(p.dirfd) }

// Remove deletes layer name and everything in it. A missing layer is not an
// error.
func (p *Pool) Remove(name string) error {
	id, err := p.id(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove layer %s: %w", name, err)
	}
	if err := subvolDestroy(p.dirfd, name); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove layer %s: %w", name, err)
	}
	p.mu.Lock()
	p.stale[id] = true
	p.mu.Unlock()
	p.sweep()
	return nil
}

// List names the layers in the pool.
func (p *Pool) List() ([]string, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (p *Pool) id(name string) (uint64, error) {
	fd, err := unix.Open(p.Path(name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, notFound(err)
	}
	defer unix.Close(fd)
	return subvolID(fd)
}

func (p *Pool) qgroupDir() string {
	return filepath.Join("/sys/fs/btrfs", p.uuid, "qgroups")
}

// sweep removes the qgroups of deleted subvolumes. The kernel frees a
// deleted subvolume in the background and refuses to drop its qgroup until
// then, so what fails now is retried on the next sweep. At Open every
// level-0 qgroup without a subvolume counts as stale.
func (p *Pool) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.stale) == 0 {
		live := map[uint64]bool{topLevelSubvolume: true}
		names, _ := p.List()
		for _, n := range names {
			if id, err := p.id(n); err == nil {
				live[id] = true
			}
		}
		ents, _ := os.ReadDir(p.qgroupDir())
		for _, e := range ents {
			if s, ok := strings.CutPrefix(e.Name(), "0_"); ok {
				if id, err := strconv.ParseUint(s, 10, 64); err == nil && !live[id] {
					p.stale[id] = true
				}
			}
		}
	}
	for id := range p.stale {
		err := qgroupDestroy(p.dirfd, id)
		if err == nil || errors.Is(err, unix.ENOENT) {
			delete(p.stale, id)
		}
	}
}

func notFound(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return err
}

// Unmount unmounts a loop-backed pool (the loop device goes with it); the
// file and the layers in it stay for the next Open. A pool on a native
// btrfs is left alone.
func Unmount(cfg Config) error {
	if !isBtrfs(cfg.Dir) || !isMountOf(cfg.Dir, cfg.ImageFile) {
		return nil
	}
	if err := unix.Unmount(cfg.Dir, 0); err != nil {
		return fmt.Errorf("unmount disk pool %s: %w", cfg.Dir, err)
	}
	// The loop device clears itself (autoclear) once the mount is gone, but
	// the kernel does it a moment later: wait, so that what Unmount
	// returns to finds nothing of the pool left.
	deadline := time.Now().Add(5 * time.Second)
	for loopBacking(cfg.ImageFile) {
		if time.Now().After(deadline) {
			return fmt.Errorf("unmount disk pool %s: the loop device of %s is still attached after 5 s; detach it with losetup -d: %w", cfg.Dir, cfg.ImageFile, errdefs.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// loopBacking reports whether a loop device is backed by file.
func loopBacking(file string) bool {
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		if b, err := os.ReadFile(l); err == nil && strings.TrimSpace(string(b)) == file {
			return true
		}
	}
	return false
}

// mountImage mounts cfg.ImageFile on cfg.Dir, creating and formatting the
// file first if it does not exist.
func mountImage(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.ImageFile == "" {
		return fmt.Errorf("%s is not on btrfs and no image file is configured: %w", cfg.Dir, errdefs.ErrInvalid)
	}
	if _, err := os.Stat(cfg.ImageFile); errors.Is(err, os.ErrNotExist) {
		if err := makeImage(ctx, cfg); err != nil {
			return err
		}
		log.Info("created btrfs image for sliver layers", "file", cfg.ImageFile, "size", cfg.ImageSize)
	}
	dev, err := attachLoop(cfg.ImageFile)
	if err != nil {
		return err
	}
	defer dev.Close() // autoclear: the device goes when the mount goes
	if err := unix.Mount(dev.Name(), cfg.Dir, "btrfs", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", cfg.ImageFile, cfg.Dir, err)
	}
	log.Info("mounted sliver layers", "file", cfg.ImageFile, "dir", cfg.Dir, "device", dev.Name())
	return nil
}

func makeImage(ctx context.Context, cfg Config) error {
	mkfs, err := exec.LookPath("mkfs.btrfs")
	if err != nil {
		return fmt.Errorf("mkfs.btrfs not found; install btrfs-progs (apt-get install btrfs-progs) or mount a btrfs filesystem on %s: %w", cfg.Dir, errdefs.ErrUnavailable)
	}
	if cfg.ImageSize < 256<<20 {
		return fmt.Errorf("layer image size %d is too small; use at least 256MiB: %w", cfg.ImageSize, errdefs.ErrInvalid)
	}
	tmp := cfg.ImageFile + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create layer image: %w", err)
	}
	err = f.Truncate(cfg.ImageSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Metadata single, not DUP: a loop file's copies share one disk.
		out, merr := exec.CommandContext(ctx, mkfs, "-q", "-f", "-m", "single", "-d", "single", tmp).CombinedOutput()
		if merr != nil {
			err = fmt.Errorf("mkfs.btrfs: %w: %s", merr, strings.TrimSpace(string(out)))
		}
	}
	if err == nil {
		err = os.Rename(tmp, cfg.ImageFile)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create layer image %s: %w", cfg.ImageFile, err)
	}
	return nil
}

// isMountOf reports whether dir is the mount point of a loop device backed
// by file.
func isMountOf(dir, file string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != dir {
			continue
		}
		_, post, _ := strings.Cut(line, " - ")
		pf := strings.Fields(post)
		if len(pf) >= 2 && strings.HasPrefix(pf[1], "/dev/loop") {
			back, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(pf[1]), "loop/backing_file"))
			return strings.TrimSpace(string(back)) == file
		}
	}
	return false
}
