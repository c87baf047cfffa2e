//go:build linux

package slivertest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

func testLifecycle(t *testing.T, h Harness) {
	b := open(t, h)
	noLeaks(t, h)
	ctx := context.Background()
	name := uniqueName("lc")
	in, err := b.Create(ctx, sliver.Spec{Name: name})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if in.State != sliver.Created || in.Name != name || in.Image == "" || in.UIDBase == 0 {
		t.Errorf("Create = %+v, want a created sliver with a name, image and uid base", in)
	}
	if in.Resources != sliver.DefaultResources {
		t.Errorf("Create resources = %+v, want defaults %+v", in.Resources, sliver.DefaultResources)
	}
	if _, err := b.Exec(ctx, name, sliver.ExecSpec{Args: []string{"true"}}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Exec on a created sliver = %v, want ErrConflict", err)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	in, err = b.State(ctx, name)
	if err != nil || in.State != sliver.Running || in.Pid <= 0 {
		t.Fatalf("State after Start = %+v, %v; want running with a pid", in, err)
	}
	if got := strings.TrimSpace(must(t, b, name, "hostname")); got != name {
		t.Errorf("hostname in sliver = %q, want %q", got, name)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Errorf("Start of a running sliver = %v, want nil", err)
	}
	must(t, b, name, "echo kept > /root/keep")
	if err := b.Stop(ctx, name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if in, _ := b.State(ctx, name); in.State != sliver.Stopped || in.Pid != 0 {
		t.Errorf("State after Stop = %+v, want stopped without pid", in)
	}
	if _, err := b.Exec(ctx, name, sliver.ExecSpec{Args: []string{"true"}}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Exec on a stopped sliver = %v, want ErrConflict", err)
	}
	if err := b.Stop(ctx, name); err != nil {
		t.Errorf("Stop of a stopped sliver = %v, want nil", err)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := must(t, b, name, "cat /root/keep"); got != "kept\n" {
		t.Errorf("file after stop and start = %q, want kept", got)
	}
	list, _ := b.List(ctx)
	if !containsSliver(list, name) {
		t.Errorf("List = %v, want it to hold %s", list, name)
	}
	if err := b.Destroy(ctx, name); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := b.State(ctx, name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("State after Destroy = %v, want ErrNotFound", err)
	}
	if list, _ := b.List(ctx); containsSliver(list, name) {
		t.Errorf("List after Destroy still holds %s", name)
	}
	// The name is free again, and the new sliver starts from a clean image.
	if _, err := b.Create(ctx, sliver.Spec{Name: name}); err != nil {
		t.Fatalf("Create after Destroy: %v", err)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if r := run(t, b, name, "cat", "/root/keep"); r.code == 0 {
		t.Errorf("a re-created sliver sees the old sliver's file: %q", r.stdout)
	}
	// Destroy of a sliver that never started.
	other := uniqueName("lc")
	if _, err := b.Create(ctx, sliver.Spec{Name: other}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, other} {
		if err := b.Destroy(ctx, n); err != nil {
			t.Errorf("Destroy(%s): %v", n, err)
		}
	}
}

func containsSliver(list []sliver.Info, name string) bool {
	for _, in := range list {
		if in.Name == name {
			return true
		}
	}
	return false
}

func testExec(t *testing.T, h Harness) {
	b := open(t, h)
	name := running(t, b, "ex", sliver.Resources{})
	for _, want := range []int{0, 1, 42} {
		if r := run(t, b, name, "sh", "-c", "exit "+strconv.Itoa(want)); r.code != want {
			t.Errorf("exit %d: got status %d", want, r.code)
		}
	}
	r := run(t, b, name, "sh", "-c", "echo out; echo err >&2")
	if r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("stdout/stderr = %q/%q, want out/err", r.stdout, r.stderr)
	}
	r = runSpec(t, b, name, sliver.ExecSpec{Args: []string{"cat"}, Stdin: strings.NewReader("hello from stdin")})
	if r.stdout != "hello from stdin" {
		t.Errorf("cat of stdin = %q", r.stdout)
	}
	r = runSpec(t, b, name, sliver.ExecSpec{Args: []string{"sh", "-c", "echo $FOO:$HOME:$PATH; pwd"}, Env: []string{"FOO=bar"}, Dir: "/tmp"})
	if !strings.HasPrefix(r.stdout, "bar:/root:/") || !strings.HasSuffix(r.stdout, "\n/tmp\n") {
		t.Errorf("env and dir = %q, want FOO=bar HOME=/root, a PATH and /tmp", r.stdout)
	}
	users := []struct{ user, want string }{
		{"", "0 0"}, {"root", "0 0"}, {"user", "1000 1000"}, {"1234", "1234 0"}, {"user:users", "1000 100"}, {"4321:4321", "4321 4321"},
	}
	for _, u := range users {
		r := runSpec(t, b, name, sliver.ExecSpec{Args: []string{"sh", "-c", "echo $(id -u) $(id -g)"}, User: u.user})
		if got := strings.TrimSpace(r.stdout); got != u.want {
			t.Errorf("id as %q = %q, want %q", u.user, got, u.want)
		}
	}
	r = runSpec(t, b, name, sliver.ExecSpec{Args: []string{"grep", "CapEff", "/proc/self/status"}, User: "user"})
	if !strings.Contains(r.stdout, "0000000000000000") {
		t.Errorf("a non-root user holds capabilities: %q", r.stdout)
	}
	if _, err := b.Exec(context.Background(), name, sliver.ExecSpec{Args: []string{"no-such-command"}}); !errors.Is(err, sliver.ErrCommandNotFound) {
		t.Errorf("Exec(no-such-command) = %v, want ErrCommandNotFound", err)
	}
	if _, err := b.Exec(context.Background(), name, sliver.ExecSpec{Args: []string{"true"}, User: "nobody-here"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Exec as an unknown user = %v, want ErrInvalid", err)
	}

	// Orphans are reaped by the sliver's init: no zombies pile up.
	must(t, b, name, "for i in 1 2 3 4 5; do (true &); done")
	zombies := ""
	for range 200 {
		if zombies = strings.TrimSpace(must(t, b, name, "ps -o stat | grep -c Z || true")); zombies == "0" {
			break
		}
	}
	if zombies != "0" {
		t.Errorf("%s zombies remain in the sliver: its init does not reap", zombies)
	}

	// Signals reach the process; the status says which killed it.
	sigs := make(chan syscall.Signal, 1)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code, err := b.Exec(context.Background(), name, sliver.ExecSpec{Args: []string{"sh", "-c", "echo ready; exec sleep 600"}, Signals: sigs, Stdout: pw})
		if err != nil {
			t.Errorf("Exec(sleep): %v", err)
		}
		pw.Close()
		done <- code
	}()
	waitLine(t, pr, "ready")
	sigs <- syscall.SIGTERM
	go io.Copy(io.Discard, pr)
	if code := <-done; code != 128+int(syscall.SIGTERM) {
		t.Errorf("status after SIGTERM = %d, want %d", code, 128+syscall.SIGTERM)
	}

	// Cancelling the context kills the process inside the sliver.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw = io.Pipe()
	go func() {
		_, _ = b.Exec(ctx, name, sliver.ExecSpec{Args: []string{"sh", "-c", "echo ready; exec sleep 601"}, Stdout: pw})
		pw.Close()
		done <- 0
	}()
	waitLine(t, pr, "ready")
	cancel()
	go io.Copy(io.Discard, pr)
	<-done
	if out := run(t, b, name, "ps").stdout; strings.Contains(out, "sleep 601") {
		t.Errorf("the process outlived its cancelled exec:\n%s", out)
	}

	// A planted symlink cannot make the host read its own files as the
	// sliver's account database.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(hostFile, []byte("pwned:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, b, name, "ln -sf "+hostFile+" /etc/group && ln -sf ../../../../../.."+hostFile+" /etc/passwd")
	if _, err := b.Exec(context.Background(), name, sliver.ExecSpec{Args: []string{"true"}, User: "pwned"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Exec as a user only the host's file names = %v, want ErrInvalid (the host file must not be read)", err)
	}
}

// waitLine reads r until a line equal to want.
func waitLine(t *testing.T, r io.Reader, want string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == want {
			return
		}
	}
	t.Fatalf("output ended before %q", want)
}

func testExecTTY(t *testing.T, h Harness) {
	b := open(t, h)
	name := running(t, b, "tty", sliver.Resources{})
	resize := make(chan sliver.WinSize, 1)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code, err := b.Exec(context.Background(), name, sliver.ExecSpec{
			Args: []string{"sh", "-c", "test -t 0 && echo tty; stty size; while read line; do stty size; done; exit 7"},
			TTY:  true, Size: sliver.WinSize{Cols: 80, Rows: 24}, Resize: resize,
			Stdin: inR, Stdout: outW,
		})
		if err != nil {
			t.Errorf("Exec with tty: %v", err)
		}
		outW.Close()
		done <- code
	}()
	sc := bufio.NewScanner(outR)
	var lines []string
	next := func() string {
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && l != "x" { // the terminal echoes input
				lines = append(lines, l)
				return l
			}
		}
		t.Fatalf("tty output ended; got %q", lines)
		return ""
	}
	if l := next(); l != "tty" {
		t.Errorf("first line = %q, want tty (stdin is a terminal)", l)
	}
	if l := next(); l != "24 80" {
		t.Errorf("initial size = %q, want 24 80", l)
	}
	// The new size reaches the sliver's terminal asynchronously: ask for
	// it until it arrives (bounded).
	resize <- sliver.WinSize{Cols: 132, Rows: 50}
	got := ""
	for range 200 {
		io.WriteString(inW, "x\n")
		if got = next(); got == "50 132" {
			break
		}
	}
	if got != "50 132" {
		t.Errorf("size after resize = %q, want 50 132", got)
	}
	inW.Write([]byte{4}) // ^D: end of input
	go io.Copy(io.Discard, outR)
	if code := <-done; code != 7 {
		t.Errorf("tty exec status = %d, want 7", code)
	}
	inW.Close()
}

func testStats(t *testing.T, h Harness) {
	b := open(t, h)
	ctx := context.Background()
	name := running(t, b, "st", sliver.Resources{})
	must(t, b, name, "dd if=/dev/zero of=/dev/null bs=64k count=20000 2>/dev/null; dd if=/dev/zero of=/data bs=1M count=8 2>/dev/null; sync")
	st, err := b.Stats(ctx, name)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.CPUTime <= 0 || st.MemoryBytes <= 0 || st.Processes < 1 || st.DiskBytes < 8<<20 {
		t.Errorf("Stats = %+v, want cpu time, memory, at least 1 process and 8MiB of disk", st)
	}
	must(t, b, name, "for i in 1 2 3; do sleep 600 >/dev/null 2>&1 & done")
	st2, _ := b.Stats(ctx, name)
	if st2.Processes < st.Processes+3 {
		t.Errorf("Processes with 3 more sleepers = %d, before %d", st2.Processes, st.Processes)
	}
	if err := b.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	st3, err := b.Stats(ctx, name)
	if err != nil || st3.Processes != 0 || st3.DiskBytes < 8<<20 {
		t.Errorf("Stats of a stopped sliver = %+v, %v; want no processes and its disk", st3, err)
	}
}

func testUpdate(t *testing.T, h Harness) {
	b := open(t, h)
	ctx := context.Background()
	res := sliver.Resources{MemoryBytes: 64 << 20, Pids: 32, DiskBytes: 16 << 20}
	name := running(t, b, "up", res)
	if r := run(t, b, name, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=100M count=1"); r.code == 0 {
		t.Errorf("a 100MiB buffer fit in a 64MiB sliver")
	}
	if r := run(t, b, name, "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=24 2>&1; rm -f /big; sync"); !strings.Contains(r.stdout, "quota") && !strings.Contains(r.stdout, "space") {
		t.Errorf("24MiB fit in a 16MiB disk: %q", r.stdout)
	}
	res.MemoryBytes, res.DiskBytes = 256<<20, 64<<20
	if err := b.Update(ctx, name, res); err != nil {
		t.Fatalf("Update: %v", err)
	}
	must(t, b, name, "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null")
	must(t, b, name, "dd if=/dev/zero of=/big bs=1M count=24 2>/dev/null")
	if in, _ := b.State(ctx, name); in.Resources.MemoryBytes != 256<<20 {
		t.Errorf("State after Update = %+v, want the new memory limit", in.Resources)
	}
	res.CPUShares, res.CPUReserve = 0, 100
	if err := b.Update(ctx, name, res); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Update from best effort to reserved = %v, want ErrInvalid", err)
	}
	if err := b.Update(ctx, name, sliver.Resources{MemoryBytes: 1}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Update to a 1-byte memory limit = %v, want ErrInvalid", err)
	}
	// Limits survive a restart of the sliver.
	if err := b.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	must(t, b, name, "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null")
}

