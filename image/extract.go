//go:build linux

package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plab/plab/errdefs"
)

// Magic numbers of the compressions a tar may come in.
var (
	tarMagic   = []byte("ustar") // at offset 257 of a POSIX or GNU tar
	gzipMagic  = []byte{0x1f, 0x8b}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	bzip2Magic = []byte("BZh")
	lz4Magic   = []byte{0x04, 0x22, 0x4d, 0x18}
)

// decompress returns the tar stream in r, undoing gzip. It tells the format
// by its magic bytes, since file names lie. source names r in error messages.
func decompress(r io.Reader, source string) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(head) >= 262 && bytes.Equal(head[257:262], tarMagic) {
		return br, nil
	}
	file := source
	if file == "" {
		file = "FILE"
	}
	unsupported := func(kind, tool string) error {
		return fmt.Errorf("%s is %s-compressed; decompress it first, e.g. %s -d %s: %w", file, kind, tool, file, errdefs.ErrInvalid)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", file, err, errdefs.ErrInvalid)
		}
		return zr, nil
	case bytes.HasPrefix(head, xzMagic):
		return nil, unsupported("xz", "xz")
	case bytes.HasPrefix(head, zstdMagic):
		return nil, unsupported("zstd", "zstd")
	case bytes.HasPrefix(head, bzip2Magic) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return nil, unsupported("bzip2", "bzip2")
	case bytes.HasPrefix(head, lz4Magic):
		return nil, unsupported("lz4", "lz4")
	}
	return br, nil // an old tar without the ustar magic, or garbage the tar reader rejects
}

// drain reads r to its end, so that gzip verifies its checksum, which it
// stores after the tar's end. Like gzip(1) it ignores trailing garbage.
func drain(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil && !errors.Is(err, gzip.ErrHeader) {
		return fmt.Errorf("read past the end of the tar: %w", err)
	}
	return nil
}

// counts is what an extraction produced.
type counts struct {
	files, bytes int64
}

// extractor writes one tar stream into a directory. Every file operation
// goes through root, which refuses any path that leaves the directory,
// whether by "..", an absolute name, or a symlink an earlier entry planted.
// Symlinks inside the tree are followed, as tar does.
type extractor struct {
	root    *os.Root
	chown   bool
	counts  counts
	skipped int64 // device nodes and fifos
	dirs    map[string]dirMeta
}

// dirMeta is a directory's mode and times, applied once the directory is
// full: its mtime would change with every entry, and a read-only mode would
// stop a non-root extractor from filling it.
type dirMeta struct {
	mode  fs.FileMode
	mtime time.Time
}

// extract extracts the tar stream r into root and counts what it made.
// It checks ctx between entries.
func extract(ctx context.Context, root *os.Root, r io.Reader, chown bool, log *slog.Logger) (counts, error) {
	x := &extractor{root: root, chown: chown, dirs: make(map[string]dirMeta)}
	tr := tar.NewReader(r)
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return counts{}, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrInsecurePath) {
			return counts{}, fmt.Errorf("read tar: %w; is it a tar file? %w", err, errdefs.ErrInvalid)
		}
		if err != nil {
			return counts{}, fmt.Errorf("read tar: %w", err)
		}
		entries++
		if err := x.entry(hdr, tr); err != nil {
			return counts{}, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	}
	if entries == 0 {
		return counts{}, fmt.Errorf("tar stream is empty; is it a tar file? %w", errdefs.ErrInvalid)
	}
	if err := x.finishDirs(); err != nil {
		return counts{}, err
	}
	if x.skipped > 0 {
		log.Info("skipped device nodes and fifos: they cannot be used in a user namespace", logCount, x.skipped)
	}
	return x.counts, nil
}

// cleanName turns a tar entry name into a path relative to the root. Like
// GNU tar it drops a leading "/"; unlike it, it rejects names that climb
// out with "..". The root itself is ".".
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", errdefs.ErrInvalid)
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("name leaves the image root: %w", errdefs.ErrInvalid)
	}
	return p, nil
}

