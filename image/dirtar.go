//go:build linux

package image

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileID identifies an inode, to find hard links.
type fileID struct{ dev, ino uint64 }

// writeDirTar writes the tree at dir to w as a tar stream, so that a
// directory is imported by the same extraction code as a tar file. The
// root's own entry is "."; sockets are left out, since tar has no type for
// them. It checks ctx between entries.
func writeDirTar(ctx context.Context, w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	links := make(map[fileID]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info() // lstat: WalkDir does not follow symlinks
		if err != nil {
			return err
		}
		hdr, err := dirHeader(filepath.ToSlash(rel), p, fi, links)
		if err != nil || hdr == nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			return nil
		}
		return copyFile(tw, p, hdr.Size)
	})
	if err != nil {
		return fmt.Errorf("read directory %s: %w", dir, err)
	}
	return tw.Close()
}

// dirHeader returns the tar header for the file p, named name, or nil to
// leave it out. links maps the inodes of earlier multiply-linked files to
// their names.
func dirHeader(name, p string, fi fs.FileInfo, links map[fileID]string) (*tar.Header, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no stat_t", p)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    tarMode(fi.Mode()),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: fi.ModTime(),
		Format:  tar.FormatPAX, // nanosecond mtimes, any uid
	}
	m := fi.Mode()
	switch {
	case m.IsDir():
		hdr.Typeflag = tar.TypeDir
	case m.IsRegular():
		id := fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
		if first, ok := links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return hdr, nil
		}
		if st.Nlink > 1 {
			links[id] = name
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case m&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	case m&fs.ModeDevice != 0:
		hdr.Typeflag = tar.TypeBlock
		if m&fs.ModeCharDevice != 0 {
			hdr.Typeflag = tar.TypeChar
		}
		hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
	default:
		return nil, nil // a socket
	}
	return hdr, nil
}

// tarMode returns the tar mode bits of m.
func tarMode(m fs.FileMode) int64 {
	bits := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}

// copyFile copies size bytes of the regular file p to w.
func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("read %s: %w (did it change during the import?)", p, err)
	}
	return nil
}
