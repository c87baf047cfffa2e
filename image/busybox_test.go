//go:build linux

package image

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
)

func TestEnsureDefault(t *testing.T) {
	bin, err := findBusybox()
	if err != nil {
		testenv.Unmet(t, "%v", err)
	}
	s := newStore(t)
	created := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return created }
	img, err := s.EnsureDefault(t.Context())
	if err != nil {
		t.Fatalf("EnsureDefault() = %v", err)
	}
	if img.Name != DefaultImage || img.Source != "busybox:"+bin || !img.Created.Equal(created) {
		t.Errorf("EnsureDefault() = %+v, want name %q, source %q, created %v", img, DefaultImage, "busybox:"+bin, created)
	}
	rootfs, err := s.RootFS(DefaultImage)
	if err != nil {
		t.Fatalf("RootFS(%q) = %v", DefaultImage, err)
	}
	tree, _ := snapshot(t, rootfs)

	if n := tree["bin/sh"]; n.Type != "symlink" || n.Link != "/bin/busybox" {
		t.Errorf("bin/sh = %+v, want a symlink to /bin/busybox", n)
	}
	if n := tree["bin/busybox"]; n.Type != "file" || n.Mode != 0o755 {
		t.Errorf("bin/busybox = %v %v, want a file with mode 0755", n.Type, n.Mode)
	}
	for name, want := range map[string]fs.FileMode{
		"tmp": 0o777 | fs.ModeSticky, "var/tmp": 0o777 | fs.ModeSticky, "root": 0o700,
		"dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "home/user": 0o755,
		"etc": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "sbin": 0o755,
	} {
		if n := tree[name]; n.Type != "dir" || n.Mode != fs.ModeDir|want {
			t.Errorf("%s = %v %v, want a directory with mode %v", name, n.Type, n.Mode, fs.ModeDir|want)
		}
	}
	for name, want := range map[string]string{"etc/passwd": "root:x:0:0:", "etc/group": "user:x:1000:", "etc/hosts": "localhost", "etc/profile": "PS1="} {
		if !strings.Contains(tree[name].Data, want) {
			t.Errorf("%s = %q, want it to contain %q", name, tree[name].Data, want)
		}
	}
	if os.Geteuid() == 0 {
		for name, n := range tree {
			want := uint32(0)
			if name == "home/user" {
				want = 1000
			}
			if n.UID != want || n.GID != want {
				t.Errorf("%s is owned by %d:%d, want %d:%d", name, n.UID, n.GID, want, want)
			}
		}
	}

	// Idempotent: a second call returns the stored image untouched.
	s.now = func() time.Time { return created.Add(time.Hour) }
	again, err := s.EnsureDefault(t.Context())
	if err != nil {
		t.Fatalf("second EnsureDefault() = %v", err)
	}
	if diff := cmp.Diff(img, again); diff != "" {
		t.Errorf("second EnsureDefault() mismatch (-want +got):\n%s", diff)
	}
}

// TestEnsureDefaultRuns runs the default image's shell in a chroot.
func TestEnsureDefaultRuns(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := findBusybox(); err != nil {
		testenv.Unmet(t, "%v", err)
	}
	s := newStore(t)
	if _, err := s.EnsureDefault(t.Context()); err != nil {
		t.Fatalf("EnsureDefault() = %v", err)
	}
	rootfs, _ := s.RootFS(DefaultImage)
	cmd := exec.Command("/bin/sh", "-c", ". /etc/profile; id -un; ls /usr/sbin/chroot; echo ok > /tmp/x; cat /tmp/x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
	cmd.Dir = "/"
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if want := "root\n/usr/sbin/chroot\nok\n"; err != nil || string(out) != want {
		t.Errorf("sh in the default image = %q, %v, want %q", out, err, want)
	}
}

func TestFindBusyboxNotStatic(t *testing.T) {
	// A dynamically linked program posing as busybox.
	dyn, err := exec.LookPath("ls")
	if err != nil {
		testenv.Unmet(t, "ls not found")
	}
	dir := t.TempDir()
	if err := os.Symlink(dyn, filepath.Join(dir, "busybox")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	_, err = findBusybox()
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "busybox-static") {
		t.Errorf("findBusybox() with a dynamic busybox = %v, want %v with a hint", err, errdefs.ErrUnavailable)
	}
}
