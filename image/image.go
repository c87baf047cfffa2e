//go:build linux

// Package image is the node's store of reference root filesystems. Every
// sliver's overlayfs mounts one of them, id-mapped, as its read-only lower
// layer, so an image is stored once with its original owners: a file that is
// root's in the tar stays uid 0 on disk.
//
// The layout under the store directory is
//
//	<dir>/<name>/rootfs/      the tree
//	<dir>/<name>/image.json   the Image
//	<dir>/.tmp-<name>-*       an import in progress
//	<dir>/.trash-<name>-*     a removal in progress
//
// An import is atomic: it extracts into a temporary directory, writes
// image.json, syncs the filesystem and renames the directory into place, so
// an image either exists complete or not at all:
//
//	          Import                 rename            Remove                   RemoveAll
//	(absent) -------> .tmp-<name>-* --------> <name> -------> .trash-<name>-* ----------> (absent)
//	                       |                                        |
//	                       +-- error or cancel: removed             +-- interrupted: Open removes it
//	                       +-- interrupted: Open removes it
//
// Directories and tar files go through one extraction path (a directory is
// streamed as a tar), which is safe against hostile archives: every write
// goes through an [os.Root], so no entry can escape the rootfs via "..",
// absolute names or symlinks planted by earlier entries.
package image

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plab/plab/errdefs"
)

// DefaultImage is the image EnsureDefault builds from the host's busybox.
const DefaultImage = "busybox"

// Image describes one stored image; it is kept as <dir>/<name>/image.json.
type Image struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Source  string    `json:"source"` // what it was imported from: a path, or "busybox:/bin/busybox"
	Bytes   int64     `json:"bytes"`  // apparent size of the regular files
	Files   int64     `json:"files"`  // number of entries in the tree, not counting its root
}

const (
	tmpPrefix   = ".tmp-"
	trashPrefix = ".trash-"
	metaFile    = "image.json"
	rootfsDir   = "rootfs"
	maxNameLen  = 64
)

// Log attribute keys.
const (
	logImage  = "image"
	logPath   = "path"
	logDir    = "dir"
	logErr    = "err"
	logSource = "source"
	logFiles  = "files"
	logBytes  = "bytes"
	logCount  = "count"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ValidateName checks an image name: 1 to 64 characters from a-z, 0-9, '.',
// '_' and '-', starting with a letter or a digit. It returns an error
// wrapping errdefs.ErrInvalid otherwise.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("image name %q is invalid; use 1-%d lowercase letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. debian-12): %w",
			name, maxNameLen, errdefs.ErrInvalid)
	}
	return nil
}

// Store is a directory of images. Its methods are safe for concurrent use,
// also by several processes: imports race only at the final rename, which
// never replaces an existing image.
//
// A Store run by root keeps the owners recorded in the tar. Run by anyone
// else it cannot chown, so it skips that and the imported files belong to
// the importer; such a store is good for tests and fuzzing, not for slivers.
type Store struct {
	dir   string
	log   *slog.Logger
	chown bool             // restore owners; only root can
	now   func() time.Time // the clock, replaceable in tests
}

// Open opens the image store at dir (such as /var/lib/plab/node/images),
// creating it if needed, and removes the leftovers of interrupted imports and
// removals. Call it once when the daemon starts, not while another process
// imports into the same dir. A nil log discards log output.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}
	// 0711: slivers' unprivileged uids must be able to traverse down to a
	// rootfs, but not list the store.
	if err := os.MkdirAll(abs, 0o711); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}
	if err := os.Chmod(abs, 0o711); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}
	s := &Store{dir: abs, log: log, chown: os.Geteuid() == 0, now: time.Now}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tmpPrefix) && !strings.HasPrefix(e.Name(), trashPrefix) {
			continue
		}
		p := filepath.Join(abs, e.Name())
		log.Info("removing leftover of an interrupted import or removal", logPath, p)
		if err := removeTree(p); err != nil {
			return nil, fmt.Errorf("open image store %s: remove leftover %s: %w", dir, p, err)
		}
	}
	if !s.chown {
		log.Info("not running as root: imported images keep the importer's ownership, not the owners in the tar", logDir, abs)
	}
	return s, nil
}

// Dir returns the absolute path of the store directory.
func (s *Store) Dir() string { return s.dir }

// Get returns the named image, or an error wrapping errdefs.ErrNotFound.
func (s *Store) Get(name string) (Image, error) {
	if err := ValidateName(name); err != nil {
		return Image{}, err
	}
	b, err := os.ReadFile(filepath.Join(s.dir, name, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, notFound(name)
	}
	if err != nil {
		return Image{}, fmt.Errorf("read image %s: %w", name, err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return Image{}, fmt.Errorf("read image %s: %s: %w", name, metaFile, err)
	}
	img.Name = name // the directory is the truth
	return img, nil
}

// RootFS returns the absolute path of the named image's root directory, or
// an error wrapping errdefs.ErrNotFound.
func (s *Store) RootFS(name string) (string, error) {
	if _, err := s.Get(name); err != nil {
		return "", err
	}
	p := filepath.Join(s.dir, name, rootfsDir)
	if _, err := os.Lstat(p); err != nil {
		return "", fmt.Errorf("image %s: %w", name, err)
	}
	return p, nil
}

// List returns the images sorted by name. An image whose image.json cannot
// be read is logged and left out.
func (s *Store) List() ([]Image, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var imgs []Image
	for _, e := range entries {
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue // .tmp-*, .trash-* and strangers
		}
		img, err := s.Get(e.Name())
		if err != nil {
			s.log.Warn("skipping unreadable image", logImage, e.Name(), logErr, err)
			continue
		}
		imgs = append(imgs, img)
	}
	slices.SortFunc(imgs, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return imgs, nil
}

// Remove deletes the named image. It does not know about slivers: the
// caller checks that no sliver uses the image.
func (s *Store) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("remove image: %w", err)
	}
	trash := filepath.Join(s.dir, trashPrefix+name+"-"+rand.Text())
	if err := os.Rename(filepath.Join(s.dir, name), trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove image: %w", notFound(name))
		}
		return fmt.Errorf("remove image %s: %w", name, err)
	}
	if err := removeTree(trash); err != nil {
		return fmt.Errorf("remove image %s: %w (the next start of the node removes %s)", name, err, trash)
	}
	return nil
}

