package vsh

import (
	"context"
	"encoding/binary"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/sliver"
)

// signals maps SSH signal names (RFC 4254 §6.10) to signals.
var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// session serves one session channel: its requests until a shell or a
// command starts, then the process, then its exit status.
func (s *Server) session(ctx context.Context, user, slice string, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	spec := sliver.ExecSpec{User: user, Stdin: ch, Stdout: ch, Stderr: ch.Stderr()}
	resize := make(chan sliver.WinSize, 4)
	sigs := make(chan syscall.Signal, 4)
	spec.Resize, spec.Signals = resize, sigs
	done := make(chan int, 1)
	started := false
	for {
		select {
		case code := <-done:
			_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
			_ = ch.CloseWrite()
			return
		case req, ok := <-reqs:
			if !ok {
				if started {
					// The client is gone: the process's context ends with the
					// connection; wait for it.
					<-done
				}
				return
			}
			ok = s.request(req, &spec, resize, sigs, started)
			if !started && (req.Type == "shell" || req.Type == "exec" || req.Type == "subsystem") && ok {
				started = true
				go func(e sliver.ExecSpec) {
					code, err := s.cfg.Slivers.Exec(ctx, slice, e)
					if err != nil {
						s.log.Info("ssh session failed", "slice", slice, "err", err)
						_, _ = ch.Stderr().Write([]byte("plab: " + err.Error() + "\r\n"))
						if code == 0 {
							code = 255
						}
					}
					done <- code
				}(spec)
			}
			if req.WantReply {
				_ = req.Reply(ok, nil)
			}
		}
	}
}

// request applies one session request to spec and says whether it is
// accepted.
func (s *Server) request(req *ssh.Request, spec *sliver.ExecSpec, resize chan sliver.WinSize, sigs chan syscall.Signal, started bool) bool {
	p := req.Payload
	switch req.Type {
	case "pty-req":
		term, rest, ok := sshString(p)
		if !ok || len(rest) < 8 || started {
			return false
		}
		spec.TTY = true
		spec.Size = sliver.WinSize{Cols: uint16(binary.BigEndian.Uint32(rest)), Rows: uint16(binary.BigEndian.Uint32(rest[4:]))}
		spec.Env = append(spec.Env, "TERM="+term)
		return true
	case "env":
		name, rest, ok := sshString(p)
		value, _, ok2 := sshString(rest)
		if !ok || !ok2 || started || !(name == "LANG" || name == "TERM" || strings.HasPrefix(name, "LC_")) {
			return false
		}
		spec.Env = append(spec.Env, name+"="+value)
		return true
	case "window-change":
		if len(p) < 8 {
			return false
		}
		select {
		case resize <- sliver.WinSize{Cols: uint16(binary.BigEndian.Uint32(p)), Rows: uint16(binary.BigEndian.Uint32(p[4:]))}:
		default:
		}
		return true
	case "signal":
		name, _, ok := sshString(p)
		sig, known := signals[name]
		if !ok || !known {
			return false
		}
		select {
		case sigs <- sig:
		default:
		}
		return true
	case "shell":
		if started {
			return false
		}
		spec.Args = []string{"/bin/sh", "-l"}
		return true
	case "exec":
		cmd, _, ok := sshString(p)
		if !ok || started {
			return false
		}
		if args, ok := HelperCommand(cmd); ok && s.cfg.Helper != nil {
			s.helper(spec, args)
			return true
		}
		spec.Args = []string{"/bin/sh", "-c", cmd}
		return true
	case "subsystem":
		name, _, ok := sshString(p)
		if !ok || started || name != "sftp" || s.cfg.Helper == nil {
			return false
		}
		s.helper(spec, []string{"sftp-server"})
		return true
	}
	return false
}

// helper makes spec run the node's file-transfer helper inside the sliver
// with args (HelperMain's).
func (s *Server) helper(spec *sliver.ExecSpec, args []string) {
	spec.Program = s.cfg.Helper
	spec.Args = append(append([]string(nil), s.cfg.HelperArgs...), args...)
	if len(s.cfg.HelperArgs) == 0 {
		spec.Args = append([]string{"plab-helper"}, args...)
	}
}

// sshString reads an SSH string (uint32 length, bytes) off p.
func sshString(p []byte) (string, []byte, bool) {
	if len(p) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-4) {
		return "", nil, false
	}
	return string(p[4 : 4+n]), p[4+n:], true
}
