//go:build linux

package oci

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/plab/plab/errdefs"
	"golang.org/x/sys/unix"
)

// userns returns a file descriptor of a fresh user namespace that maps IDs
// 0..size-1 to base..base+size-1, for id-mapping the image. It costs one
// short-lived process: the sliver init started in the new namespace, where
// it blocks until it is killed.
func userns(initBin string, base, size uint32) (int, error) {
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: int(size)}}
	cmd := exec.Command(initBin)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: m,
		GidMappings: m,
		Pdeathsig:   syscall.SIGKILL,
	}
	// Pdeathsig fires when the creating thread exits; keep it alive.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("create user namespace: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open user namespace: %w", err)
	}
	return fd, nil
}

// mountRootfs mounts a sliver's root filesystem on target: overlayfs whose
// lower layer is the image seen through an id-mapped mount (so its root
// files belong to the sliver's root, without a chown or a copy) and whose
// upper layer is the sliver's own. scratch is an empty directory where the
// id-mapped image is attached for a moment; the overlay keeps its own
// reference, so only one mount per sliver stays on the host.
func mountRootfs(usernsFD int, image, upper, work, scratch, target string) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, image, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("clone image mount %s: %w", image, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{
		Attr_set:  unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID,
		Userns_fd: uint64(usernsFD),
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("id-map image %s: %w (keep images on a filesystem that supports id-mapped mounts, such as ext4, xfs or btrfs, on Linux 5.19 or later; tmpfs needs 6.3): %w", image, err, errdefs.ErrUnavailable)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, scratch, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach id-mapped image: %w", err)
	}
	defer func() { _ = unix.Unmount(scratch, unix.MNT_DETACH) }()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", scratch, upper, work)
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// unmountRootfs unmounts a sliver's root filesystem; an unmounted one is
// fine.
func unmountRootfs(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// isMountPoint reports whether path is the root of a mount.
func isMountPoint(path string) bool {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, 0, &st)
	return err == nil && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// checkSearchable fails unless every ancestor of dir lets other users
// search it: the sliver's root (an unprivileged host UID) must walk to its
// root filesystem.
func checkSearchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %o) is not searchable by other users, so slivers cannot reach their root filesystems; run chmod o+x %s", d, fi.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}
