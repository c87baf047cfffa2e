//go:build linux

package oci

import (
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/cgroups"
	"golang.org/x/sys/unix"
)

// specOpt changes one aspect of a sliver's OCI spec.
type specOpt func(*specs.Spec)

// newSpec builds an OCI runtime spec from options, applied in order.
func newSpec(opts ...specOpt) *specs.Spec {
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Cwd: "/"},
		Root:    &specs.Root{},
		Linux:   &specs.Linux{Resources: &specs.LinuxResources{}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// sliverSpec is the spec of a sliver: every isolation plab promises, in one
// place.
func sliverSpec(rootfs, name, initBin string, uidBase uint32, cgroupsPath string, res specs.LinuxResources) *specs.Spec {
	return newSpec(
		withRoot(rootfs),
		withHostname(name),
		withInit(initBin),
		withNamespaces(),
		withIDMap(uidBase),
		withMounts(),
		withConfinement(),
		withCgroup(cgroupsPath, res),
	)
}

func withRoot(path string) specOpt {
	return func(s *specs.Spec) { s.Root.Path = path }
}

func withHostname(name string) specOpt {
	return func(s *specs.Spec) { s.Hostname = name }
}

// withInit runs the sliver init as PID 1, bind-mounted read-only from the
// host.
func withInit(initBin string) specOpt {
	return func(s *specs.Spec) {
		s.Process.Args = []string{initPath}
		s.Process.Env = []string{"PATH=" + defaultPath}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: initPath, Type: "bind", Source: initBin,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
}

// defaultPath is PATH inside a sliver.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func withNamespaces() specOpt {
	return func(s *specs.Spec) {
		for _, t := range []specs.LinuxNamespaceType{
			specs.UserNamespace, specs.PIDNamespace, specs.MountNamespace, specs.UTSNamespace,
			specs.IPCNamespace, specs.NetworkNamespace, specs.CgroupNamespace,
		} {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
	}
}

// withIDMap maps the sliver's IDs 0..65535 to its own host range.
func withIDMap(base uint32) specOpt {
	return func(s *specs.Spec) {
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: sliver.IDRangeSize}}
		s.Linux.UIDMappings, s.Linux.GIDMappings = m, m
	}
}

// withMounts adds the kernel filesystems a Linux system expects. /sys and
// the cgroup tree are read-only; /dev is a small tmpfs holding only the
// standard devices.
func withMounts() specOpt {
	return func(s *specs.Spec) {
		s.Mounts = append([]specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		}, s.Mounts...)
	}
}

// capabilities are what root inside a sliver holds, within its own user
// namespace: enough to administer its own files, users and services, open
// raw sockets on its own network namespace and bind low ports; nothing that
// reaches the host (no SYS_ADMIN, SYS_MODULE, SYS_TIME, NET_ADMIN, MKNOD,
// SYS_PTRACE, SYS_BOOT …).
var capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE",
}

// maskedPaths hide kernel interfaces that leak host information.
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel/debug",
}

// readonlyPaths keep kernel settings read-only, whichever namespace they
// belong to.
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// withConfinement reduces what root inside the sliver may do: capabilities,
// no_new_privs, masked and read-only kernel paths, the seccomp profile and
// resource limits on files and processes.
func withConfinement() specOpt {
	return func(s *specs.Spec) {
		s.Process.Capabilities = processCaps()
		s.Process.NoNewPrivileges = true
		s.Process.Rlimits = []specs.POSIXRlimit{nofileLimit()}
		s.Linux.MaskedPaths = maskedPaths
		s.Linux.ReadonlyPaths = readonlyPaths
		s.Linux.Seccomp = seccompProfile()
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	}
}

// nofileLimit caps open files at 1024 (soft) and 65536 (hard), within the
// host's own hard limit: root in a user namespace cannot raise it.
func nofileLimit() specs.POSIXRlimit {
	hard := uint64(65536)
	var cur unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &cur) == nil && cur.Max < hard {
		hard = cur.Max
	}
	return specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: hard, Soft: min(1024, hard)}
}

func processCaps() *specs.LinuxCapabilities {
	return &specs.LinuxCapabilities{
		Bounding: capabilities, Effective: capabilities, Permitted: capabilities,
	}
}

func withCgroup(path string, res specs.LinuxResources) specOpt {
	return func(s *specs.Spec) {
		s.Linux.CgroupsPath = path
		res.Devices = s.Linux.Resources.Devices
		s.Linux.Resources = &res
	}
}

// cpuPeriod is the CFS period for CPU caps, in microseconds.
const cpuPeriod = 100000

// sliverResources turns a sliver's limits into OCI resources for a cgroup
// version. weight is the sliver's CPU weight among its siblings (v2 units).
// swapFiles says whether the host accounts swap (memory+swap caps exist).
func sliverResources(r sliver.Resources, weight int, v cgroups.Version, swapFiles bool) specs.LinuxResources {
	var res specs.LinuxResources
	res.CPU = &specs.LinuxCPU{}
	if v == cgroups.V2 {
		// runc's v1-shares-to-weight conversion is not proportional, so v2
		// gets the weight itself.
		res.Unified = map[string]string{"cpu.weight": strconv.Itoa(weight)}
	} else {
		shares := uint64(cgroups.CPUWeight(weight))
		res.CPU.Shares = &shares
	}
	if r.CPULimit > 0 {
		quota, period := int64(r.CPULimit)*cpuPeriod/1000, uint64(cpuPeriod)
		res.CPU.Quota, res.CPU.Period = &quota, &period
	}
	mem := r.MemoryBytes
	res.Memory = &specs.LinuxMemory{Limit: &mem}
	if swapFiles {
		// memory+swap equal to memory: the sliver never swaps.
		swap := mem
		res.Memory.Swap = &swap
	}
	pids := r.Pids
	res.Pids = &specs.LinuxPids{Limit: &pids}
	return res
}
