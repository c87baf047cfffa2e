//go:build linux

package oci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReapStrays: a dead sliver init that is this process's child and no
// watch's is reaped; a watched one is left to its watch.
func TestReapStrays(t *testing.T) {
	bin := filepath.Join(t.TempDir(), initName)
	if err := writeInit(bin); err != nil {
		t.Fatal(err)
	}
	start := func() int {
		cmd := exec.Command(bin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Dead, not reaped: a zombie child.
		deadline := time.Now().Add(5 * time.Second)
		for state(pid) != "Z" {
			if time.Now().After(deadline) {
				t.Fatalf("process %d is %q, not a zombie", pid, state(pid))
			}
			time.Sleep(time.Millisecond)
		}
		return pid
	}
	stray, kept := start(), start()
	watched.add(kept)
	reapStrays()
	if s := state(stray); s != "" {
		t.Errorf("stray init %d is %q after reapStrays, want reaped", stray, s)
	}
	if s := state(kept); s != "Z" {
		t.Errorf("watched init %d is %q after reapStrays, want left to its watch", kept, s)
	}
	watched.remove(kept)
	reapStrays()
	if s := state(kept); s != "" {
		t.Errorf("init %d is %q once unwatched, want reaped", kept, s)
	}
}

// state is the state letter of pid in /proc ("" when it is gone).
func state(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
