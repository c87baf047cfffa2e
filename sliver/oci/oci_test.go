//go:build linux

package oci

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/cgroups"
	"github.com/plab/plab/sliver/slivertest"
	"golang.org/x/sys/unix"
)

// TestMain lets the test binary act as a second plab process, for the
// kill -9 tests.
func TestMain(m *testing.M) {
	if os.Getenv("PLAB_TEST_HELPER") != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

var harnessSeq atomic.Uint32

// testConfig is a backend configuration private to one test: its own
// directories, cgroup parent and ID ranges. Everything it made is removed,
// and checked gone, when the test ends.
func testConfig(t *testing.T) Config {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "runc", "mkfs.btrfs", "busybox")
	dir := t.TempDir()
	for d := dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o711) // slivers must reach their root filesystems
	}
	n := harnessSeq.Add(1)
	cfg := Config{
		StateDir:       filepath.Join(dir, "state"),
		RunDir:         filepath.Join(dir, "run"),
		CgroupParent:   fmt.Sprintf("plabtest-%d-%d", os.Getpid(), n),
		UIDBase:        0x70000000 + (uint32(os.Getpid())%64)*0x400000 + n*0x100000,
		MaxSlivers:     16,
		LayerImageSize: 2 << 30,
		Log:            slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	t.Cleanup(func() {
		if err := Cleanup(context.Background(), cfg); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		if left := hostObjects(t, cfg); len(left) > 0 {
			t.Errorf("after Cleanup the host still holds:\n%s", strings.Join(left, "\n"))
		}
	})
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// hostObjects is HostObjects plus this process's unreaped children.
func hostObjects(t *testing.T, cfg Config) []string {
	t.Helper()
	objs, err := HostObjects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return append(objs, zombieChildren()...)
}

// zombieChildren lists this process's children that exited and were never
// reaped: the backend is a subreaper, so sliver inits it does not reap pile
// up here.
func zombieChildren() []string {
	var z []string
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == me {
			comm := s[strings.IndexByte(s, '(')+1 : strings.LastIndexByte(s, ')')]
			z = append(z, "zombie child "+filepath.Base(filepath.Dir(p))+" ("+comm+")")
		}
	}
	return z
}

// snapshot adds the backend's files to hostObjects: sliver directories,
// layers and exec leftovers.
func snapshot(t *testing.T, cfg Config) []string {
	objs := hostObjects(t, cfg)
	for _, d := range []string{"slivers", "layers"} {
		ents, _ := os.ReadDir(filepath.Join(cfg.StateDir, d))
		for _, e := range ents {
			objs = append(objs, d+"/"+e.Name())
		}
	}
	ents, _ := os.ReadDir(filepath.Join(cfg.RunDir, "exec"))
	for _, e := range ents {
		objs = append(objs, "exec/"+e.Name())
	}
	slices.Sort(objs)
	return objs
}

func harness(t *testing.T, cfg Config) slivertest.Harness {
	return slivertest.Harness{
		Open: func(t *testing.T) sliver.Backend {
			b, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return b
		},
		UpperPath: func(name, path string) string {
			return filepath.Join(cfg.StateDir, "layers", name, "upper", path)
		},
		ImagePath: func(image, path string) string {
			return filepath.Join(cfg.StateDir, "images", image, "rootfs", path)
		},
		Snapshot: func(t *testing.T) []string { return snapshot(t, cfg) },
		Cycles:   cycles(),
	}
}

// cycles is the leak test's length: PLAB_TEST_CYCLES, or the suite's default.
// The cgroup v2 VM run (hack/vm) lowers it: everything is slower there.
func cycles() int {
	n, _ := strconv.Atoi(os.Getenv("PLAB_TEST_CYCLES"))
	return n
}

func TestConformance(t *testing.T) {
	cfg := testConfig(t)
	slivertest.Run(t, harness(t, cfg))
}

// TestKill9 kills the process that created slivers, with SIGKILL; a new
// process lists the same slivers, execs into them and destroys them,
// leaving nothing behind.
func TestKill9(t *testing.T) {
	cfg := testConfig(t)
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	before := snapshot(t, cfg)

	helper := startHelper(t, cfg, "create", "k9_a", "k9_b")
	waitFor(t, helper, "ready")
	killHelper(t, helper)

	b, err = New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New after kill -9: %v", err)
	}
	defer b.Close()
	ctx := context.Background()
	list, err := b.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List after kill -9 = %v, %v; want k9_a and k9_b", list, err)
	}
	for _, in := range list {
		if in.State != sliver.Running {
			t.Errorf("%s is %s after its creator died, want running", in.Name, in.State)
		}
		var out strings.Builder
		code, err := b.Exec(ctx, in.Name, sliver.ExecSpec{Args: []string{"hostname"}, Stdout: &out})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != in.Name {
			t.Errorf("Exec(%s, hostname) = %d %q %v", in.Name, code, out.String(), err)
		}
		if err := b.Destroy(ctx, in.Name); err != nil {
			t.Errorf("Destroy(%s): %v", in.Name, err)
		}
	}
	if diff := diffLines(before, snapshot(t, cfg)); diff != "" {
		t.Errorf("host objects after destroying the re-adopted slivers:\n%s", diff)
	}
}

