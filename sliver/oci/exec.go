//go:build linux

package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
	"golang.org/x/sys/unix"
)

// Exec runs a process in a running sliver through the runtime's exec and
// returns its exit status (128+n when signal n killed it). The runtime
// stays alive while the process runs, forwarding signals to it; there is no
// other helper. Cancelling ctx kills the process.
func (b *Backend) Exec(ctx context.Context, name string, e sliver.ExecSpec) (int, error) {
	if len(e.Args) == 0 || e.Args[0] == "" {
		return -1, fmt.Errorf("exec in sliver %s: no command given: %w", name, errdefs.ErrInvalid)
	}
	ent, err := b.get(name)
	if err != nil {
		return -1, err
	}
	state, pid := observe(&ent.rec), ent.rec.Pid
	ent.mu.Unlock()
	if state != sliver.Running {
		return -1, fmt.Errorf("sliver %s is %s; start it first (plab sliver start %s): %w", name, state, name, errdefs.ErrConflict)
	}
	// The sliver's root as its init sees it.
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	u, err := lookupUser(root, e.User)
	if err != nil {
		return -1, fmt.Errorf("exec in sliver %s: %w", name, err)
	}
	proc := b.execProcess(e, u)
	if e.Program != nil {
		// The runtime passes the descriptor on as fd 3; the process execs
		// it through its own /proc.
		proc.Args = append([]string{"/proc/self/fd/3"}, e.Args[1:]...)
	} else if err := findExecutable(root, e.Args[0], proc.Env, proc.Cwd); err != nil {
		return -1, fmt.Errorf("exec in sliver %s: %w", name, err)
	}

	dir := filepath.Join(b.cfg.RunDir, "exec")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return -1, err
	}
	id := randomID()
	procFile := filepath.Join(dir, id+".json")
	pidFile := filepath.Join(dir, id+".pid")
	logFile := filepath.Join(dir, id+".log")
	defer func() {
		os.Remove(procFile)
		os.Remove(pidFile)
		os.Remove(logFile)
	}()
	data, err := jsonMarshal(proc)
	if err != nil {
		return -1, err
	}
	if err := os.WriteFile(procFile, data, 0o600); err != nil {
		return -1, err
	}
	// Not CommandContext: killing the runtime would orphan the process.
	args := []string{"exec", "--process", procFile, "--pid-file", pidFile}
	if e.Program != nil {
		args = append(args, "--preserve-fds", "1")
	}
	cmd := b.rt.command(context.Background(), logFile, append(args, name)...)
	if e.Program != nil {
		cmd.ExtraFiles = []*os.File{e.Program}
	}
	var code int
	if e.TTY {
		code, err = runTTY(ctx, cmd, e, pidFile)
	} else {
		code, err = runPipes(ctx, cmd, e, pidFile)
	}
	if err != nil {
		return -1, fmt.Errorf("exec in sliver %s: %w", name, err)
	}
	if msg := lastLoggedError(logFile); msg != "" {
		return -1, fmt.Errorf("exec in sliver %s: %s", name, msg)
	}
	return code, nil
}

// execProcess builds the OCI process of an exec: the same confinement as
// the sliver's init, as user u.
func (b *Backend) execProcess(e sliver.ExecSpec, u execUser) *specs.Process {
	home := u.Home
	if !u.HomeFound {
		home = "/"
	}
	env := []string{"PATH=" + defaultPath, "HOME=" + home}
	if u.Name != "" {
		env = append(env, "USER="+u.Name, "LOGNAME="+u.Name)
	}
	if e.TTY {
		env = append(env, "TERM=xterm")
	}
	env = mergeEnv(env, e.Env)
	cwd := e.Dir
	if cwd == "" {
		cwd = home
	}
	p := &specs.Process{
		Terminal: e.TTY,
		User:     specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.Groups},
		Args:     e.Args,
		Env:      env,
		Cwd:      cwd,
	}
	if e.TTY && e.Size.Cols > 0 && e.Size.Rows > 0 {
		p.ConsoleSize = &specs.Box{Width: uint(e.Size.Cols), Height: uint(e.Size.Rows)}
	}
	s := newSpec(withConfinement())
	p.Capabilities, p.NoNewPrivileges, p.Rlimits = s.Process.Capabilities, true, s.Process.Rlimits
	if u.UID != 0 {
		// Like a login, a non-root user starts with no capabilities.
		p.Capabilities = &specs.LinuxCapabilities{Bounding: capabilities}
	}
	return p
}

