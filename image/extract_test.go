//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
)

// makeTree creates the files described in src, each with its owner and
// mode, and gives every file its own mtime.
func makeTree(t *testing.T, src string) {
	t.Helper()
	type file struct {
		name     string
		kind     string // dir, file, symlink, link, fifo, socket
		mode     fs.FileMode
		uid, gid int
		arg      string // data, symlink target or hard link target
	}
	files := []file{
		{".", "dir", 0o755, 0, 0, ""},
		{"bin", "dir", 0o755, 0, 0, ""},
		{"bin/su", "file", 0o755 | fs.ModeSetuid, 0, 0, "su"},
		{"bin/sh", "symlink", 0, 0, 0, "/bin/busybox"}, // absolute, as in Debian
		{"etc", "dir", 0o755, 0, 0, ""},
		{"etc/passwd", "file", 0o644, 0, 0, "root:x:0:0:root:/root:/bin/sh\n"},
		{"tmp", "dir", 0o777 | fs.ModeSticky, 0, 0, ""},
		{"shared", "dir", 0o775 | fs.ModeSetgid, 0, 100, ""},
		{"home", "dir", 0o755, 0, 0, ""},
		{"home/user", "dir", 0o700, 1000, 1000, ""},
		{"home/user/notes", "file", 0o600, 1000, 1000, "hi"},
		{"home/user/link", "symlink", 0, 1000, 1000, "notes"},
		{"ro", "dir", 0o555, 0, 0, ""},
		{"ro/file", "file", 0o444, 0, 0, "read only"},
		{"empty", "file", 0, 0, 0, ""},
		{"usr", "dir", 0o755, 0, 0, ""},
		{"usr/lib", "dir", 0o755, 0, 0, ""},
		{"usr/lib/libc.so", "file", 0o644, 0, 0, "ELF"},
		{"usr/bin", "dir", 0o755, 0, 0, ""},
		{"usr/bin/wall", "file", 0o755 | fs.ModeSetgid, 0, 5, "wall"},
		{"usr/bin/a", "file", 0o755, 0, 0, "same inode"},
		{"usr/bin/b", "link", 0, 0, 0, "usr/bin/a"},
		{"lib", "symlink", 0, 0, 0, "usr/lib"},
		{"dangling", "symlink", 0, 0, 0, "nowhere"},
		{"dev", "dir", 0o755, 0, 0, ""},
		{"dev/fifo", "fifo", 0o644, 0, 0, ""},
		{"dev/sock", "socket", 0, 0, 0, ""},
	}
	for _, f := range files {
		p := filepath.Join(src, f.name)
		var err error
		switch f.kind {
		case "dir":
			err = os.MkdirAll(p, 0o700)
		case "file":
			err = os.WriteFile(p, []byte(f.arg), 0o600)
		case "symlink":
			err = os.Symlink(f.arg, p)
		case "link":
			err = os.Link(filepath.Join(src, f.arg), p)
		case "fifo":
			err = syscall.Mkfifo(p, 0o644)
		case "socket":
			var l net.Listener
			if l, err = net.Listen("unix", p); err == nil {
				t.Cleanup(func() { l.Close() })
			}
		}
		if err == nil && f.kind != "link" && f.kind != "socket" {
			err = os.Lchown(p, f.uid, f.gid)
		}
		if err == nil && f.kind != "link" && f.kind != "symlink" && f.kind != "socket" {
			err = os.Chmod(p, f.mode) // after chown, which clears setuid
		}
		if err != nil {
			t.Fatalf("make %s: %v", f.name, err)
		}
	}
	// mtimes last, children before parents.
	slices.Reverse(files)
	for i, f := range files {
		mtime := unix.NsecToTimespec(testTime.Add(time.Duration(i) * time.Hour).UnixNano())
		err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, f.name), []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			t.Fatalf("set mtime of %s: %v", f.name, err)
		}
	}
}

func TestImportDirRoundTrip(t *testing.T) {
	testenv.RequireRoot(t)
	s := newStore(t)
	src := t.TempDir()
	makeTree(t, src)
	want, srcInodes := snapshot(t, src)
	delete(want, "dev/fifo") // device nodes, fifos and sockets are skipped
	delete(want, "dev/sock")

	img, err := s.Import(t.Context(), "rt", src)
	if err != nil {
		t.Fatalf("Import(%q) = %v", src, err)
	}
	rootfs, err := s.RootFS("rt")
	if err != nil {
		t.Fatalf("RootFS(rt) = %v", err)
	}
	got, inodes := snapshot(t, rootfs)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("imported tree mismatch (-want +got):\n%s", diff)
	}
	if inodes["usr/bin/a"] != inodes["usr/bin/b"] {
		t.Errorf("usr/bin/a and usr/bin/b have inodes %d and %d, want one hard-linked inode", inodes["usr/bin/a"], inodes["usr/bin/b"])
	}

	var size int64
	seen := make(map[uint64]bool)
	for name, n := range want {
		if n.Type == "file" && !seen[srcInodes[name]] {
			seen[srcInodes[name]] = true
			size += int64(len(n.Data))
		}
	}
	if img.Files != int64(len(want)-1) || img.Bytes != size || img.Source != src {
		t.Errorf("Import(%q) = files %d, bytes %d, source %q; want %d, %d, %q", src, img.Files, img.Bytes, img.Source, len(want)-1, size, src)
	}
}

