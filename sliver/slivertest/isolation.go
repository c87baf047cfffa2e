//go:build linux

package slivertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// testIsolation: each subtest is an attack that must fail.
func testIsolation(t *testing.T, h Harness, attack string) {
	b := open(t, h)
	victim := running(t, b, "victim", sliver.Resources{})
	must(t, b, victim, "echo victim-secret > /secret && chmod 644 /secret && (sleep 3600 >/dev/null 2>&1 &)")
	victimInfo, err := b.State(context.Background(), victim)
	if err != nil {
		t.Fatal(err)
	}
	victimAlive := func(t *testing.T) {
		t.Helper()
		if got := must(t, b, victim, "cat /secret"); got != "victim-secret\n" {
			t.Errorf("victim sliver damaged: /secret = %q", got)
		}
		if in, _ := b.State(context.Background(), victim); in.State != sliver.Running || in.Pid != victimInfo.Pid {
			t.Errorf("victim sliver = %+v, want it still running with init %d", in, victimInfo.Pid)
		}
	}
	attacker := func(t *testing.T, r sliver.Resources) string {
		name := running(t, b, "att", r)
		copyIn(t, b, name, attack, "/attack")
		return name
	}
	// runAttack runs the attack program and fails the test for each check
	// that breached isolation.
	runAttack := func(t *testing.T, name string, args ...string) {
		t.Helper()
		r := run(t, b, name, append([]string{"/attack"}, args...)...)
		checks := 0
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var res struct {
				Check    string
				Breached bool
				Detail   string
			}
			if json.Unmarshal([]byte(line), &res) != nil {
				continue
			}
			checks++
			if res.Breached {
				t.Errorf("attack %q succeeded: %s", res.Check, res.Detail)
			} else {
				t.Logf("attack %q refused: %s", res.Check, res.Detail)
			}
		}
		if checks == 0 || (r.code != 0) != t.Failed() {
			t.Errorf("attack %v: exit %d after %d checks\nstdout: %s\nstderr: %s", args, r.code, checks, r.stdout, r.stderr)
		}
	}

	t.Run("Processes", func(t *testing.T) {
		a := attacker(t, sliver.Resources{})
		// Only the sliver's own processes are visible.
		out := must(t, b, a, "ls /proc | grep -c '^[0-9]*$'")
		if n, _ := strconv.Atoi(strings.TrimSpace(out)); n < 1 || n > 4 {
			t.Errorf("attacker sees %d processes, want only its own (init, sh, ls, grep)", n)
		}
		if got := must(t, b, a, "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.Contains(got, "init") {
			t.Errorf("pid 1 in the sliver is %q, want its own init", got)
		}
		host := strconv.Itoa(os.Getpid())
		runAttack(t, a, "kill", strconv.Itoa(victimInfo.Pid), host)
		runAttack(t, a, "ptrace", strconv.Itoa(victimInfo.Pid), host)
		// Root in the sliver kills everything it can see.
		run(t, b, a, "kill", "-9", "-1")
		victimAlive(t)
		if in, _ := b.State(context.Background(), a); in.State != sliver.Running {
			t.Errorf("kill -9 -1 inside a sliver killed its init: %+v", in)
		}
	})

	t.Run("OtherSliversFiles", func(t *testing.T) {
		a := attacker(t, sliver.Resources{})
		path := h.UpperPath(victim, "/secret")
		if b, err := os.ReadFile(path); err != nil || string(b) != "victim-secret\n" {
			t.Fatalf("UpperPath(victim, /secret) = %s: %q, %v; the harness is wrong", path, b, err)
		}
		runAttack(t, a, "escape", path)
		runAttack(t, a, "read", path, "/secret")
		// Writes: the attacker's root cannot reach the victim's layer.
		run(t, b, a, "sh", "-c", "echo pwned > "+path+"; echo pwned > /proc/1/root"+path)
		victimAlive(t)
	})

	t.Run("HostFiles", func(t *testing.T) {
		a := attacker(t, sliver.Resources{})
		dir := t.TempDir()
		_ = os.Chmod(dir, 0o755)
		marker := filepath.Join(dir, "host-marker")
		if err := os.WriteFile(marker, []byte("host secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		runAttack(t, a, "escape", marker)
		runAttack(t, a, "read", marker, "/proc/1/root"+marker, "/proc/kcore", "/proc/keys", "/sys/firmware/dmi/tables/DMI")
		run(t, b, a, "sh", "-c", "echo pwned > "+marker)
		if b, _ := os.ReadFile(marker); string(b) != "host secret\n" {
			t.Errorf("host file changed by a sliver: %q", b)
		}
	})

	t.Run("SharedImage", func(t *testing.T) {
		a := attacker(t, sliver.Resources{})
		paths := []string{"/etc/passwd", "/bin/busybox"}
		type fileState struct {
			sum  [32]byte
			mode os.FileMode
		}
		state := func(p string) fileState {
			fi, err := os.Stat(h.ImagePath("busybox", p))
			if err != nil {
				t.Fatal(err)
			}
			return fileState{hashFile(t, h.ImagePath("busybox", p)), fi.Mode()}
		}
		before := map[string]fileState{}
		for _, p := range paths {
			before[p] = state(p)
		}
		// The busybox binary runs the shell, so it is attacked through
		// its metadata; /etc through contents and removal.
		run(t, b, a, "sh", "-c", "echo 'pwned::0:0::/:/bin/sh' >> /etc/passwd; chmod 4777 /bin/busybox; touch /bin/busybox; touch /pwned; rm -rf /etc")
		for _, p := range paths {
			if state(p) != before[p] {
				t.Errorf("the shared image's %s changed", p)
			}
		}
		if _, err := os.Lstat(h.ImagePath("busybox", "/pwned")); err == nil {
			t.Error("a sliver created a file in the shared image")
		}
		if got := must(t, b, victim, "grep -c pwned /etc/passwd || true"); strings.TrimSpace(got) != "0" {
			t.Error("another sliver sees the attacker's change to the image")
		}
	})

	t.Run("Kernel", func(t *testing.T) {
		a := attacker(t, sliver.Resources{})
		hostname, _ := os.Hostname()
		sysctl, _ := os.ReadFile("/proc/sys/kernel/panic")
		runAttack(t, a, "mount")
		runAttack(t, a, "modules")
		runAttack(t, a, "sysctl")
		runAttack(t, a, "seccomp")
		if now, _ := os.Hostname(); now != hostname {
			t.Errorf("host name changed from %q to %q", hostname, now)
		}
		if now, _ := os.ReadFile("/proc/sys/kernel/panic"); !bytes.Equal(now, sysctl) {
			t.Errorf("host sysctl kernel.panic changed from %q to %q", sysctl, now)
		}
	})

	t.Run("Memory", func(t *testing.T) {
		a := running(t, b, "mem", sliver.Resources{MemoryBytes: 64 << 20})
		r := run(t, b, a, "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
		if r.code == 0 {
			t.Fatalf("a 256MiB buffer fit in a 64MiB sliver")
		}
		st, err := b.Stats(context.Background(), a)
		if err != nil || st.OOMKills < 1 {
			t.Errorf("Stats after the hog = %+v, %v; want an OOM kill counted", st, err)
		}
		if got := must(t, b, a, "echo alive"); got != "alive\n" {
			t.Errorf("sliver unusable after its hog was killed: %q", got)
		}
		victimAlive(t)
	})

	t.Run("ForkBomb", func(t *testing.T) {
		const limit = 64
		a := attacker(t, sliver.Resources{Pids: limit, MemoryBytes: 256 << 20})
		ctx := context.Background()
		// Every process of the bomb keeps forking until the sliver stops.
		must(t, b, a, "/attack forkbomb >/dev/null 2>&1 &")
		peak := int64(0)
		deadline := time.Now().Add(3 * time.Second)
		var worst time.Duration
		for time.Now().Before(deadline) {
			st, err := b.Stats(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			peak = max(peak, st.Processes)
			worst = max(worst, hostLatency(t))
		}
		t.Logf("fork bomb: peak %d processes (limit %d); slowest host command %v", peak, limit, worst)
		// pids.max bounds forks, not migrations: the exec that started the
		// bomb joins the cgroup from outside and may still be there, one over.
		if peak > limit+1 {
			t.Errorf("fork bomb reached %d processes, limit %d (+1 for the exec that started it)", peak, limit)
		}
		if peak < limit/2 {
			t.Errorf("fork bomb peaked at %d processes: it did not run", peak)
		}
		if err := b.Stop(ctx, a); err != nil {
			t.Fatalf("Stop during a fork bomb: %v", err)
		}
		if st, _ := b.Stats(ctx, a); st.Processes != 0 {
			t.Errorf("%d processes survive Stop", st.Processes)
		}
		victimAlive(t)
	})

	t.Run("Disk", func(t *testing.T) {
		const limit = 32 << 20
		a := running(t, b, "disk", sliver.Resources{DiskBytes: limit})
		r := run(t, b, a, "sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=200; sync; i=0; while touch /f$i 2>/dev/null && [ $i -lt 5000 ]; do i=$((i+1)); done; echo files $i; sync")
		if !strings.Contains(r.stderr, "quota") {
			t.Errorf("filling the disk: want a quota error, got stderr %q", r.stderr)
		}
		st, err := b.Stats(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("disk attack: %s used of %s (%s)", sliver.FormatBytes(st.DiskBytes), sliver.FormatBytes(limit), strings.TrimSpace(r.stdout))
		if st.DiskBytes > limit+(1<<20) {
			t.Errorf("sliver uses %d bytes of disk, limit %d", st.DiskBytes, limit)
		}
		must(t, b, victim, "dd if=/dev/zero of=/ok bs=1M count=8 2>/dev/null && rm /ok")
	})

	t.Run("UIDRanges", func(t *testing.T) {
		a := running(t, b, "ids", sliver.Resources{})
		ia, _ := b.State(context.Background(), a)
		iv := victimInfo
		if ia.UIDBase == iv.UIDBase || (ia.UIDBase < iv.UIDBase+sliver.IDRangeSize && iv.UIDBase < ia.UIDBase+sliver.IDRangeSize) {
			t.Errorf("ID ranges overlap: %d and %d (size %d)", ia.UIDBase, iv.UIDBase, sliver.IDRangeSize)
		}
		must(t, b, a, "touch /rootfile && touch /userfile && chown 1000:100 /userfile")
		for _, c := range []struct {
			path     string
			uid, gid uint32
		}{{"/rootfile", ia.UIDBase, ia.UIDBase}, {"/userfile", ia.UIDBase + 1000, ia.UIDBase + 100}} {
			var st syscall.Stat_t
			if err := syscall.Stat(h.UpperPath(a, c.path), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != c.uid || st.Gid != c.gid {
				t.Errorf("%s on the host is owned by %d:%d, want %d:%d", c.path, st.Uid, st.Gid, c.uid, c.gid)
			}
		}
		var st syscall.Stat_t
		if err := syscall.Stat(h.UpperPath(victim, "/secret"), &st); err != nil || st.Uid != iv.UIDBase {
			t.Errorf("victim's file owned by %d (%v), want %d", st.Uid, err, iv.UIDBase)
		}
	})
}

func hashFile(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sha256.Sum256(b)
}

func testLeaks(t *testing.T, h Harness) {
	b := open(t, h)
	ctx := context.Background()
	before := h.Snapshot(t)
	cycles := h.Cycles
	if cycles == 0 {
		cycles = 200
	}
	name := uniqueName("cyc")
	for i := range cycles {
		if _, err := b.Create(ctx, sliver.Spec{Name: name}); err != nil {
			t.Fatalf("cycle %d: Create: %v", i, err)
		}
		if err := b.Start(ctx, name); err != nil {
			t.Fatalf("cycle %d: Start: %v", i, err)
		}
		if i%10 == 0 {
			must(t, b, name, "(sleep 600 >/dev/null 2>&1 &); echo x > /f")
		}
		if err := b.Destroy(ctx, name); err != nil {
			t.Fatalf("cycle %d: Destroy: %v", i, err)
		}
	}
	if _, err := b.State(ctx, name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("State after the last Destroy = %v, want ErrNotFound", err)
	}
	after := h.Snapshot(t)
	if diff := diffSets(before, after); diff != "" {
		t.Errorf("after %d create/start/destroy cycles the host holds more or fewer objects:\n%s", cycles, diff)
	}
}

func diffSets(before, after []string) string {
	in := map[string]bool{}
	for _, s := range before {
		in[s] = true
	}
	var out []string
	for _, s := range after {
		if !in[s] {
			out = append(out, "+ "+s)
		}
		delete(in, s)
	}
	for s := range in {
		out = append(out, "- "+s)
	}
	return strings.Join(sortedCopy(out), "\n")
}
