//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// testTime is the mtime of test entries; its nanoseconds check precision.
var testTime = time.Date(2024, 5, 17, 12, 34, 56, 789012345, time.UTC)

// entry is one tar entry to build a test archive from.
type entry struct {
	typ      byte
	name     string
	mode     int64
	uid, gid int
	link     string
	data     string
}

func reg(name, data string) entry {
	return entry{typ: tar.TypeReg, name: name, mode: 0o644, data: data}
}
func dir(name string) entry { return entry{typ: tar.TypeDir, name: name, mode: 0o755} }
func symlink(name, target string) entry {
	return entry{typ: tar.TypeSymlink, name: name, mode: 0o777, link: target}
}
func hardlink(name, target string) entry {
	return entry{typ: tar.TypeLink, name: name, link: target}
}

// tarBytes returns a PAX tar of entries.
func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		hdr := &tar.Header{
			Typeflag: e.typ, Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Size: int64(len(e.data)), ModTime: testTime, Format: tar.FormatPAX,
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("WriteHeader(%q) = %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil && e.typ == tar.TypeReg {
			t.Fatalf("Write(%q) = %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testLogger sends a store's log to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// newStore opens a store in a fresh directory.
func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"), testLogger(t))
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		// Images imported by non-root may hold directories that
		// t.TempDir's cleanup could not empty.
		imgs, _ := s.List()
		for _, img := range imgs {
			s.Remove(img.Name)
		}
	})
	return s
}

// node is what a test compares of a file.
type node struct {
	Type     string // dir, file, symlink
	Mode     fs.FileMode
	UID, GID uint32
	MTime    time.Time
	Link     string // a symlink's target
	Data     string // a file's content
}

// snapshot returns every file under root by its slash-separated relative
// name, root itself as ".", and the inode number of each.
func snapshot(t *testing.T, root string) (map[string]node, map[string]uint64) {
	t.Helper()
	tree := make(map[string]node)
	inodes := make(map[string]uint64)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, MTime: fi.ModTime().UTC()}
		switch {
		case fi.IsDir():
			n.Type = "dir"
		case fi.Mode().IsRegular():
			n.Type = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.Data = string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Type = "symlink"
			n.Mode = 0 // Linux symlinks have no mode of their own
			if n.Link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			n.Type = fi.Mode().Type().String()
		}
		tree[rel] = n
		inodes[rel] = st.Ino
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return tree, inodes
}

// dirNames returns the names in dir.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
