//go:build linux

package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
	"golang.org/x/sys/unix"
)

// newPool opens a loop-backed pool in a temporary directory and unmounts it
// when the test ends, checking that no mount or loop device is left.
func newPool(t *testing.T) (*Pool, Config) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "mkfs.btrfs")
	dir := t.TempDir()
	cfg := Config{Dir: filepath.Join(dir, "layers"), ImageFile: filepath.Join(dir, "layers.btrfs"), ImageSize: 512 << 20}
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		p.Close()
		if err := Unmount(cfg); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		if mounted(cfg.Dir) {
			t.Errorf("%s is still mounted after Unmount", cfg.Dir)
		}
		if loopOf(cfg.ImageFile) != "" {
			t.Errorf("a loop device still backs %s", cfg.ImageFile)
		}
	})
	return p, cfg
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), " "+dir+" ")
}

func loopOf(file string) string {
	ents, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, e := range ents {
		if b, _ := os.ReadFile(e); strings.TrimSpace(string(b)) == file {
			return e
		}
	}
	return ""
}

func TestLayerLimitIsEnforced(t *testing.T) {
	p, _ := newPool(t)
	if !p.LoopBacked() {
		t.Fatal("pool on a temporary directory should be loop-backed")
	}
	const uid = 1 << 30
	if err := p.Create("s1", 4<<20, uid, uid); err != nil {
		t.Fatalf("Create: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(p.Path("s1"), "upper"), &st); err != nil || st.Uid != uid || st.Gid != uid {
		t.Fatalf("upper owner = %d:%d (%v), want %d:%d", st.Uid, st.Gid, err, uid, uid)
	}
	f, err := os.Create(filepath.Join(p.Path("s1"), "upper", "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	written := 0
	for written < 64<<20 {
		n, err := f.Write(buf)
		written += n
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			if !errors.Is(err, syscall.EDQUOT) {
				t.Fatalf("write error = %v, want EDQUOT", err)
			}
			break
		}
	}
	if written > 4<<20 {
		t.Errorf("wrote %d bytes into a 4MiB layer", written)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	used, err := p.Usage("s1")
	if err != nil || used < 1<<20 || used > 4<<20 {
		t.Errorf("Usage = %d, %v; want between 1MiB and 4MiB", used, err)
	}
	// A raised limit applies at once.
	if err := p.SetLimit("s1", 16<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(buf); err != nil {
		t.Errorf("write after raising the limit: %v", err)
	}
}

func TestCreateRemove(t *testing.T) {
	p, cfg := newPool(t)
	if err := p.Create("a", 1<<20, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Create("a", 1<<20, 0, 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second Create(a) = %v, want ErrConflict", err)
	}
	if err := os.WriteFile(filepath.Join(p.Path("a"), "upper", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if names, _ := p.List(); len(names) != 1 || names[0] != "a" {
		t.Errorf("List = %v, want [a]", names)
	}
	if err := p.Remove("a"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := p.Remove("a"); err != nil {
		t.Errorf("Remove(missing) = %v, want nil", err)
	}
	if _, err := p.Usage("a"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Usage(removed) = %v, want ErrNotFound", err)
	}
	if names, _ := p.List(); len(names) != 0 {
		t.Errorf("List after Remove = %v, want none", names)
	}
	// Reopening an existing image mounts it again with its layers.
	if err := p.Create("b", 1<<20, 0, 0); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := Unmount(cfg); err != nil {
		t.Fatal(err)
	}
	p2, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer p2.Close()
	if names, _ := p2.List(); len(names) != 1 || names[0] != "b" {
		t.Errorf("List after reopen = %v, want [b]", names)
	}
}

func TestOpenErrors(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	_, err := Open(context.Background(), Config{Dir: filepath.Join(dir, "l")})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Open without btrfs or image file = %v, want ErrInvalid", err)
	}
	_, err = Open(context.Background(), Config{Dir: filepath.Join(dir, "l"), ImageFile: filepath.Join(dir, "img"), ImageSize: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("Open with a 1MiB image = %v, want a too-small error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "img")); err == nil {
		t.Error("a failed Open left the image file behind")
	}
}