// TestKill9DuringCreate kills the creating process at arbitrary points of
// Create and Start; the next process rolls back what was half made and
// every sliver it reports works.
func TestKill9DuringCreate(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The image exists before the helpers run, so the kills land in the
	// slivers' Create and Start (each ~50ms), not in the image's import.
	if _, err := b.Images().EnsureDefault(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()
	before := snapshot(t, cfg)
	recovered := 0
	delays := []time.Duration{0, 2, 5, 9, 14, 20, 27, 35, 44, 55, 70, 90, 115, 140}
	for round, delay := range delays {
		delay *= time.Millisecond
		helper := startHelper(t, cfg, "loop", fmt.Sprintf("kd%d", round))
		waitFor(t, helper, "go")
		time.Sleep(delay) // the kill lands somewhere in the middle of Create or Start
		killHelper(t, helper)
		b, err := New(ctx, cfg)
		if err != nil {
			t.Fatalf("round %d: New after kill -9: %v", round, err)
		}
		list, _ := b.List(ctx)
		for _, in := range list {
			if in.State == sliver.Creating {
				t.Errorf("round %d: %s still creating after Recover", round, in.Name)
			}
			if err := b.Start(ctx, in.Name); err != nil {
				t.Errorf("round %d: Start(%s) after Recover: %v", round, in.Name, err)
			} else if code, err := b.Exec(ctx, in.Name, sliver.ExecSpec{Args: []string{"true"}}); code != 0 || err != nil {
				t.Errorf("round %d: Exec(%s) after Recover = %d, %v", round, in.Name, code, err)
			}
			if err := b.Destroy(ctx, in.Name); err != nil {
				t.Errorf("round %d: Destroy(%s): %v", round, in.Name, err)
			}
		}
		b.Close()
		reapOrphans(t) // runtime children that died after the helper, late
		recovered += len(list)
		t.Logf("round %d (kill after %v): %d slivers recovered", round, delay, len(list))
	}
	if recovered == 0 {
		t.Errorf("no round killed the helper after a sliver was created: the test did not test")
	}
	if diff := diffLines(before, snapshot(t, cfg)); diff != "" {
		t.Errorf("host objects after the rounds:\n%s", diff)
	}
}

func diffLines(before, after []string) string {
	var out []string
	for _, s := range after {
		if !slices.Contains(before, s) {
			out = append(out, "+ "+s)
		}
	}
	for _, s := range before {
		if !slices.Contains(after, s) {
			out = append(out, "- "+s)
		}
	}
	return strings.Join(out, "\n")
}

type helperProc struct {
	cmd  *exec.Cmd
	out  *bufio.Scanner
	done chan struct{}
}

func startHelper(t *testing.T, cfg Config, args ...string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PLAB_TEST_HELPER="+strings.Join(args, ","),
		"PLAB_TEST_STATE="+cfg.StateDir, "PLAB_TEST_RUN="+cfg.RunDir, "PLAB_TEST_CGROUP="+cfg.CgroupParent,
		fmt.Sprintf("PLAB_TEST_UIDBASE=%d", cfg.UIDBase))
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, out: bufio.NewScanner(out), done: make(chan struct{})}
	t.Cleanup(func() { killHelper(t, h) })
	return h
}

func waitFor(t *testing.T, h *helperProc, want string) {
	t.Helper()
	for h.out.Scan() {
		if h.out.Text() == want {
			return
		}
	}
	t.Fatalf("helper ended before printing %q", want)
}

func killHelper(t *testing.T, h *helperProc) {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
	reapOrphans(t)
}

