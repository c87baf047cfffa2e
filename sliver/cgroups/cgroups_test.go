//go:build linux

package cgroups

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/plab/plab/internal/testenv"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		file        string
		wantVersion Version
		wantV2      string
		wantV1      map[string]string
	}{
		{"mountinfo-v2", V2, "/sys/fs/cgroup", nil},
		{"mountinfo-hybrid", V1, "/sys/fs/cgroup/unified", map[string]string{
			"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
			"cpuset": "/sys/fs/cgroup/cpuset", "memory": "/sys/fs/cgroup/memory",
			"devices": "/sys/fs/cgroup/devices", "freezer": "/sys/fs/cgroup/freezer",
			"blkio": "/sys/fs/cgroup/blkio", "pids": "/sys/fs/cgroup/pids",
			"name=systemd": "/sys/fs/cgroup/systemd",
		}},
		{"mountinfo-v1-comounted", V1, "/sys/fs/cgroup/unified", map[string]string{
			"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
			"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
			"freezer": "/sys/fs/cgroup/freezer", "devices": "/sys/fs/cgroup/my dir",
			"name=systemd": "/sys/fs/cgroup/systemd",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, err := parseMountinfo(bufio.NewScanner(f))
			if err != nil {
				t.Fatalf("parseMountinfo(%s) error: %v", tt.file, err)
			}
			if h.Version() != tt.wantVersion || h.v2 != tt.wantV2 {
				t.Errorf("parseMountinfo(%s) = v%d %q, want v%d %q", tt.file, h.Version(), h.v2, tt.wantVersion, tt.wantV2)
			}
			if diff := cmp.Diff(tt.wantV1, h.v1, cmp.AllowUnexported()); tt.wantV1 != nil && diff != "" {
				t.Errorf("v1 mounts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMountinfoMissingController(t *testing.T) {
	in := "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
	_, err := parseMountinfo(bufio.NewScanner(strings.NewReader(in)))
	if err == nil || !strings.Contains(err.Error(), "cpuacct") {
		t.Errorf("parseMountinfo(cpu only) error = %v, want one naming the missing cpuacct", err)
	}
	if _, err := parseMountinfo(bufio.NewScanner(strings.NewReader(""))); err == nil {
		t.Error("parseMountinfo(empty) succeeded, want an error saying no cgroup filesystem is mounted")
	}
}

// fakeV2 builds a cgroup2-like tree in a temporary directory.
func fakeV2(t *testing.T, controllers string) *Hierarchy {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "cgroup.controllers"), controllers)
	return NewV2(root)
}

func mustWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// TestV2Writes pins the exact files and values written on a cgroup v2 host.
func TestV2Writes(t *testing.T) {
	h := fakeV2(t, "cpuset cpu io memory hugetlb pids rdma misc")
	if err := h.EnsureParent("plab/shared"); err != nil {
		t.Fatalf("EnsureParent: %v", err)
	}
	for _, dir := range []string{"", "plab", "plab/shared"} {
		got := mustRead(t, filepath.Join(h.v2, dir, "cgroup.subtree_control"))
		if want := "+cpu +memory +pids +io +cpuset"; got != want {
			t.Errorf("%s/cgroup.subtree_control = %q, want %q", dir, got, want)
		}
	}
	for _, tt := range []struct{ in, want int }{{100, 100}, {0, 1}, {25000, 10000}, {7, 7}} {
		if err := h.SetCPUWeight("plab/shared", tt.in); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, filepath.Join(h.v2, "plab/shared/cpu.weight")); got != strconv.Itoa(tt.want) {
			t.Errorf("SetCPUWeight(%d) wrote cpu.weight %q, want %d", tt.in, got, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.v2, "plab/shared/cpu.shares")); err == nil {
		t.Error("v2 SetCPUWeight wrote the v1 file cpu.shares")
	}
}

func TestV2WritesOnlyAvailableControllers(t *testing.T) {
	h := fakeV2(t, "memory pids")
	if err := h.EnsureParent("plab"); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRead(t, filepath.Join(h.v2, "plab/cgroup.subtree_control")), "+memory +pids"; got != want {
		t.Errorf("subtree_control = %q, want %q", got, want)
	}
}

func TestV2Usage(t *testing.T) {
	h := fakeV2(t, "cpu memory pids")
	dir := filepath.Join(h.v2, "plab/shared/s1")
	mustWrite(t, filepath.Join(dir, "cpu.stat"), "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
	mustWrite(t, filepath.Join(dir, "memory.current"), "4096\n")
	mustWrite(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
	mustWrite(t, filepath.Join(dir, "pids.current"), "7\n")
	got, err := h.Usage("plab/shared/s1")
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{CPU: 1500 * time.Millisecond, MemoryBytes: 4096, OOMKills: 2, Pids: 7}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Usage (-want +got):\n%s", diff)
	}
	if _, err := h.Usage("plab/shared/missing"); err == nil {
		t.Error("Usage(missing cgroup) succeeded, want an error")
	}
}

func TestV1WritesAndUsage(t *testing.T) {
	root := t.TempDir()
	m := map[string]string{}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "freezer"} {
		m[c] = filepath.Join(root, c)
	}
	h := NewV1(m, "")
	if err := h.EnsureParent("plab/reserved"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ in, want int }{{100, 1024}, {10000, 102400}, {1, 10}, {0, 10}} {
		if err := h.SetCPUWeight("plab/reserved", tt.in); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, filepath.Join(m["cpu"], "plab/reserved/cpu.shares")); got != strconv.Itoa(tt.want) {
			t.Errorf("SetCPUWeight(%d) wrote cpu.shares %q, want %d", tt.in, got, tt.want)
		}
	}
	mustWrite(t, filepath.Join(m["cpuacct"], "plab/s/cpuacct.usage"), "2000000000\n")
	mustWrite(t, filepath.Join(m["memory"], "plab/s/memory.usage_in_bytes"), "8192\n")
	mustWrite(t, filepath.Join(m["memory"], "plab/s/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	mustWrite(t, filepath.Join(m["pids"], "plab/s/pids.current"), "3\n")
	got, err := h.Usage("plab/s")
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{CPU: 2 * time.Second, MemoryBytes: 8192, OOMKills: 1, Pids: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Usage (-want +got):\n%s", diff)
	}
	if err := h.Remove("plab"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, d := range h.Dirs("plab") {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("Remove left %s", d)
		}
	}
}

func TestCPUWeightProportions(t *testing.T) {
	// A v1 host must see the same ratios as a v2 host.
	for _, pair := range [][2]int{{100, 200}, {100, 300}, {2500, 7500}} {
		v2 := float64(pair[1]) / float64(pair[0])
		v1 := float64(CPUWeight(pair[1])) / float64(CPUWeight(pair[0]))
		if v1 != v2 {
			t.Errorf("weights %v: v1 ratio %.3f, v2 ratio %.3f", pair, v1, v2)
		}
	}
}

// TestRealHost runs on this machine's cgroups: a process in a fresh cgroup
// is counted, killed and the cgroup removed, leaving nothing.
func TestRealHost(t *testing.T) {
	testenv.RequireRoot(t)
	h, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host cgroups: v%d", h.Version())
	testKillCycle(t, h)
}

// TestRealUnified exercises the v2 code on the real cgroup2 tree of a hybrid
// host (or of a v2 host): creation, membership, usage of the core files,
// cgroup.kill and removal. Controllers bound to v1 are absent there, so
// weights and memory are covered by TestV2Writes and the VM run (hack/vm).
func TestRealUnified(t *testing.T) {
	testenv.RequireRoot(t)
	h, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	if h.v2 == "" {
		testenv.Unmet(t, "no cgroup2 tree mounted")
	}
	testKillCycle(t, NewV2(h.v2))
}

func testKillCycle(t *testing.T, h *Hierarchy) {
	rel := "plabtest-" + strconv.Itoa(os.Getpid()) + "/child"
	t.Cleanup(func() { _ = h.Remove(filepath.Dir(rel)) })
	// The parent holds children; processes live only in the leaf (cgroup
	// v2 forbids processes in a group that delegates controllers).
	if err := h.EnsureParent(filepath.Dir(rel)); err != nil && h.Version() == V1 {
		t.Fatalf("EnsureParent: %v", err)
	}
	procsDir := h.path("pids", rel)
	if err := os.MkdirAll(procsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for i := 0; i < 3; i++ {
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		if h.Version() == V1 {
			// Kill on v1 needs the freezer and pids trees to agree.
			for _, c := range []string{"freezer", "pids"} {
				dir := h.path(c, rel)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				mustWrite(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid))
			}
		} else {
			mustWrite(t, filepath.Join(procsDir, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid))
		}
	}
	done := make(chan error, len(cmds))
	for _, c := range cmds {
		go func() { done <- c.Wait() }()
	}
	pids, err := h.Procs(filepath.Dir(rel))
	if err != nil || len(pids) != 3 {
		t.Fatalf("Procs = %v, %v; want the 3 sleepers", pids, err)
	}
	if err := h.Kill(filepath.Dir(rel), time.Now().Add(30*time.Second)); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	for range cmds {
		if err := <-done; err == nil {
			t.Error("a sleeper exited cleanly after Kill, want killed")
		}
	}
	if err := h.Remove(filepath.Dir(rel)); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, d := range h.Dirs(filepath.Dir(rel)) {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("Remove left %s", d)
		}
	}
}
