//go:build linux

// Package slivertest is the conformance suite every sliver backend passes:
// the lifecycle of the sliver.Backend contract, exec, stats, live limits,
// bad input, recovery, leaks over many cycles, and a set of isolation tests
// in which one sliver attacks its neighbours, the image and the host.
//
// A backend's test calls Run with a Harness. The suite needs root and the
// default busybox image; it builds the attack program (./attack) with the
// go tool and runs it inside slivers.
package slivertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// Harness is what the suite needs to know about a backend.
type Harness struct {
	// Open opens the backend on the test's node. The suite calls it again
	// after Close to test recovery; every call sees the same node state.
	Open func(t *testing.T) sliver.Backend
	// UpperPath is where the file at path inside sliver name, once written
	// by the sliver, lives on the host.
	UpperPath func(name, path string) string
	// ImagePath is where path of the named image lives on the host.
	ImagePath func(image, path string) string
	// Snapshot lists the host objects the backend made (mounts, cgroups,
	// processes, runtime state, files), one string each, sorted. Equal
	// snapshots mean nothing leaked in between.
	Snapshot func(t *testing.T) []string
	// Cycles is how many create/destroy cycles the leak test runs
	// (default 200).
	Cycles int
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	attack := buildAttack(t)
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, h) })
	t.Run("Exec", func(t *testing.T) { testExec(t, h) })
	t.Run("ExecTTY", func(t *testing.T) { testExecTTY(t, h) })
	t.Run("Stats", func(t *testing.T) { testStats(t, h) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, h) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, h) })
	t.Run("Recover", func(t *testing.T) { testRecover(t, h) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, h, attack) })
	t.Run("Leaks", func(t *testing.T) { testLeaks(t, h) })
}

// buildAttack compiles the attack program, statically, for the suite.
func buildAttack(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "attack")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", out, "./attack")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build attack program: %v\n%s", err, b)
	}
	return out
}

// open opens the backend and closes it when the test ends.
func open(t *testing.T, h Harness) sliver.Backend {
	t.Helper()
	b := h.Open(t)
	t.Cleanup(func() { b.Close() })
	return b
}

// uniqueName returns a sliver name unique to this run.
func uniqueName(prefix string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// running creates and starts a sliver that is destroyed when the test ends.
func running(t *testing.T, b sliver.Backend, prefix string, r sliver.Resources) string {
	t.Helper()
	name := uniqueName(prefix)
	ctx := context.Background()
	if _, err := b.Create(ctx, sliver.Spec{Name: name, Resources: r}); err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := b.Destroy(context.Background(), name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Destroy(%s): %v", name, err)
		}
	})
	if err := b.Start(ctx, name); err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	return name
}

// result is what an exec produced.
type result struct {
	stdout, stderr string
	code           int
}

// run execs args in sliver name and returns its output and status.
func run(t *testing.T, b sliver.Backend, name string, args ...string) result {
	t.Helper()
	return runSpec(t, b, name, sliver.ExecSpec{Args: args})
}

func runSpec(t *testing.T, b sliver.Backend, name string, e sliver.ExecSpec) result {
	t.Helper()
	var out, errb bytes.Buffer
	e.Stdout, e.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := b.Exec(ctx, name, e)
	if err != nil {
		t.Fatalf("Exec(%s, %q): %v", name, e.Args, err)
	}
	return result{out.String(), errb.String(), code}
}

// must execs a shell command that must succeed and returns its output.
func must(t *testing.T, b sliver.Backend, name, script string) string {
	t.Helper()
	r := run(t, b, name, "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("in %s: sh -c %q = exit %d, want 0\nstdout: %s\nstderr: %s", name, script, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// copyIn copies a host file into a sliver as an executable.
func copyIn(t *testing.T, b sliver.Backend, name, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := runSpec(t, b, name, sliver.ExecSpec{Args: []string{"sh", "-c", "cat > " + dst + " && chmod 755 " + dst}, Stdin: f})
	if r.code != 0 {
		t.Fatalf("copy %s into %s: exit %d: %s", src, name, r.code, r.stderr)
	}
}

// noLeaks checks that the host holds the same objects at the end of the
// test as now.
func noLeaks(t *testing.T, h Harness) {
	t.Helper()
	before := h.Snapshot(t)
	t.Cleanup(func() {
		if t.Failed() {
			return // a failed test may leave what its own cleanup removes later
		}
		after := h.Snapshot(t)
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("host objects changed (-before +after):\n%s", diff)
		}
	})
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

var hostCmdMu sync.Mutex

// hostLatency runs a trivial command on the host and reports how long it
// took: a probe that the host stays responsive.
func hostLatency(t *testing.T) time.Duration {
	t.Helper()
	hostCmdMu.Lock()
	defer hostCmdMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := exec.CommandContext(ctx, "true").Run(); err != nil {
		t.Fatalf("host command failed (host unresponsive?): %v", err)
	}
	return time.Since(t0)
}