// reapOrphans reaps this process's zombie children once a helper is dead:
// the helper's own children (a fork caught before exec, a busybox building
// the default image) are handed to this process because it is a subreaper
// (the backend in it made it one). In production the daemon's parent reaps
// such orphans. Nothing else runs children at this point of the tests.
func reapOrphans(t *testing.T) {
	for _, z := range zombieChildren() {
		var pid int
		if _, err := fmt.Sscanf(z, "zombie child %d", &pid); err != nil {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		if err := unix.Waitid(unix.P_PIDFD, fd, nil, unix.WEXITED, nil); err != nil {
			t.Logf("reap orphan %d: %v", pid, err)
		}
		unix.Close(fd)
	}
}

// helperMain is the second process: "create NAME..." creates and starts
// slivers, prints ready and waits to be killed; "loop PREFIX" prints go and
// creates and starts slivers until it is killed.
func helperMain() int {
	args := strings.Split(os.Getenv("PLAB_TEST_HELPER"), ",")
	var base uint32
	fmt.Sscan(os.Getenv("PLAB_TEST_UIDBASE"), &base)
	cfg := Config{
		StateDir: os.Getenv("PLAB_TEST_STATE"), RunDir: os.Getenv("PLAB_TEST_RUN"),
		CgroupParent: os.Getenv("PLAB_TEST_CGROUP"), UIDBase: base, MaxSlivers: 16, LayerImageSize: 2 << 30,
	}
	ctx := context.Background()
	b, err := New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	mk := func(name string) error {
		if _, err := b.Create(ctx, sliver.Spec{Name: name}); err != nil {
			return err
		}
		return b.Start(ctx, name)
	}
	switch args[0] {
	case "create":
		for _, n := range args[1:] {
			if err := mk(n); err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				return 1
			}
		}
		fmt.Println("ready")
	case "loop":
		fmt.Println("go")
		for i := 0; ; i++ {
			if err := mk(fmt.Sprintf("%s_%d", args[1], i)); err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				break
			}
		}
	}
	select {}
}

func TestNewErrors(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	tests := []struct {
		name string
		mod  func(*Config)
		kind error
		hint string
	}{
		{"runtime missing", func(c *Config) { c.Runtime = "no-such-runc" }, errdefs.ErrUnavailable, "apt-get install runc"},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, errdefs.ErrInvalid, "absolute"},
		{"uid base too low", func(c *Config) { c.UIDBase = 1000 }, errdefs.ErrInvalid, "host's own users"},
		{"id space overflow", func(c *Config) { c.UIDBase = 0xffff0000 }, errdefs.ErrInvalid, "32-bit"},
		{"bad cgroup parent", func(c *Config) { c.CgroupParent = "/abs/../x" }, errdefs.ErrInvalid, "cgroup parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			tt.mod(&c)
			_, err := New(ctx, c)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("New = %v, want %v mentioning %q", err, tt.kind, tt.hint)
			}
		})
	}
	t.Run("state dir not searchable", func(t *testing.T) {
		c := cfg
		parent := filepath.Join(filepath.Dir(cfg.StateDir), "private")
		if err := os.Mkdir(parent, 0o700); err != nil {
			t.Fatal(err)
		}
		c.StateDir = filepath.Join(parent, "state")
		_, err := New(ctx, c)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "chmod o+x") {
			t.Errorf("New = %v, want ErrInvalid telling to chmod o+x", err)
		}
	})
	t.Run("second process", func(t *testing.T) {
		b, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		_, err = New(ctx, cfg)
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
			t.Errorf("second New = %v, want ErrConflict naming pid %d", err, os.Getpid())
		}
	})
}

// TestIdentity: a state directory keeps the cgroup parent and ID ranges it
// was first used with; cleanup of one node never touches another's.
func TestIdentity(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	other := cfg
	other.CgroupParent += "-other"
	if _, err := New(ctx, other); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), cfg.CgroupParent) {
		t.Errorf("New with another cgroup parent = %v, want ErrConflict naming %s", err, cfg.CgroupParent)
	}
	other = cfg
	other.UIDBase += 0x10000
	if _, err := New(ctx, other); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("New with another uid base = %v, want ErrConflict", err)
	}
	// Only the state dir given: the node's own identity is used.
	bare := Config{StateDir: cfg.StateDir, RunDir: cfg.RunDir}
	b, err = New(ctx, bare)
	if err != nil {
		t.Fatalf("New with the state dir only: %v", err)
	}
	defer b.Close()
	in, err := b.Create(ctx, sliver.Spec{Name: "idn"})
	if err != nil {
		t.Fatal(err)
	}
	if in.UIDBase != cfg.UIDBase {
		t.Errorf("first sliver's uid base = %d, want the node's %d", in.UIDBase, cfg.UIDBase)
	}
	if err := b.Start(ctx, "idn"); err != nil {
		t.Fatal(err)
	}
	// Cleaning up a different node leaves this one's sliver running.
	cfg2 := testConfig(t)
	if err := Cleanup(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.State(ctx, "idn"); st.State != sliver.Running {
		t.Errorf("cleanup of another node stopped this node's sliver: %+v", st)
	}
	if err := b.Destroy(ctx, "idn"); err != nil {
		t.Fatal(err)
	}
}

