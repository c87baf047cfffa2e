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
)

// FuzzImportTar feeds arbitrary bytes to ImportTar as a tar stream. Whatever
// the input, it must not panic, must not create anything outside the store,
// and must leave the store either empty or holding one removable image.
// It runs as non-root too: such a store skips chown.
func FuzzImportTar(f *testing.F) {
	for _, c := range hostileCases("/nonexistent-plab-outside") {
		data := tarBytes(f, c.entries...)
		f.Add(data)
		f.Add(gzipBytes(f, data))
	}
	f.Add(tarBytes(f, dir("etc"), reg("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), symlink("bin", "usr/bin"),
		hardlink("etc/passwd-", "etc/passwd"), entry{typ: '5', name: "etc", mode: 0o500}))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "a", "b", "store")
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("Open(%q) = %v", dir, err)
		}
		_, err = s.ImportTar(t.Context(), "fuzz", bytes.NewReader(data), "fuzz")
		if err == nil {
			if _, err := s.Get("fuzz"); err != nil {
				t.Errorf("Get(fuzz) after a successful import = %v", err)
			}
			if err := s.Remove("fuzz"); err != nil {
				t.Fatalf("Remove(fuzz) = %v", err)
			}
		}
		for _, level := range []struct{ dir, only string }{{base, "a"}, {filepath.Join(base, "a"), "b"}, {filepath.Join(base, "a", "b"), "store"}} {
			if diff := cmp.Diff([]string{level.only}, dirNames(t, level.dir)); diff != "" {
				t.Fatalf("import created files outside the store (-want +got):\n%s", diff)
			}
		}
		if got := dirNames(t, dir); len(got) != 0 {
			t.Fatalf("store holds %q after import and remove, want nothing", got)
		}
		for _, p := range []string{"/nonexistent-plab-outside", "/etc/" + escapeName} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Lstat(%s) = %v, want not exist: an import escaped", p, err)
			}
		}
	})
}
