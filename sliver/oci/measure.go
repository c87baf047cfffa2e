//go:build linux

package oci

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/plab/plab/image"
	"github.com/plab/plab/sliver"
	"golang.org/x/sys/unix"
)

// BareStarts times n starts of the runtime on the default image with a
// sliver's OCI config, but without anything plab adds around it (no
// writable layer, no id-mapped overlay, no record): the baseline plab's
// creation latency is compared with. Each container is removed after it is
// timed.
func (b *Backend) BareStarts(ctx context.Context, n int) ([]time.Duration, error) {
	root, err := b.imageRoot(ctx, image.DefaultImage)
	if err != nil {
		return nil, err
	}
	bundle, err := os.MkdirTemp(b.cfg.RunDir, "bare-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bundle)
	if err := os.Chmod(bundle, 0o711); err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range n {
		id := fmt.Sprintf("plab-bare-%d-%d", os.Getpid(), i)
		rel := b.cfg.CgroupParent + "/" + classShared + "/" + id
		res := sliverResources(sliver.DefaultResources, 100, b.cg.Version(), b.swap)
		spec := sliverSpec(root, "bare", b.initBin, b.cfg.UIDBase+uint32(b.cfg.MaxSlivers-1)*65536, "/"+rel, res)
		spec.Root.Readonly = true
		data, err := jsonMarshal(spec)
		if err != nil {
			return out, err
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
			return out, err
		}
		pidFile := filepath.Join(bundle, "pid")
		t := time.Now()
		err = b.rt.run(ctx, id, bundle, pidFile)
		d := time.Since(t)
		if err == nil {
			out = append(out, d)
			// The init is this process's child now (subreaper): kill and
			// reap it as Stop does, or it stays a zombie.
			err = killBare(ctx, pidFile)
		}
		if derr := b.rt.delete(ctx, id, filepath.Join(bundle, "runc.log")); derr != nil && err == nil {
			err = derr
		}
		_ = b.cg.Remove(rel)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// LayerBytesUsed reports the bytes in use on the layer pool's filesystem,
// after committing it.
func (b *Backend) LayerBytesUsed() (int64, error) {
	if err := b.pool.Sync(); err != nil {
		return 0, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(b.pool.Dir(), &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

// StateBytes reports the disk space a sliver's directory takes on the state
// filesystem (record, runtime bundle), not counting its mounted root.
func (b *Backend) StateBytes(name string) int64 {
	var n int64
	root := b.dir(name)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p != root && isMountPoint(p) {
			return filepath.SkipDir
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

func killBare(ctx context.Context, pidFile string) error {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return err
	}
	w, err := watchInit(pid, procStart(pid))
	if err != nil {
		return err
	}
	defer w.close()
	return w.kill(ctx)
}
