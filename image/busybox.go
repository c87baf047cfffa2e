//go:build linux

package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/plab/plab/errdefs"
)

// EnsureDefault returns DefaultImage, first building it from the host's
// static busybox if it is missing: bin/busybox, a symlink to it for every
// applet, the usual top-level directories, and an /etc with root, nobody and
// user (uid 1000, home /home/user). It is safe to call concurrently.
func (s *Store) EnsureDefault(ctx context.Context) (Image, error) {
	img, err := s.Get(DefaultImage)
	if err == nil || !errors.Is(err, errdefs.ErrNotFound) {
		return img, err
	}
	bin, err := findBusybox()
	if err != nil {
		return Image{}, fmt.Errorf("build default image %s: %w", DefaultImage, err)
	}
	applets, err := busyboxApplets(ctx, bin)
	if err != nil {
		return Image{}, fmt.Errorf("build default image %s: %w", DefaultImage, err)
	}
	now := s.now()
	img, err = s.importStream(ctx, DefaultImage, "busybox:"+bin, func(w io.Writer) error {
		return writeBusyboxTar(w, bin, applets, now)
	})
	if errors.Is(err, errdefs.ErrConflict) {
		return s.Get(DefaultImage) // another caller built it meanwhile
	}
	return img, err
}

// findBusybox returns the path of the host's busybox, which must be
// statically linked: a sliver's rootfs has no libc for it.
func findBusybox() (string, error) {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		bin = "/bin/busybox"
	}
	bin, err = filepath.EvalSymlinks(bin)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("busybox not found; apt-get install busybox-static: %w", errdefs.ErrUnavailable)
	}
	if err != nil {
		return "", err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return "", err
	}
	f, err := elf.Open(bin)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("busybox not found; apt-get install busybox-static: %w", errdefs.ErrUnavailable)
	}
	if err != nil {
		return "", fmt.Errorf("%s is not an ELF binary (%v); apt-get install busybox-static: %w", bin, err, errdefs.ErrUnavailable)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is not static; apt-get install busybox-static: %w", bin, errdefs.ErrUnavailable)
		}
	}
	return bin, nil
}

// busyboxApplets returns the applet paths bin lists, such as "bin/sh" and
// "usr/sbin/chroot", without "bin/busybox" itself.
func busyboxApplets(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bin, err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := path.Clean(string(bytes.TrimSpace(sc.Bytes())))
		if !fs.ValidPath(p) || p == "." || p == "bin/busybox" || slices.Contains(applets, p) {
			continue
		}
		applets = append(applets, p)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list-full lists no applets: %w", bin, errdefs.ErrUnavailable)
	}
	return applets, nil
}

// The /etc files of the default image.
const (
	etcPasswd = `root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
`
	etcGroup = `root:x:0:
tty:x:5:
users:x:100:
nogroup:x:65534:
user:x:1000:
`
	etcHosts = `127.0.0.1	localhost
::1	localhost
`
	etcProfile = `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\u@\h:\w\$ '
`
)

// writeBusyboxTar writes the default image's tree to w as a tar stream,
// everything owned by root but /home/user, with mtime now.
func writeBusyboxTar(w io.Writer, bin string, applets []string, now time.Time) error {
	tw := tar.NewWriter(w)
	hdr := func(typ byte, name string, mode int64) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, ModTime: now, Format: tar.FormatPAX}
	}
	dirs := map[string]int64{
		".": 0o755, "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
		"dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "tmp": 0o1777,
		"var": 0o755, "var/tmp": 0o1777, "root": 0o700, "home": 0o755, "home/user": 0o755, "etc": 0o755,
	}
	for _, a := range applets {
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	slices.Sort(names) // parents first
	for _, d := range names {
		h := hdr(tar.TypeDir, d, dirs[d])
		if d == "home/user" {
			h.Uid, h.Gid = 1000, 1000
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, data string }{
		{"etc/passwd", etcPasswd}, {"etc/group", etcGroup}, {"etc/hosts", etcHosts}, {"etc/profile", etcProfile},
	} {
		h := hdr(tar.TypeReg, f.name, 0o644)
		h.Size = int64(len(f.data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, f.data); err != nil {
			return err
		}
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	h := hdr(tar.TypeReg, "bin/busybox", 0o755)
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if err := copyFile(tw, bin, h.Size); err != nil {
		return err
	}
	for _, a := range applets {
		h := hdr(tar.TypeSymlink, a, 0o777)
		h.Linkname = "/bin/busybox"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	return tw.Close()
}
