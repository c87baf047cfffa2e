// Command idmapcheck proves that the running kernel supports id-mapped
// mounts (mount_setattr MOUNT_ATTR_IDMAP) and overlayfs with an id-mapped
// lower layer. It needs root. It is a probe for hack/vm/run, not part of plab.
//
// Usage: idmapcheck [BASEDIR]
//
// Under BASEDIR (default: a fresh dir in os.TempDir()) it creates src/ with a
// file owned by 0:0, id-maps src/ onto idmapped/ through a user namespace that
// maps 0 -> 1000000 (size 65536), mounts overlayfs with idmapped/ as lowerdir
// and checks that the file shows up owned by 1000000:1000000 in both places.
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	hostBase = 1000000
	mapSize  = 65536
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--userns-child" {
		// Block until the parent closes our stdin.
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idmapcheck: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("idmapcheck: PASS")
}

func run() (err error) {
	base := ""
	if len(os.Args) > 1 {
		base = os.Args[1]
		if err := os.MkdirAll(base, 0o755); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp(base, "idmapcheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	fmt.Printf("idmapcheck: base %s (fs magic 0x%x)\n", dir, st.Type)

	src := filepath.Join(dir, "src")
	idm := filepath.Join(dir, "idmapped")
	upper := filepath.Join(dir, "upper")
	work := filepath.Join(dir, "work")
	merged := filepath.Join(dir, "merged")
	for _, d := range []string{src, idm, upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("hello\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(src, "f"), 0, 0); err != nil {
		return err
	}

	// A user namespace to take the mapping from: a child that blocks.
	child := exec.Command("/proc/self/exe", "--userns-child")
	stdin, err := child.StdinPipe()
	if err != nil {
		return err
	}
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostBase, Size: mapSize}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostBase, Size: mapSize}},
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start userns child: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = child.Wait()
	}()
	nsPath := fmt.Sprintf("/proc/%d/ns/user", child.Process.Pid)
	nsFd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", nsPath, err)
	}
	defer unix.Close(nsFd)

	treeFd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree(%s, OPEN_TREE_CLONE): %w", src, err)
	}
	defer unix.Close(treeFd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsFd)}
	if err := unix.MountSetattr(treeFd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr(MOUNT_ATTR_IDMAP) on %s: %w", src, err)
	}
	if err := unix.MoveMount(treeFd, "", unix.AT_FDCWD, idm, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", idm, err)
	}
	defer unix.Unmount(idm, unix.MNT_DETACH)
	if err := checkOwner(filepath.Join(idm, "f"), hostBase); err != nil {
		return fmt.Errorf("id-mapped mount: %w", err)
	}
	fmt.Printf("idmapcheck: id-mapped mount OK: %s/f owned by %d\n", idm, hostBase)

	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", idm, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay (%s) with id-mapped lowerdir: %w", opts, err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	if err := checkOwner(filepath.Join(merged, "f"), hostBase); err != nil {
		return fmt.Errorf("overlay over id-mapped lower: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(merged, "f"))
	if err != nil || string(b) != "hello\n" {
		return fmt.Errorf("read through overlay: %q, %v", b, err)
	}
	// Copy-up keeps the mapped owner.
	if err := os.WriteFile(filepath.Join(merged, "f"), []byte("changed\n"), 0o644); err != nil {
		return fmt.Errorf("write through overlay (copy-up): %w", err)
	}
	if err := checkOwner(filepath.Join(upper, "f"), hostBase); err != nil {
		return fmt.Errorf("copied-up file: %w", err)
	}
	fmt.Printf("idmapcheck: overlay with id-mapped lowerdir OK: %s/f owned by %d, copy-up owned by %d\n", merged, hostBase, hostBase)
	return nil
}

func checkOwner(path string, want uint32) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return err
	}
	if st.Uid != want || st.Gid != want {
		return fmt.Errorf("%s owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, want, want)
	}
	return nil
}
