//go:build linux

package oci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runc drives the OCI runtime binary. Each call runs it once; there is no
// daemon, and the runtime keeps its own state under root.
type runc struct {
	bin  string
	root string
}

// command prepares one runtime invocation that logs to logFile.
func (r *runc) command(ctx context.Context, logFile string, args ...string) *exec.Cmd {
	full := append([]string{"--root", r.root, "--log", logFile, "--log-format", "json"}, args...)
	return exec.CommandContext(ctx, r.bin, full...)
}

// call runs the runtime with stdio on /dev/null (a detached sliver init
// inherits it, and must not hold a pipe of ours) and turns a failure into
// the error the runtime logged.
func (r *runc) call(ctx context.Context, logFile string, stdin []byte, args ...string) error {
	if err := os.Truncate(logFile, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cmd := r.command(ctx, logFile, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// The runtime dies with this process: a start, stop or update nobody
	// will record must not go on behind the back of the next process's
	// recovery. The signal follows the forking thread, so keep it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Run(); err != nil {
		return runtimeError(args[0], logFile, err)
	}
	return nil
}

// runtimeError builds an error from the last error the runtime logged.
func runtimeError(op, logFile string, err error) error {
	if msg := lastLoggedError(logFile); msg != "" {
		return fmt.Errorf("%s %s: %s", filepath.Base(op), "failed", msg)
	}
	return fmt.Errorf("runtime %s: %w", op, err)
}

func lastLoggedError(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msg string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return msg
}

// run creates and starts the container of bundle in one step, detached;
// the init's host PID goes to pidFile.
func (r *runc) run(ctx context.Context, id, bundle, pidFile string) error {
	return r.call(ctx, filepath.Join(bundle, "runc.log"), nil, "run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id)
}

// delete kills (with SIGKILL) and removes container id. A container the
// runtime does not know is not an error.
func (r *runc) delete(ctx context.Context, id, logFile string) error {
	if !r.exists(id) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(r.root, id, "state.json")); errors.Is(err, os.ErrNotExist) {
		// A create that was killed before the runtime saved its state:
		// the runtime no longer knows the container, but its directory
		// would block the name. Its processes died with it (Pdeathsig).
		return os.RemoveAll(filepath.Join(r.root, id))
	}
	err := r.call(ctx, logFile, nil, "delete", "--force", id)
	if err != nil && !r.exists(id) {
		return nil
	}
	return err
}

// update applies new resources to a running container.
func (r *runc) update(ctx context.Context, id, logFile string, res *specs.LinuxResources) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return r.call(ctx, logFile, b, "update", "--resources", "-", id)
}

// exists reports whether the runtime has (possibly half-made) state for
// container id.
func (r *runc) exists(id string) bool {
	_, err := os.Stat(filepath.Join(r.root, id))
	return err == nil
}

// ids lists the containers the runtime has state for.
func (r *runc) ids() []string {
	ents, _ := os.ReadDir(r.root)
	var ids []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids
}
