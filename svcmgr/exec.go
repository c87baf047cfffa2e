package svcmgr

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/atomicfile"
)

// knownHostsFile holds the host keys PLC published for the slice's nodes,
// under their hostnames, for OpenSSH's StrictHostKeyChecking.
const knownHostsFile = "known_hosts"

// SSHArgs returns the OpenSSH arguments that reach slice's sliver on host
// through its SSH gateway, pinning the host key PLC publishes: options,
// then the destination. The command follows.
func (s *Session) SSHArgs(ctx context.Context, slice, host string) ([]string, error) {
	opts, addr, port, err := s.sshTarget(ctx, host)
	if err != nil {
		return nil, err
	}
	return append(opts, "-p", strconv.Itoa(port), slice+"@"+addr), nil
}

// sshTarget returns the OpenSSH options that pin host's gateway key and
// pick the user's identity, and where the gateway listens.
func (s *Session) sshTarget(ctx context.Context, host string) ([]string, string, int, error) {
	n, err := s.Node(ctx, host)
	if err != nil {
		return nil, "", 0, err
	}
	if n.SSHHostKey == "" {
		return nil, "", 0, fmt.Errorf("node %s has not published an SSH host key yet (is plab node serve running there?): %w", host, errdefs.ErrUnavailable)
	}
	kh := filepath.Join(s.Dir, knownHostsFile)
	if err := s.addKnownHost(kh, host, n.SSHHostKey); err != nil {
		return nil, "", 0, err
	}
	addr, port := NodeSSHAddr(n)
	opts := []string{"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=" + host, "-o", "BatchMode=yes"}
	if s.Config.Identity != "agent" {
		opts = append(opts, "-i", s.Config.Identity, "-o", "IdentitiesOnly=yes")
	}
	return opts, addr, port, nil
}

// addKnownHost writes host's key into the known hosts file, replacing an
// older key of that host (PLC is the authority).
func (s *Session) addKnownHost(path, host, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := host + " " + key
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == want {
			return nil
		}
		if l != "" && !strings.HasPrefix(l, host+" ") {
			lines = append(lines, l)
		}
	}
	lines = append(lines, want)
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// ExecResult is one node's outcome of an Exec.
type ExecResult struct {
	Node string `json:"node"`
	// Code is the command's exit status; 255 when ssh could not run it.
	Code  int    `json:"exit_code"`
	Error string `json:"error,omitempty"`
}

// ExecOptions shape an Exec.
type ExecOptions struct {
	Options
	// Nodes limits the run to these nodes of the slice (default: all).
	Nodes []string
	// Stdout and Stderr receive every node's output, each line prefixed
	// with "node: ".
	Stdout, Stderr io.Writer
}

// Exec runs cmd in every sliver of the slice with OpenSSH, in parallel;
// output lines are prefixed with their node and written whole.
func (s *Session) Exec(ctx context.Context, slice string, cmd []string, o ExecOptions) ([]ExecResult, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("no command given: %w", errdefs.ErrInvalid)
	}
	return s.fanOut(ctx, slice, o, func(h string) (*exec.Cmd, error) {
		args, err := s.SSHArgs(ctx, slice, h)
		if err != nil {
			return nil, err
		}
		return exec.CommandContext(ctx, "ssh", append(args, "--", remoteCommand(cmd))...), nil
	})
}

// fanOut runs, in parallel, the OpenSSH command command makes for each node
// of the slice (o.Nodes, or all), its output prefixed with the node, and
// collects the exit statuses.
func (s *Session) fanOut(ctx context.Context, slice string, o ExecOptions, command func(host string) (*exec.Cmd, error)) ([]ExecResult, error) {
	st, err := s.state(slice)
	if err != nil {
		return nil, err
	}
	hosts := st.Hosts()
	if len(o.Nodes) > 0 {
		for _, h := range o.Nodes {
			if !slices.Contains(hosts, h) {
				return nil, fmt.Errorf("node %s is not one of slice %s's nodes (see plab slice status %s): %w", h, slice, slice, errdefs.ErrNotFound)
			}
		}
		hosts = o.Nodes
	}
	out := make([]ExecResult, len(hosts))
	var outMu sync.Mutex
	s.each(ctx, hosts, o.Options, func(h string) {
		i := slices.Index(hosts, h)
		out[i] = ExecResult{Node: h}
		c, err := command(h)
		if err != nil {
			out[i].Code, out[i].Error = 255, err.Error()
			prefixed(&outMu, o.Stderr, h, strings.NewReader("plab: "+err.Error()+"\n"))
			return
		}
		so, _ := c.StdoutPipe()
		se, _ := c.StderrPipe()
		if err := c.Start(); err != nil {
			out[i].Code, out[i].Error = 255, err.Error()
			return
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); prefixed(&outMu, o.Stdout, h, so) }()
		go func() { defer wg.Done(); prefixed(&outMu, o.Stderr, h, se) }()
		wg.Wait()
		err = c.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			out[i].Code = ee.ExitCode()
		case err != nil:
			out[i].Code, out[i].Error = 255, err.Error()
		}
	})
	return out, ctx.Err()
}

// remoteCommand is the command line the sliver's shell runs: one argument
// is taken as a shell command line (as ssh does), several as an argument
// vector, each quoted so it arrives intact.
func remoteCommand(cmd []string) string {
	if len(cmd) == 1 {
		return cmd[0]
	}
	q := make([]string, len(cmd))
	for i, a := range cmd {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// prefixed copies r to w line by line, each prefixed with "node: ".
func prefixed(mu *sync.Mutex, w io.Writer, node string, r io.Reader) {
	if w == nil {
		w = io.Discard
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "%s: %s\n", node, sc.Text())
		mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// CopyOptions shape a Copy.
type CopyOptions struct {
	ExecOptions
	// Recursive copies directories (scp -r).
	Recursive bool
}

// CopyTo copies local files to path in every sliver of the slice (scp, in
// parallel).
func (s *Session) CopyTo(ctx context.Context, slice string, local []string, path string, o CopyOptions) ([]ExecResult, error) {
	return s.fanOut(ctx, slice, o.ExecOptions, func(h string) (*exec.Cmd, error) {
		args, dest, err := s.scpArgs(ctx, slice, h, o)
		if err != nil {
			return nil, err
		}
		return exec.CommandContext(ctx, "scp", append(append(args, local...), dest+":"+path)...), nil
	})
}

// CopyFrom copies path from every sliver of the slice into dir/NODE/.
func (s *Session) CopyFrom(ctx context.Context, slice, path, dir string, o CopyOptions) ([]ExecResult, error) {
	return s.fanOut(ctx, slice, o.ExecOptions, func(h string) (*exec.Cmd, error) {
		args, dest, err := s.scpArgs(ctx, slice, h, o)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(dir, h), 0o755); err != nil {
			return nil, err
		}
		return exec.CommandContext(ctx, "scp", append(args, dest+":"+path, filepath.Join(dir, h)+"/")...), nil
	})
}

// scpArgs are scp's options to reach slice's sliver on host, and the
// destination (slice@address) its paths go after.
func (s *Session) scpArgs(ctx context.Context, slice, host string, o CopyOptions) ([]string, string, error) {
	opts, addr, port, err := s.sshTarget(ctx, host)
	if err != nil {
		return nil, "", err
	}
	args := append(opts, "-P", strconv.Itoa(port), "-q")
	if o.Recursive {
		args = append(args, "-r")
	}
	return args, slice + "@" + addr, nil
}