func testBadInput(t *testing.T, h Harness) {
	b := open(t, h)
	noLeaks(t, h)
	ctx := context.Background()
	for _, n := range []string{"", "UPPER", "a b", "../x", "x/y", "1abc", "_x", strings.Repeat("a", 33), "a;rm", "a\n"} {
		if _, err := b.Create(ctx, sliver.Spec{Name: n}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", n, err)
		}
	}
	if _, err := b.Create(ctx, sliver.Spec{Name: uniqueName("bad"), Image: "no-such-image"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Create with an unknown image = %v, want ErrNotFound", err)
	}
	for _, r := range []sliver.Resources{
		{MemoryBytes: 1}, {Pids: 1}, {DiskBytes: 1}, {CPUShares: 1000}, {CPUShares: -1},
		{CPUReserve: 1 << 40}, {CPULimit: 1 << 40}, {CPUShares: 2, CPUReserve: 100}, {CPUReserve: 500, CPULimit: 100},
		{MemoryBytes: -5},
	} {
		if _, err := b.Create(ctx, sliver.Spec{Name: uniqueName("bad"), Resources: r}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Create with %+v = %v, want ErrInvalid", r, err)
		}
	}
	name := uniqueName("bad")
	if _, err := b.Create(ctx, sliver.Spec{Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, sliver.Spec{Name: name}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Create of an existing name = %v, want ErrConflict", err)
	}
	if err := b.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	missing := uniqueName("none")
	for op, f := range map[string]func() error{
		"Start":   func() error { return b.Start(ctx, missing) },
		"Stop":    func() error { return b.Stop(ctx, missing) },
		"Destroy": func() error { return b.Destroy(ctx, missing) },
		"Update":  func() error { return b.Update(ctx, missing, sliver.Resources{}) },
		"State":   func() error { _, err := b.State(ctx, missing); return err },
		"Stats":   func() error { _, err := b.Stats(ctx, missing); return err },
		"Exec":    func() error { _, err := b.Exec(ctx, missing, sliver.ExecSpec{Args: []string{"true"}}); return err },
	} {
		if err := f(); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s of a missing sliver = %v, want ErrNotFound", op, err)
		}
	}
	name = running(t, b, "bad", sliver.Resources{})
	if _, err := b.Exec(ctx, name, sliver.ExecSpec{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Exec without a command = %v, want ErrInvalid", err)
	}
	// Reservations are never oversubscribed.
	var errs []error
	for range 64 {
		n := uniqueName("res")
		_, err := b.Create(ctx, sliver.Spec{Name: n, Resources: sliver.Resources{CPUReserve: 1000}})
		if err != nil {
			errs = append(errs, err)
			break
		}
		t.Cleanup(func() { _ = b.Destroy(context.Background(), n) })
	}
	if len(errs) == 0 || !errors.Is(errs[0], errdefs.ErrNoCapacity) {
		t.Errorf("64 reservations of 1 CPU: want ErrNoCapacity once the node is full, got %v", errs)
	}
}

func testRecover(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.Open(t)
	closed := false
	t.Cleanup(func() {
		if !closed {
			b.Close() // a failure below must not leave the node locked
		}
	})
	up, down := uniqueName("rec"), uniqueName("rec")
	for _, n := range []string{up, down} {
		if _, err := b.Create(ctx, sliver.Spec{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Start(ctx, up); err != nil {
		t.Fatal(err)
	}
	must(t, b, up, "echo survived > /root/f")
	closed = true
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := open(t, h)
	list, err := b2.Recover(ctx)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	states := map[string]sliver.State{}
	for _, in := range list {
		states[in.Name] = in.State
	}
	if states[up] != sliver.Running || states[down] != sliver.Created {
		t.Errorf("after reopening: %s is %q, %s is %q; want running and created", up, states[up], down, states[down])
	}
	if got := run(t, b2, up, "cat", "/root/f").stdout; got != "survived\n" {
		t.Errorf("file in the re-adopted sliver = %q", got)
	}
	for _, n := range []string{up, down} {
		if err := b2.Destroy(ctx, n); err != nil {
			t.Errorf("Destroy(%s) after reopening: %v", n, err)
		}
	}
}
