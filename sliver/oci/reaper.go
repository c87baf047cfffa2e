//go:build linux

package oci

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Once the runtime has started a sliver and exited, the sliver's init is an
// orphan. The backend makes its process a child subreaper, so the kernel
// hands such orphans to it rather than to the host's PID 1, and reaps them
// the moment they exit: an unreaped init keeps its cgroups busy, and some
// hosts' PID 1 reaps only every few seconds.

// becomeSubreaper makes this process the reaper of its orphaned
// descendants: the inits of the slivers it starts.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// initWatch follows one sliver init through a pidfd. done closes when the
// init has exited (and, if it is this process's child, been reaped).
type initWatch struct {
	fd   *os.File
	done chan struct{}
}

// watchInit starts following the init with the given PID and start time.
// The start time guards against a PID the kernel gave to another process.
func watchInit(pid int, start uint64) (*initWatch, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch init %d: %w", pid, err)
	}
	if procStart(pid) != start {
		unix.Close(fd)
		return nil, fmt.Errorf("watch init %d: %w", pid, unix.ESRCH)
	}
	w := &initWatch{fd: os.NewFile(uintptr(fd), "pidfd"), done: make(chan struct{})}
	watched.add(pid)
	rc, err := w.fd.SyscallConn()
	if err != nil {
		w.fd.Close()
		return nil, err
	}
	go func() {
		defer close(w.done)
		defer watched.remove(pid)
		// A pidfd turns readable when its process exits; the poller parks
		// this goroutine until then, without a thread.
		_ = rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(p, 0); n == 0 {
				return false
			}
			// Reap it if it is ours; ECHILD means another process is its
			// parent (the init predates this process). The wait blocks: the
			// kernel wakes pidfd pollers just before it marks the exiting
			// process a zombie, so WNOHANG here could miss it and leave
			// the zombie behind.
			var info unix.Siginfo
			for {
				err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED, nil)
				if err != unix.EINTR {
					break
				}
			}
			return true
		})
	}()
	return w, nil
}

// kill sends SIGKILL to the init (the kernel then kills every process of
// the sliver's PID namespace) and waits until it is gone.
func (w *initWatch) kill(ctx context.Context) error {
	rc, err := w.fd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0)
	}); err != nil {
		return err
	}
	if serr != nil && !errors.Is(serr, unix.ESRCH) {
		return fmt.Errorf("kill init: %w", serr)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill init: %w", ctx.Err())
	}
}

// close stops following the init.
func (w *initWatch) close() {
	if w != nil {
		w.fd.Close()
	}
}

// reapZombieChild reaps pid if it is a zombie child of this process, and
// reports whether it did. A zombie's PID cannot be reused, so the check and
// the reaping concern the same process.
func reapZombieChild(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(os.Getpid()) {
		return false
	}
	var info unix.Siginfo
	return unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG, nil) == nil
}

// watched holds the PIDs of sliver inits a watch will reap.
var watched = pidSet{m: map[int]bool{}}

type pidSet struct {
	mu sync.Mutex
	m  map[int]bool
}

func (s *pidSet) add(pid int)    { s.mu.Lock(); s.m[pid] = true; s.mu.Unlock() }
func (s *pidSet) remove(pid int) { s.mu.Lock(); delete(s.m, pid); s.mu.Unlock() }
func (s *pidSet) has(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[pid]
}

// reapStrays reaps zombie sliver inits no watch will: the backend is a
// subreaper, so a sliver init whose parent died (a plab process killed in
// the middle of making a sliver, or its user-namespace helper) becomes
// this process's child, and a subreaper must reap what it is given.
//
// It costs one waitid when no child is a zombie (the usual case, on every
// destroy); only then does it read this process's children, not all of
// /proc.
func reapStrays() {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if err != nil || siginfoPid(&info) == 0 {
		return
	}
	lists, _ := filepath.Glob("/proc/self/task/*/children")
	for _, l := range lists {
		b, _ := os.ReadFile(l)
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil || watched.has(pid) {
				continue
			}
			st, err := os.ReadFile("/proc/" + f + "/stat")
			if err != nil {
				continue
			}
			s := string(st)
			open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
			if open < 0 || end < open || s[open+1:end] != initName {
				continue
			}
			if fs := strings.Fields(s[end+1:]); len(fs) > 0 && fs[0] == "Z" {
				_ = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG, nil)
			}
		}
	}
}

// siginfoPid is si_pid of a siginfo that waitid filled (0: no child was
// waitable).
func siginfoPid(info *unix.Siginfo) int32 {
	raw := (*[unsafe.Sizeof(*info)]byte)(unsafe.Pointer(info))
	return int32(binary.NativeEndian.Uint32(raw[16:20]))
}
