//go:build linux

// Command attack runs inside a sliver and tries to break out of it: it is
// the hostile tenant of the conformance suite. Each check tries one thing a
// sliver must not be able to do and prints a JSON line
// {"check":…, "breached":…, "detail":…}. It exits 1 if any check breached
// the sliver's isolation, 0 otherwise.
//
//	attack mount|modules|sysctl|seccomp|forkbomb|escape PATH|read PATH...|kill PID...|ptrace PID...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

type result struct {
	Check    string `json:"check"`
	Breached bool   `json:"breached"`
	Detail   string `json:"detail"`
}

var breached bool

func report(check string, err error, detail string) {
	r := result{Check: check, Breached: err == nil, Detail: detail}
	if err != nil {
		r.Detail = err.Error()
	}
	breached = breached || r.Breached
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: attack mount|modules|sysctl|seccomp|escape PATH|read PATH...|kill PID...|ptrace PID...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "mount":
		attackMount()
	case "modules":
		attackModules()
	case "sysctl":
		attackSysctl()
	case "seccomp":
		attackSeccomp()
	case "escape":
		for _, p := range args {
			attackEscape(p)
		}
	case "read":
		for _, p := range args {
			attackRead(p)
		}
	case "forkbomb":
		forkBomb()
	case "kill":
		for _, p := range args {
			pid, _ := strconv.Atoi(p)
			report("kill "+p, unix.Kill(pid, syscall.SIGKILL), "")
		}
	case "ptrace":
		for _, p := range args {
			pid, _ := strconv.Atoi(p)
			err := unix.PtraceAttach(pid)
			if err == nil {
				_ = unix.PtraceDetach(pid)
			}
			report("ptrace "+p, err, "")
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown attack", os.Args[1])
		os.Exit(2)
	}
	if breached {
		os.Exit(1)
	}
}

func attackMount() {
	_ = os.MkdirAll("/tmp/mnt", 0o755)
	report("mount tmpfs", unix.Mount("none", "/tmp/mnt", "tmpfs", 0, ""), "")
	report("mount proc", unix.Mount("proc", "/tmp/mnt", "proc", 0, ""), "")
	report("bind /", unix.Mount("/", "/tmp/mnt", "", unix.MS_BIND, ""), "")
	report("remount /sys rw", unix.Mount("", "/sys", "", unix.MS_REMOUNT|unix.MS_BIND, ""), "")
	report("umount /proc", unix.Unmount("/proc", unix.MNT_DETACH), "")
	_, err := unix.Fsopen("tmpfs", 0)
	report("fsopen tmpfs", err, "")
	_, err = unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE)
	report("open_tree /", err, "")
	report("pivot_root", unix.PivotRoot("/tmp", "/tmp/mnt"), "")
	// A nested user namespace would grant every capability inside it.
	report("unshare user+mount", unix.Unshare(unix.CLONE_NEWUSER|unix.CLONE_NEWNS), "")
	report("unshare mount", unix.Unshare(unix.CLONE_NEWNS), "")
	// A block device of the host's (loop0), made and mounted.
	report("mknod block device", unix.Mknod("/tmp/blk", unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))), "")
	report("mount block device", unix.Mount("/tmp/blk", "/tmp/mnt", "btrfs", unix.MS_RDONLY, ""), "")
}

// forkBomb forks forever, in every child too, retrying when the kernel
// refuses. Only raw system calls run between forks, so the children never
// re-enter the Go runtime.
func forkBomb() {
	for {
		unix.RawSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0)
	}
}

func attackModules() {
	empty := []byte{0}
	_, _, e := unix.Syscall(unix.SYS_INIT_MODULE, uintptr(unsafe.Pointer(&empty[0])), 1, uintptr(unsafe.Pointer(&empty[0])))
	report("init_module", errno(e), "")
	f, err := os.Open("/bin/busybox")
	if err == nil {
		report("finit_module", unix.FinitModule(int(f.Fd()), "", 0), "")
		f.Close()
	}
	report("delete_module", unix.DeleteModule("loop", unix.O_NONBLOCK), "")
}

func attackSysctl() {
	for _, p := range []string{
		"/proc/sys/vm/drop_caches", "/proc/sys/kernel/panic", "/proc/sys/net/ipv4/ip_forward",
		"/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/sys/kernel/mm/transparent_hugepage/enabled",
	} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte("1\n"))
			f.Close()
		}
		report("write "+p, err, "")
	}
	report("sethostname", unix.Sethostname([]byte("pwned")), "")
	report("settimeofday", unix.Settimeofday(&unix.Timeval{Sec: 1}), "")
}

func attackSeccomp() {
	_, _, e := unix.Syscall(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0)
	report("clone newuser", errno(e), "")
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
	report("keyctl", err, "")
	_, _, e = unix.Syscall(unix.SYS_BPF, 0, 0, 0)
	report("bpf", errnoUnless(e, unix.EINVAL, unix.EFAULT), "")
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
	fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
	if err == nil {
		unix.Close(fd)
	}
	report("perf_event_open", err, "")
	_, _, e = unix.Syscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
	report("io_uring_setup", errnoUnless(e, unix.EFAULT), "")
	_, _, e = unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
	report("userfaultfd", errno(e), "")
	_, _, e = unix.Syscall(unix.SYS_OPEN_BY_HANDLE_AT, 0, 0, 0)
	report("open_by_handle_at", errnoUnless(e, unix.EFAULT, unix.EBADF), "")
	report("reboot", unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF), "")
	null := []byte("/dev/null\x00")
	_, _, e = unix.Syscall(unix.SYS_SWAPOFF, uintptr(unsafe.Pointer(&null[0])), 0, 0)
	report("swapoff", errnoUnless(e, unix.EINVAL), "")
}

// attackEscape tries the classic ways out of a root directory to read path
// on the host.
func attackEscape(path string) {
	attackRead("/proc/1/root" + path)
	attackRead("/proc/self/root/../../../.." + path)
	attackRead("/proc/self/cwd/../../../.." + path)
	// chroot into a subdirectory, then climb out of it (works against a
	// chroot jail, must not against pivot_root plus a mount namespace).
	_ = os.MkdirAll("/tmp/jail", 0o755)
	root, err := os.Open("/")
	if err != nil {
		report("escape open /", err, "")
		return
	}
	defer root.Close()
	if err := unix.Chroot("/tmp/jail"); err != nil {
		report("escape chroot", err, "chroot refused")
		return
	}
	_ = unix.Fchdir(int(root.Fd()))
	for i := 0; i < 64; i++ {
		_ = unix.Chdir("..")
	}
	_ = unix.Chroot(".")
	attackRead(path)
}

// attackRead tries to read path; any content read is a breach (masked
// kernel files read as empty).
func attackRead(path string) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 0 {
		err = fmt.Errorf("read 0 bytes (masked)")
	}
	detail := ""
	if err == nil {
		detail = fmt.Sprintf("read %d bytes", len(b))
	}
	report("read "+path, err, detail)
}

func errno(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// errnoUnless treats the listed errnos as "the call got through the
// filter" (it failed only on its bogus arguments): a breach.
func errnoUnless(e syscall.Errno, through ...syscall.Errno) error {
	for _, t := range through {
		if e == t {
			return nil
		}
	}
	return errno(e)
}
