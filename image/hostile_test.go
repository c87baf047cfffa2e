//go:build linux

package image

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
)

// errAny stands for "some error" in a test table.
var errAny = errors.New("any error")

// escapeName is a file no test may create on the host; it stands in for
// /etc/passwd, which a broken extractor would clobber.
const escapeName = "plab-image-escape-test"

// hostileCase is a tar that tries to write outside the image root, where
// outside is a directory next to the store holding the file "victim".
type hostileCase struct {
	name    string
	entries []entry
	want    error                    // nil, errAny or an errdefs kind
	check   func(*testing.T, string) // on success, given the rootfs
}

func hostileCases(outside string) []hostileCase {
	isFile := func(name, data string) func(*testing.T, string) {
		return func(t *testing.T, rootfs string) {
			if fi, err := os.Lstat(filepath.Join(rootfs, name)); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("Lstat(%s) = %v, want a regular file", name, err)
			}
			if b, err := os.ReadFile(filepath.Join(rootfs, name)); err != nil || string(b) != data {
				t.Errorf("ReadFile(%s) = %q, %v, want %q", name, b, err, data)
			}
		}
	}
	dirMode := func(name string, mode int64) entry { e := dir(name); e.mode = mode; return e }
	return []hostileCase{
		{name: "dotdot", entries: []entry{reg("../x", "x")}, want: errdefs.ErrInvalid},
		{name: "dotdot nested", entries: []entry{reg("a/../../x", "x")}, want: errdefs.ErrInvalid},
		{name: "dotdot deep", entries: []entry{reg("../../../outside/victim", "pwned")}, want: errdefs.ErrInvalid},
		{name: "dotdot dir", entries: []entry{dir("../../d")}, want: errdefs.ErrInvalid},
		{name: "absolute name is made relative", entries: []entry{reg("/etc/"+escapeName, "x")},
			check: isFile("etc/"+escapeName, "x")},
		{name: "write through absolute symlink to /etc",
			entries: []entry{symlink("a", "/etc"), reg("a/"+escapeName, "pwned")}, want: errAny},
		{name: "write through absolute symlink",
			entries: []entry{symlink("a", outside), reg("a/victim", "pwned")}, want: errAny},
		{name: "write through climbing symlink",
			entries: []entry{symlink("a", "../../.."), reg("a/x", "pwned")}, want: errAny},
		{name: "write through climbing symlink to victim",
			entries: []entry{symlink("a", "../../../outside"), reg("a/victim", "pwned")}, want: errAny},
		{name: "mkdir through absolute symlink",
			entries: []entry{symlink("a", outside), dir("a/sub")}, want: errAny},
		{name: "symlink loop", entries: []entry{symlink("a", "b"), symlink("b", "a"), reg("a/x", "x")}, want: errAny},
		{name: "hard link climbing", entries: []entry{hardlink("x", "../../../outside/victim")}, want: errdefs.ErrInvalid},
		{name: "hard link absolute stays inside", entries: []entry{hardlink("x", "/etc/passwd")}, want: errAny},
		{name: "hard link through symlink",
			entries: []entry{symlink("a", outside), hardlink("x", "a/victim")}, want: errAny},
		{name: "file replaces symlink",
			entries: []entry{symlink("x", filepath.Join(outside, "victim")), reg("x", "pwned")}, check: isFile("x", "pwned")},
		{name: "directory replaces symlink",
			entries: []entry{symlink("d", outside), dir("d"), reg("d/victim", "pwned")}, check: isFile("d/victim", "pwned")},
		{name: "symlink replaces directory before its mode is set",
			entries: []entry{dirMode("d", 0o777), symlink("d", outside)}},
		{name: "file replaces hard link",
			entries: []entry{reg("a", "orig"), hardlink("b", "a"), reg("b", "new")}, check: isFile("a", "orig")},
		{name: "file replaces full directory", entries: []entry{dir("d"), reg("d/f", "x"), reg("d", "x")}, want: errAny},
		{name: "root dir entry sets the root's mode", entries: []entry{dirMode("./", 0o750), reg("f", "x")},
			check: func(t *testing.T, rootfs string) {
				if fi, err := os.Stat(rootfs); err != nil || fi.Mode().Perm() != 0o750 {
					t.Errorf("Stat(rootfs) = %v, want mode 0750", fi)
				}
			}},
		{name: "file replaces root", entries: []entry{reg(".", "x")}, want: errdefs.ErrInvalid},
		{name: "symlink replaces root", entries: []entry{symlink(".", "/etc")}, want: errdefs.ErrInvalid},
		{name: "hard link replaces root", entries: []entry{reg("x", "x"), hardlink(".", "x")}, want: errdefs.ErrInvalid},
		{name: "hard link to root", entries: []entry{hardlink("x", "/")}, want: errdefs.ErrInvalid},
		{name: "empty name", entries: []entry{reg("", "x")}, want: errdefs.ErrInvalid},
		{name: "unknown type", entries: []entry{{typ: 'Z', name: "x"}}, want: errdefs.ErrInvalid},
		{name: "no entries", entries: nil, want: errdefs.ErrInvalid},
	}
}

func TestImportHostile(t *testing.T) {
	for i, c := range hostileCases("") {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("original"), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Open(filepath.Join(base, "store"), testLogger(t))
			if err != nil {
				t.Fatalf("Open() = %v", err)
			}
			tt := hostileCases(outside)[i]
			_, err = s.ImportTar(t.Context(), "img", bytes.NewReader(tarBytes(t, tt.entries...)), "hostile")
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("ImportTar() = %v, want success", err)
			case tt.want == errAny && err == nil, tt.want != nil && tt.want != errAny && !errors.Is(err, tt.want):
				t.Errorf("ImportTar() = %v, want %v", err, tt.want)
			}
			if err != nil {
				t.Logf("ImportTar() = %v", err)
			}
			if err == nil && tt.check != nil {
				tt.check(t, filepath.Join(s.Dir(), "img", "rootfs"))
			}
			checkContained(t, base)
			if err == nil {
				if err := s.Remove("img"); err != nil {
					t.Errorf("Remove(img) = %v", err)
				}
			}
			if got := dirNames(t, s.Dir()); len(got) != 0 {
				t.Errorf("store holds %q, want nothing: a failed import left files behind", got)
			}
		})
	}
}

// checkContained checks that nothing changed in base but its store, nor in /etc.
func checkContained(t *testing.T, base string) {
	t.Helper()
	if diff := cmp.Diff([]string{"outside", "store"}, dirNames(t, base)); diff != "" {
		t.Errorf("files appeared next to the store (-want +got):\n%s", diff)
	}
	outside := filepath.Join(base, "outside")
	if diff := cmp.Diff([]string{"victim"}, dirNames(t, outside)); diff != "" {
		t.Errorf("files appeared outside the store (-want +got):\n%s", diff)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "victim")); err != nil || string(b) != "original" {
		t.Errorf("outside/victim = %q, %v, want %q", b, err, "original")
	}
	for p, want := range map[string]fs.FileMode{outside: fs.ModeDir | 0o755, filepath.Join(outside, "victim"): 0o644} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode() != want {
			t.Errorf("Lstat(%s) = %v, %v, want mode %v", p, fi, err, want)
		}
	}
	if _, err := os.Lstat("/etc/" + escapeName); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(/etc/%s) = %v, want not exist: an import escaped", escapeName, err)
	}
}