// mergeEnv returns base with the KEY=value entries of extra added, replacing
// entries of base with the same key.
func mergeEnv(base, extra []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, b := range out {
			if bk, _, _ := strings.Cut(b, "="); bk == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// findExecutable checks, inside the sliver's root, that cmd names an
// executable file (looked up in the PATH of env when it has no slash), so a
// typo gets a clear error rather than a runtime failure.
func findExecutable(root, cmd string, env []string, cwd string) error {
	var candidates []string
	if strings.Contains(cmd, "/") {
		if !path.IsAbs(cmd) {
			cmd = path.Join(cwd, cmd)
		}
		candidates = []string{cmd}
	} else {
		p := defaultPath
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				p = v
			}
		}
		for _, d := range strings.Split(p, ":") {
			if path.IsAbs(d) {
				candidates = append(candidates, path.Join(d, cmd))
			}
		}
	}
	for _, c := range candidates {
		fd, err := openInRoot(root, c, unix.O_PATH)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return nil
		}
	}
	return fmt.Errorf("%q not found in the sliver (looked in its PATH); check the name or install it in the sliver: %w", cmd, sliver.ErrCommandNotFound)
}

// runPipes runs a non-terminal exec: the runtime passes our descriptors
// straight to the process.
func runPipes(ctx context.Context, cmd *exec.Cmd, e sliver.ExecSpec, pidFile string) (int, error) {
	var stdinW *os.File
	switch in := e.Stdin.(type) {
	case nil:
	case *os.File:
		cmd.Stdin = in
	default:
		// Our own pipe: the copy must not hold up Wait when the process
		// exits without reading all its input.
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		cmd.Stdin, stdinW = r, w
		defer r.Close()
	}
	cmd.Stdout, cmd.Stderr = e.Stdout, e.Stderr
	if err := cmd.Start(); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return -1, fmt.Errorf("start runtime: %w", err)
	}
	var closeStdin sync.Once
	if stdinW != nil {
		cmd.Stdin.(*os.File).Close()
		go func() {
			_, _ = io.Copy(stdinW, e.Stdin)
			closeStdin.Do(func() { stdinW.Close() })
		}()
	}
	stop := supervise(ctx, cmd, e, pidFile, nil)
	err := cmd.Wait()
	stop()
	if stdinW != nil {
		closeStdin.Do(func() { stdinW.Close() })
	}
	return exitCode(cmd, err)
}

// runTTY runs an exec with a terminal. The runtime runs on a pseudo-terminal
// of ours as its controlling terminal; it gives the process a terminal of
// its own and relays between the two, including size changes (it resizes
// when ours is resized and it gets SIGWINCH).
func runTTY(ctx context.Context, cmd *exec.Cmd, e sliver.ExecSpec, pidFile string) (int, error) {
	master, slave, err := openPTY()
	if err != nil {
		return -1, err
	}
	defer master.Close()
	if e.Size.Cols > 0 && e.Size.Rows > 0 {
		setSize(master, e.Size)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Start()
	slave.Close()
	if err != nil {
		return -1, fmt.Errorf("start runtime: %w", err)
	}
	out := make(chan struct{})
	go func() {
		defer close(out)
		w := e.Stdout
		if w == nil {
			w = io.Discard
		}
		_, _ = io.Copy(w, master) // ends with EIO once the runtime is gone
	}()
	if e.Stdin != nil {
		go func() { _, _ = io.Copy(master, e.Stdin) }()
	}
	stop := supervise(ctx, cmd, e, pidFile, master)
	err = cmd.Wait()
	stop()
	<-out
	return exitCode(cmd, err)
}

// supervise forwards signals and window changes to a running exec and kills
// its process when ctx ends. The returned function stops it and waits until
// it has stopped, so the caller may close tty afterwards.
func supervise(ctx context.Context, cmd *exec.Cmd, e sliver.ExecSpec, pidFile string, tty *os.File) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case sig, ok := <-e.Signals:
				if !ok {
					e.Signals = nil
					continue
				}
				_ = cmd.Process.Signal(sig) // the runtime forwards it
			case ws, ok := <-e.Resize:
				if !ok {
					e.Resize = nil
					continue
				}
				if tty != nil {
					setSize(tty, ws) // the kernel sends the runtime SIGWINCH
				}
			case <-ctx.Done():
				killExec(cmd, pidFile, done)
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// killExec kills an exec's process. Before the runtime has started it,
// killing the runtime is enough (its child dies with it); afterwards the
// process itself must be killed, or it would outlive the runtime. exited
// closes once the runtime has been waited for.
func killExec(cmd *exec.Cmd, pidFile string, exited <-chan struct{}) {
	for range 50 {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				killPid(pid)
				return
			}
		}
		select {
		case <-exited:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	_ = cmd.Process.Kill()
}

// killPid sends SIGKILL through a pidfd, so a recycled PID is never hit.
func killPid(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

func exitCode(cmd *exec.Cmd, err error) (int, error) {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return -1, err
	}
	return cmd.ProcessState.ExitCode(), nil
}

func openPTY() (master, slave *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		unix.Close(m)
		return nil, nil, fmt.Errorf("open pty peer: %w", errno)
	}
	return os.NewFile(uintptr(m), "ptmx"), os.NewFile(s, "pts"), nil
}

func setSize(f *os.File, ws sliver.WinSize) {
	_ = unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}

func fdFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
