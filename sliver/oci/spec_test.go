//go:build linux

package oci

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/cgroups"
)

func TestSliverSpecIsolation(t *testing.T) {
	res := sliverResources(sliver.DefaultResources, 100, cgroups.V1, true)
	s := sliverSpec("/r", "site_exp", "/var/lib/plab/node/init", 1<<30, "/plab/shared/site_exp", res)
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins %s; every namespace must be new", n.Type, n.Path)
		}
		ns = append(ns, n.Type)
	}
	slices.Sort(ns)
	want := []specs.LinuxNamespaceType{specs.CgroupNamespace, specs.IPCNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.PIDNamespace, specs.UserNamespace, specs.UTSNamespace}
	if diff := cmp.Diff(want, ns); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	if s.Hostname != "site_exp" || s.Root.Path != "/r" || s.Process.Args[0] != initPath {
		t.Errorf("hostname %q root %q init %v", s.Hostname, s.Root.Path, s.Process.Args)
	}
	m := s.Linux.UIDMappings
	if len(m) != 1 || m[0].ContainerID != 0 || m[0].HostID != 1<<30 || m[0].Size != sliver.IDRangeSize || !cmp.Equal(m, s.Linux.GIDMappings) {
		t.Errorf("id mappings = %+v / %+v", m, s.Linux.GIDMappings)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs is off")
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_NET_ADMIN", "CAP_MKNOD", "CAP_SYS_TIME", "CAP_SYS_BOOT", "CAP_SYS_RAWIO", "CAP_DAC_READ_SEARCH", "CAP_SYS_RESOURCE"} {
		for _, set := range [][]string{s.Process.Capabilities.Bounding, s.Process.Capabilities.Effective, s.Process.Capabilities.Permitted} {
			if slices.Contains(set, c) {
				t.Errorf("sliver root holds %s", c)
			}
		}
	}
	if len(s.Process.Capabilities.Inheritable) != 0 || len(s.Process.Capabilities.Ambient) != 0 {
		t.Errorf("inheritable/ambient capabilities = %v/%v, want none", s.Process.Capabilities.Inheritable, s.Process.Capabilities.Ambient)
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Error("/proc/sys is writable")
	}
	for _, mnt := range s.Mounts {
		if mnt.Destination == "/sys" && !slices.Contains(mnt.Options, "ro") {
			t.Error("/sys is mounted read-write")
		}
		if mnt.Destination == initPath && !slices.Contains(mnt.Options, "ro") {
			t.Error("the init is mounted writable")
		}
	}
	denied := map[string]bool{}
	for _, sc := range s.Linux.Seccomp.Syscalls {
		if sc.Action == specs.ActErrno && len(sc.Args) == 0 {
			for _, n := range sc.Names {
				denied[n] = true
			}
		}
	}
	for _, n := range []string{"mount", "umount2", "unshare", "setns", "init_module", "finit_module", "kexec_load", "bpf", "keyctl", "open_by_handle_at", "clone3", "io_uring_setup", "perf_event_open"} {
		if !denied[n] {
			t.Errorf("seccomp allows %s", n)
		}
	}
	if s.Linux.Seccomp.DefaultAction != specs.ActAllow || len(s.Linux.Seccomp.Architectures) == 0 {
		t.Errorf("seccomp default %s archs %v", s.Linux.Seccomp.DefaultAction, s.Linux.Seccomp.Architectures)
	}
}