// isSparse reports whether hdr is a GNU sparse file in PAX format (the old
// GNU format has its own type flag). Its holes would be written out as
// zeros, so a tiny tar could fill the disk.
func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for later entries; the reader applies what matters
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		return x.dir(name, hdr)
	}
	if name == "." {
		return fmt.Errorf("entry would replace the image root: %w", errdefs.ErrInvalid)
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		if isSparse(hdr) {
			return fmt.Errorf("sparse files are not supported; create the tar without --sparse: %w", errdefs.ErrInvalid)
		}
		return x.file(name, hdr, r)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	case tar.TypeLink:
		return x.link(name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		x.skipped++
		return nil
	default:
		return fmt.Errorf("unsupported type %q; plab images hold directories, regular files, symlinks and hard links: %w", hdr.Typeflag, errdefs.ErrInvalid)
	}
}

// clear makes way for a non-directory entry at name, as tar does: it creates
// missing parent directories and removes what is at name, which fails if
// that is a directory with something in it.
func (x *extractor) clear(name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if _, err := x.root.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	return x.root.Remove(name) // a symlink itself, never its target
}

func (x *extractor) file(name string, hdr *tar.Header, r io.Reader) error {
	if err := x.clear(name); err != nil {
		return err
	}
	// O_EXCL: never write through whatever might be at name.
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil && x.chown {
		err = f.Chown(hdr.Uid, hdr.Gid)
	}
	if err == nil {
		err = f.Chmod(mode(hdr)) // after chown, which clears setuid and setgid
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	x.counts.files++
	x.counts.bytes += hdr.Size
	return x.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
}

// symlink creates a symlink. Its target, absolute or not, is stored as is:
// root resolves it within the tree if a later entry goes through it, and
// refuses it if it leads out.
func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if err := x.clear(name); err != nil {
		return err
	}
	if err := x.root.Symlink(hdr.Linkname, name); err != nil {
		return err
	}
	if x.chown {
		if err := x.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	x.counts.files++
	return x.lutimes(name, hdr.ModTime)
}

// link creates a hard link to an earlier entry, found inside the root.
func (x *extractor) link(name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	if target == "." {
		return fmt.Errorf("hard link to the image root: %w", errdefs.ErrInvalid)
	}
	if target == name {
		return nil // a link to itself is already there
	}
	if err := x.clear(name); err != nil {
		return err
	}
	if err := x.root.Link(target, name); err != nil {
		return err
	}
	x.counts.files++
	return nil
}

// dir creates a directory, or updates the owner of one that exists; its
// mode and mtime are set by finishDirs.
func (x *extractor) dir(name string, hdr *tar.Header) error {
	if name != "." {
		if fi, err := x.root.Lstat(name); err != nil || !fi.IsDir() {
			if err := x.clear(name); err != nil {
				return err
			}
			if err := x.root.Mkdir(name, 0o700); err != nil {
				return err
			}
			x.counts.files++
		}
	}
	if x.chown {
		if err := x.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	x.dirs[name] = dirMeta{mode: mode(hdr), mtime: hdr.ModTime}
	return nil
}

// finishDirs sets the recorded modes and mtimes, deepest directories first
// so that a parent's restrictive mode cannot lock its children.
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirs))
	for name := range x.dirs {
		names = append(names, name)
	}
	depth := func(p string) int {
		if p == "." {
			return -1
		}
		return strings.Count(p, "/")
	}
	slices.SortFunc(names, func(a, b string) int { return depth(b) - depth(a) })
	for _, name := range names {
		if fi, err := x.root.Lstat(name); err != nil || !fi.IsDir() {
			continue // a later entry replaced it
		}
		d := x.dirs[name]
		if err := x.root.Chmod(name, d.mode); err != nil {
			return fmt.Errorf("tar entry %q: %w", name, err)
		}
		if err := x.root.Chtimes(name, d.mtime, d.mtime); err != nil {
			return fmt.Errorf("tar entry %q: %w", name, err)
		}
	}
	return nil
}

// lutimes sets the times of the symlink name itself, which Root.Chtimes
// would follow.
func (x *extractor) lutimes(name string, mtime time.Time) error {
	d, err := x.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	ts := unix.Timespec{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}
	if err := unix.UtimesNanoAt(int(d.Fd()), path.Base(name), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lutimes", Path: name, Err: err}
	}
	return nil
}

// mode returns the permission bits of hdr, with setuid, setgid and sticky.
func mode(hdr *tar.Header) fs.FileMode {
	return hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}