// TestCPUWeights reads back, from the host's real cgroup files, the weights
// that make reservations guarantees: the reserved class gets the reserved
// fraction of the node, the shared class the rest, and each sliver its part.
func TestCPUWeights(t *testing.T) {
	cfg := testConfig(t)
	cfg.CPUs = 2000
	ctx := context.Background()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	weightOf := func(rel string) int {
		t.Helper()
		var file string
		if b.cg.Version() == cgroups.V2 {
			file = filepath.Join(b.cg.Dirs("")[0], rel, "cpu.weight")
		} else {
			for _, d := range b.cg.Dirs(rel) {
				if _, err := os.Stat(filepath.Join(d, "cpu.shares")); err == nil {
					file = filepath.Join(d, "cpu.shares")
				}
			}
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read weight of %s: %v", rel, err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		if b.cg.Version() == cgroups.V1 {
			n = n * 100 / 1024 // back to v2 units
		}
		return n
	}
	for _, s := range []sliver.Spec{
		{Name: "rsv", Resources: sliver.Resources{CPUReserve: 500}},
		{Name: "be", Resources: sliver.Resources{CPUShares: 3}},
	} {
		if _, err := b.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx, s.Name); err != nil {
			t.Fatal(err)
		}
	}
	p := cfg.CgroupParent
	want := map[string]int{p + "/reserved": 2500, p + "/shared": 7500, p + "/reserved/rsv": 2500, p + "/shared/be": 300}
	for rel, w := range want {
		if got := weightOf(rel); got != w {
			t.Errorf("weight of %s = %d, want %d", rel, got, w)
		}
	}
	if err := b.Update(ctx, "rsv", sliver.Resources{CPUReserve: 1500}); err != nil {
		t.Fatal(err)
	}
	for rel, w := range map[string]int{p + "/reserved": 7500, p + "/shared": 2500, p + "/reserved/rsv": 7500} {
		if got := weightOf(rel); got != w {
			t.Errorf("after raising the reservation: weight of %s = %d, want %d", rel, got, w)
		}
	}
	if err := b.Update(ctx, "be", sliver.Resources{CPUShares: 5}); err != nil {
		t.Fatal(err)
	}
	if got := weightOf(p + "/shared/be"); got != 500 {
		t.Errorf("after Update to 5 shares: weight %d, want 500", got)
	}
	for _, n := range []string{"rsv", "be"} {
		if err := b.Destroy(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if got := weightOf(p + "/shared"); got < 9990 { // the reserved class keeps the minimum weight, 1
		t.Errorf("with no reservation left the shared class weighs %d, want the whole node", got)
	}
}

// TestBareStarts: the benchmark's baseline starts the runtime bare and
// leaves nothing, not even a zombie.
func TestBareStarts(t *testing.T) {
	cfg := testConfig(t)
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	before := snapshot(t, cfg)
	d, err := b.BareStarts(context.Background(), 3)
	if err != nil || len(d) != 3 {
		t.Fatalf("BareStarts = %v, %v; want 3 durations", d, err)
	}
	for _, x := range d {
		if x <= 0 {
			t.Errorf("BareStarts duration %v", x)
		}
	}
	if diff := diffLines(before, snapshot(t, cfg)); diff != "" {
		t.Errorf("BareStarts left:\n%s", diff)
	}
}

// TestRemoveUnmountedRefusesMounts: deleting a sliver's directory never
// reaches into something mounted inside it (the shared image, a root).
func TestRemoveUnmountedRefusesMounts(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "sliver", "lower")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	keep := filepath.Join(src, "image-file")
	if err := os.WriteFile(keep, []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, victim, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(victim, unix.MNT_DETACH)
	if err := removeUnmounted(filepath.Join(dir, "sliver")); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("removeUnmounted with a mount inside = %v, want ErrConflict", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the mounted tree lost a file: %v", err)
	}
	unix.Unmount(victim, 0)
	if err := removeUnmounted(filepath.Join(dir, "sliver")); err != nil {
		t.Errorf("removeUnmounted after unmounting: %v", err)
	}
}

// TestExecProgram runs a program open on the host inside a sliver: it runs
// as the sliver's user, in the sliver's filesystem, without being copied in.
func TestExecProgram(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Create(ctx, sliver.Spec{Name: "prog"}); err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(ctx, "prog")
	if err := b.Start(ctx, "prog"); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "host-only-program")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"args:$*\"; id -u; hostname; if test -e "+script+"; then echo host-path-visible; fi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out, errb bytes.Buffer
	code, err := b.Exec(ctx, "prog", sliver.ExecSpec{Args: []string{"ignored", "a", "b c"}, User: "user", Program: f, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("Exec with a host program = %d, %v (stderr %q)", code, err, errb.String())
	}
	want := "args:a b c\n1000\nprog\n"
	if out.String() != want {
		t.Errorf("host program printed %q, want %q (its arguments, the sliver's uid 1000 and hostname, and no host path)", out.String(), want)
	}
}