// TestResourcesPerCgroupVersion pins what the runtime is asked to write on
// each cgroup version.
func TestResourcesPerCgroupVersion(t *testing.T) {
	r := sliver.Resources{CPUShares: 3, CPULimit: 1500, MemoryBytes: 256 << 20, Pids: 100, DiskBytes: 1 << 30}
	v1 := sliverResources(r, 300, cgroups.V1, true)
	if *v1.CPU.Shares != 3072 || v1.Unified != nil {
		t.Errorf("v1 cpu shares = %d, unified %v; want 3072 and none", *v1.CPU.Shares, v1.Unified)
	}
	if *v1.CPU.Quota != 150000 || *v1.CPU.Period != 100000 {
		t.Errorf("cpu cap = %d/%d, want 150000/100000", *v1.CPU.Quota, *v1.CPU.Period)
	}
	if *v1.Memory.Limit != 256<<20 || *v1.Memory.Swap != 256<<20 || *v1.Pids.Limit != 100 {
		t.Errorf("v1 memory %d swap %d pids %d", *v1.Memory.Limit, *v1.Memory.Swap, *v1.Pids.Limit)
	}
	noSwap := sliverResources(r, 300, cgroups.V1, false)
	if noSwap.Memory.Swap != nil {
		t.Error("memory+swap limit set on a host without swap accounting")
	}
	v2 := sliverResources(r, 300, cgroups.V2, false)
	if v2.CPU.Shares != nil || v2.Unified["cpu.weight"] != "300" {
		t.Errorf("v2 shares %v, cpu.weight %q; want no shares and weight 300", v2.CPU.Shares, v2.Unified["cpu.weight"])
	}
	if *v2.CPU.Quota != 150000 || *v2.Memory.Limit != 256<<20 || *v2.Pids.Limit != 100 {
		t.Errorf("v2 quota %d memory %d pids %d", *v2.CPU.Quota, *v2.Memory.Limit, *v2.Pids.Limit)
	}
	noCap := sliverResources(sliver.DefaultResources, 100, cgroups.V2, false)
	if noCap.CPU.Quota != nil {
		t.Error("a cpu cap is set for a sliver without one")
	}
}

func TestReservationWeights(t *testing.T) {
	b := &Backend{cfg: Config{CPUs: 2000}}
	for _, tt := range []struct {
		r    sliver.Resources
		want int
	}{
		{sliver.Resources{CPUShares: 1}, 100}, {sliver.Resources{CPUShares: 7}, 700},
		{sliver.Resources{CPUReserve: 500}, 2500}, {sliver.Resources{CPUReserve: 2000}, 10000},
		{sliver.Resources{CPUReserve: 1}, 5},
	} {
		if got := b.weight(tt.r); got != tt.want {
			t.Errorf("weight(%+v) = %d, want %d", tt.r, got, tt.want)
		}
	}
}

func TestInitELF(t *testing.T) {
	bin := initELF(initCodeAMD64)
	if len(bin) != 196 {
		t.Errorf("init is %d bytes, want 196", len(bin))
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("init is not a valid ELF file: %v", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 {
		t.Fatalf("init ELF: class %v machine %v type %v, %d program headers", f.Class, f.Machine, f.Type, len(f.Progs))
	}
	p := f.Progs[0]
	if p.Type != elf.PT_LOAD || p.Flags != elf.PF_R|elf.PF_X || f.Entry != p.Vaddr+120 || p.Filesz != uint64(len(bin)) {
		t.Errorf("program header %+v, entry %#x", p.ProgHeader, f.Entry)
	}
}

// TestInitRuns starts the init as PID 1 of a fresh PID namespace: it must
// block (not exit, not spin) until SIGKILL. Reaping is checked inside real
// slivers by the conformance suite.
func TestInitRuns(t *testing.T) {
	testenv.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "init")
	if err := writeInit(path); err != nil {
		t.Fatal(err)
	}
	if err := writeInit(path); err != nil {
		t.Fatalf("rewriting an unchanged init: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o555 {
		t.Errorf("init mode %v, want 0555", fi.Mode().Perm())
	}
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Blocked in rt_sigtimedwait: sleeping, not running.
	var state string
	for range 1000 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 2 {
			if state = f[2]; state == "S" {
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	if state != "S" {
		t.Errorf("init state %q, want S (blocked waiting for signals)", state)
	}
	_ = cmd.Process.Kill()
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("init ended with %v, want killed by SIGKILL", err)
	}
}