func TestImportTarFile(t *testing.T) {
	data := tarBytes(t,
		dir("etc"),
		entry{typ: tar.TypeReg, name: "etc/motd", mode: 0o640, uid: 1000, gid: 100, data: "hello\n"},
		entry{typ: tar.TypeChar, name: "dev/null", mode: 0o666},
	)
	wantUID := uint32(1000)
	if os.Geteuid() != 0 {
		wantUID = uint32(os.Geteuid()) // a non-root store cannot chown
	}
	tests := []struct {
		name, file string
		data       []byte
	}{
		{"plain", "rootfs.tar", data},
		{"gzip", "rootfs.tgz", gzipBytes(t, data)},
		{"gzip named like plain", "rootfs.tar", gzipBytes(t, data)},
		{"plain named like gzip", "rootfs.tar.gz", data},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			src := filepath.Join(t.TempDir(), tt.file)
			if err := os.WriteFile(src, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := s.Import(t.Context(), "img", src)
			if err != nil {
				t.Fatalf("Import(%q) = %v", src, err)
			}
			if img.Files != 2 || img.Bytes != 6 || img.Source != src {
				t.Errorf("Import(%q) = %+v, want 2 files, 6 bytes, source %q", src, img, src)
			}
			got, _ := snapshot(t, filepath.Join(s.Dir(), "img", "rootfs"))
			want := node{Type: "file", Mode: 0o640, UID: wantUID, GID: got["etc/motd"].GID, MTime: testTime, Data: "hello\n"}
			if diff := cmp.Diff(want, got["etc/motd"]); diff != "" {
				t.Errorf("etc/motd mismatch (-want +got):\n%s", diff)
			}
			if _, ok := got["dev/null"]; ok {
				t.Errorf("dev/null was extracted; device nodes must be skipped")
			}
		})
	}
}

func TestImportCompressed(t *testing.T) {
	tests := []struct {
		name  string
		magic []byte
		hint  string
	}{
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4}, "xz -d "},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x24}, "zstd -d "},
		{"bzip2", []byte("BZh91AY&SY"), "bzip2 -d "},
		{"lz4", []byte{0x04, 0x22, 0x4d, 0x18, 0x64}, "lz4 -d "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			src := filepath.Join(t.TempDir(), "rootfs.tar")
			if err := os.WriteFile(src, append(tt.magic, make([]byte, 1024)...), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.Import(t.Context(), "img", src)
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.hint+src) {
				t.Errorf("Import(%q) = %v, want %v saying %q", src, err, errdefs.ErrInvalid, tt.hint+src)
			}
		})
	}
}

// TestImportGNUTar checks that archives made by GNU tar, with their "./"
// entries, import as the tree they were made from.
func TestImportGNUTar(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "tar")
	src := t.TempDir()
	makeTree(t, src)
	want, _ := snapshot(t, src)
	delete(want, "dev/fifo")
	delete(want, "dev/sock")
	archive := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	out, err := exec.Command("tar", "--format=posix", "-C", src, "-czf", archive, ".").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "socket ignored") {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	s := newStore(t)
	if _, err := s.Import(t.Context(), "gnu", archive); err != nil {
		t.Fatalf("Import(%q) = %v", archive, err)
	}
	got, _ := snapshot(t, filepath.Join(s.Dir(), "gnu", "rootfs"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("imported tree mismatch (-want +got):\n%s", diff)
	}
}

func TestImportSparse(t *testing.T) {
	testenv.RequireBinaries(t, "tar")
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), 64<<20)
	f.Close()
	archive := filepath.Join(t.TempDir(), "sparse.tar")
	if out, err := exec.Command("tar", "--sparse", "--format=posix", "-C", src, "-cf", archive, "sparse").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	s := newStore(t)
	if _, err := s.Import(t.Context(), "sparse", archive); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Import(%q) = %v, want %v", archive, err, errdefs.ErrInvalid)
	}
}

func TestImportCorruptGzip(t *testing.T) {
	gz := gzipBytes(t, tarBytes(t, reg("f", "hello")))
	gz[len(gz)-8] ^= 0xff // the CRC-32 in the trailer, after the tar's end
	s := newStore(t)
	if _, err := s.ImportTar(t.Context(), "img", bytes.NewReader(gz), "corrupt.tgz"); err == nil {
		t.Errorf("ImportTar(corrupt.tgz) = nil, want a checksum error")
	}
	if got := dirNames(t, s.Dir()); len(got) != 0 {
		t.Errorf("store holds %q after a failed import, want nothing", got)
	}
	// Garbage after the gzip stream is ignored, as gzip(1) does.
	gz = append(gzipBytes(t, tarBytes(t, reg("f", "hello"))), make([]byte, 512)...)
	if _, err := s.ImportTar(t.Context(), "img", bytes.NewReader(gz), "padded.tgz"); err != nil {
		t.Errorf("ImportTar(padded.tgz) = %v, want success", err)
	}
}