// Import imports src, a directory or a tar file (plain or gzip-compressed,
// told apart by content, not by name), as the image name.
func (s *Store) Import(ctx context.Context, name, src string) (Image, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return Image{}, fmt.Errorf("import image %s: %w", name, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Image{}, fmt.Errorf("import image %s: source %s does not exist; give a directory or a tar file: %w", name, src, errdefs.ErrNotFound)
	case err != nil:
		return Image{}, fmt.Errorf("import image %s: %w", name, err)
	case fi.IsDir():
		// Walk the directory src leads to, should src be a symlink.
		if abs, err = filepath.EvalSymlinks(abs); err != nil {
			return Image{}, fmt.Errorf("import image %s: %w", name, err)
		}
		return s.importStream(ctx, name, abs, func(w io.Writer) error { return writeDirTar(ctx, w, abs) })
	case fi.Mode().IsRegular():
		f, err := os.Open(abs)
		if err != nil {
			return Image{}, fmt.Errorf("import image %s: %w", name, err)
		}
		defer f.Close()
		return s.ImportTar(ctx, name, f, abs)
	default:
		return Image{}, fmt.Errorf("import image %s: source %s is neither a directory nor a tar file: %w", name, src, errdefs.ErrInvalid)
	}
}

// importStream imports the tar stream that write produces in a goroutine.
func (s *Store) importStream(ctx context.Context, name, source string, write func(io.Writer) error) (Image, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(write(pw))
	}()
	img, err := s.ImportTar(ctx, name, pr, source)
	pr.Close() // unblocks write if ImportTar stopped early
	<-done
	return img, err
}

// ImportTar imports the tar stream r (plain or gzip-compressed) as the image
// name; source records where it came from. Device nodes and fifos are
// skipped, as they are useless in a user namespace; so are extended
// attributes, since file capabilities do not work under no_new_privs anyway.
func (s *Store) ImportTar(ctx context.Context, name string, r io.Reader, source string) (Image, error) {
	img, err := s.importTar(ctx, name, r, source)
	if err != nil {
		return Image{}, fmt.Errorf("import image %s: %w", name, err)
	}
	s.log.Info("imported image", logImage, name, logSource, source, logFiles, img.Files, logBytes, img.Bytes)
	return img, nil
}

func (s *Store) importTar(ctx context.Context, name string, r io.Reader, source string) (_ Image, err error) {
	if err := ValidateName(name); err != nil {
		return Image{}, err
	}
	final := filepath.Join(s.dir, name)
	if _, err := os.Lstat(final); err == nil {
		return Image{}, conflict(name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Image{}, err
	}
	tr, err := decompress(r, source)
	if err != nil {
		return Image{}, err
	}
	tmp, err := os.MkdirTemp(s.dir, tmpPrefix+name+"-")
	if err != nil {
		return Image{}, err
	}
	defer func() {
		if err != nil {
			if rerr := removeTree(tmp); rerr != nil {
				s.log.Warn("cannot remove failed import; the next start of the node removes it", logPath, tmp, logErr, rerr)
			}
		}
	}()
	if err := os.Mkdir(filepath.Join(tmp, rootfsDir), 0o755); err != nil {
		return Image{}, err
	}
	root, err := os.OpenRoot(filepath.Join(tmp, rootfsDir))
	if err != nil {
		return Image{}, err
	}
	defer root.Close()
	n, err := extract(ctx, root, tr, s.chown, s.log.With(logImage, name))
	if err != nil {
		return Image{}, err
	}
	if err := drain(tr); err != nil {
		return Image{}, err
	}
	img := Image{Name: name, Created: s.now().UTC(), Source: source, Bytes: n.bytes, Files: n.files}
	if err := writeMeta(filepath.Join(tmp, metaFile), img); err != nil {
		return Image{}, err
	}
	if err := syncFS(tmp); err != nil {
		return Image{}, err
	}
	if err := os.Chmod(tmp, 0o711); err != nil {
		return Image{}, err
	}
	if err := renameNoReplace(tmp, final); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return Image{}, conflict(name) // lost a race with another import
		}
		return Image{}, err
	}
	if err := syncDir(s.dir); err != nil {
		s.log.Warn("cannot sync image store directory", logDir, s.dir, logErr, err)
	}
	return img, nil
}

func notFound(name string) error {
	return fmt.Errorf("image %s not found; see plab image list, or add it with plab image import: %w", name, errdefs.ErrNotFound)
}

func conflict(name string) error {
	return fmt.Errorf("image %s exists; remove it first with plab image rm %s: %w", name, name, errdefs.ErrConflict)
}
