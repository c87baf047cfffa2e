//go:build linux

package oci

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside a sliver. Root in a sliver lacks
// the capabilities most of them need anyway; the filter is the second wall,
// and it also closes interfaces that are not namespaced or widen the
// kernel's attack surface (keyrings, BPF, perf, io_uring, userfaultfd).
var deniedSyscalls = []string{
	// Filesystems and namespaces: a sliver keeps the mounts it was given.
	"mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount",
	"fspick", "move_mount", "open_tree", "mount_setattr", "unshare", "setns",
	"open_by_handle_at", "name_to_handle_at", "quotactl", "quotactl_fd",
	// The kernel itself.
	"init_module", "finit_module", "delete_module", "create_module",
	"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct",
	"syslog", "vhangup", "iopl", "ioperm", "uselib", "ustat", "sysfs", "_sysctl",
	"lookup_dcookie", "nfsservctl", "get_kernel_syms", "query_module",
	"vm86", "vm86old",
	// Host-wide state: the clock, keyrings.
	"settimeofday", "stime", "clock_settime", "clock_adjtime",
	"add_key", "request_key", "keyctl",
	// Attack surface.
	"bpf", "perf_event_open", "userfaultfd", "fanotify_init",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// namespaceFlags may not be passed to clone: no nested namespaces.
// (CLONE_NEWTIME works only through unshare and clone3, both refused.)
var namespaceFlags = []uint64{
	unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
	unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWCGROUP,
}

// seccompProfile is the default seccomp filter of every sliver process: allow
// by default, deny deniedSyscalls, and refuse clone with namespace flags.
// clone3 passes its flags in memory the filter cannot read, so it answers
// ENOSYS and the C library falls back to clone.
func seccompProfile() *specs.LinuxSeccomp {
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: seccompArchs(),
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		},
	}
	for _, f := range namespaceFlags {
		p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
			Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: f, ValueTwo: f, Op: specs.OpMaskedEqual}},
		})
	}
	return p
}

func seccompArchs() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	}
	return nil
}
