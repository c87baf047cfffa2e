//go:build linux

package oci

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
	"golang.org/x/sys/unix"
)

// execUser is who a process runs as inside a sliver.
type execUser struct {
	Name      string
	UID, GID  uint32
	Groups    []uint32
	Home      string
	HomeFound bool
}

// maxAccountFile bounds how much of /etc/passwd and /etc/group is read.
const maxAccountFile = 4 << 20

// openInRoot opens path inside the directory tree root as if root were
// "/": symlinks (absolute ones included) and ".." cannot leave it, and
// /proc magic links are refused. The sliver owns everything in its root
// filesystem, including symlinks planted to trick the host.
func openInRoot(root, path string, flags int) (int, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rfd)
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NOCTTY // openat2 refuses it with O_PATH
	}
	return unix.Openat2(rfd, path, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
}

// readInRoot reads a regular file inside root, at most limit bytes. A
// missing file reads as empty.
func readInRoot(root, path string, limit int64) ([]byte, error) {
	fd, err := openInRoot(root, path, unix.O_RDONLY|unix.O_NONBLOCK)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f := fdFile(fd, path)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// lookupUser resolves spec ("name", "uid", "name:group", "uid:gid"; empty
// means root) against the sliver's own /etc/passwd and /etc/group.
func lookupUser(root, spec string) (execUser, error) {
	passwd, err := readInRoot(root, "/etc/passwd", maxAccountFile)
	if err != nil {
		return execUser{}, fmt.Errorf("read /etc/passwd: %w", err)
	}
	group, err := readInRoot(root, "/etc/group", maxAccountFile)
	if err != nil {
		return execUser{}, fmt.Errorf("read /etc/group: %w", err)
	}
	u, err := parseUser(passwd, group, spec)
	if err != nil {
		return execUser{}, err
	}
	if fd, err := openInRoot(root, u.Home, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		unix.Close(fd)
		u.HomeFound = true
	}
	return u, nil
}

// parseUser resolves spec against the contents of /etc/passwd and
// /etc/group; it touches no file, so it can be fuzzed in memory.
func parseUser(passwd, group []byte, spec string) (execUser, error) {
	if spec == "" {
		spec = "root"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	u := execUser{Home: "/"}
	found := false
	eachLine(passwd, 7, func(f []string) bool {
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || (f[0] != userPart && f[2] != userPart) {
			return true
		}
		u = execUser{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5]}
		found = true
		return false
	})
	if !found {
		uid, err := strconv.ParseUint(userPart, 10, 32)
		if err != nil {
			return execUser{}, fmt.Errorf("user %q is not in the sliver's /etc/passwd; give a known name or a numeric uid: %w", userPart, errdefs.ErrInvalid)
		}
		u.UID, u.GID = uint32(uid), 0
	}
	if hasGroup {
		gfound := false
		eachLine(group, 4, func(f []string) bool {
			if f[0] == groupPart || f[2] == groupPart {
				if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
					u.GID, gfound = uint32(gid), true
					return false
				}
			}
			return true
		})
		if !gfound {
			gid, err := strconv.ParseUint(groupPart, 10, 32)
			if err != nil {
				return execUser{}, fmt.Errorf("group %q is not in the sliver's /etc/group; give a known name or a numeric gid: %w", groupPart, errdefs.ErrInvalid)
			}
			u.GID = uint32(gid)
		}
	}
	if u.Name != "" {
		eachLine(group, 4, func(f []string) bool {
			for _, m := range strings.Split(f[3], ",") {
				if m == u.Name {
					if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(gid) != u.GID {
						u.Groups = append(u.Groups, uint32(gid))
					}
				}
			}
			return true
		})
	}
	if u.UID >= sliver.IDRangeSize || u.GID >= sliver.IDRangeSize {
		return execUser{}, fmt.Errorf("user %s: ids above %d are not mapped in a sliver: %w", spec, sliver.IDRangeSize-1, errdefs.ErrInvalid)
	}
	return u, nil
}

// eachLine calls fn with the colon-separated fields of each line that has
// at least n fields, until fn returns false.
func eachLine(data []byte, n int, fn func([]string) bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Split(line, ":"); len(f) >= n && !fn(f) {
			return
		}
	}
}
