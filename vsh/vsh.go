// Package vsh is the node's SSH gateway, PlanetLab's /bin/vsh: `ssh
// slice@node` lands inside the slice's sliver on that node, with the stock
// OpenSSH tools. The user name is the slice's name; a key is accepted when
// it is one of the sliver's keys at that moment (the node manager's
// addkey/delkey take effect at the next login). A session runs as the
// sliver's root: an interactive shell with a pty (window changes follow) or
// a command with its exit status, separate stdout and stderr, signals, and
// LANG/TERM passed in.
//
//	ssh slice@node CMD ──▶ public key ∈ Keys(slice)? ──▶ session ──▶ Exec(slice, CMD) ──▶ exit-status
package vsh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// Keys returns the authorized_keys lines that may log into the sliver of
// slice, and whether it exists.
type Keys func(slice string) ([]string, bool)

// Execer runs processes in slivers (sliver.Backend's Exec).
type Execer interface {
	Exec(ctx context.Context, name string, e sliver.ExecSpec) (int, error)
}

// Config configures a Server.
type Config struct {
	// HostKey is the gateway's host key.
	HostKey *cred.PrivateKey
	// Keys says who may log into which sliver.
	Keys Keys
	// Slivers runs the sessions.
	Slivers Execer
	// IdleTimeout closes a connection with no traffic (default 1 h).
	IdleTimeout time.Duration
	// Log receives logins (who, which slice, from where; never secrets).
	Log *slog.Logger
}

// Server is an SSH gateway into slivers.
type Server struct {
	cfg  Config
	ssh  *ssh.ServerConfig
	log  *slog.Logger
	wg   sync.WaitGroup
	done chan struct{}
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.HostKey == nil || cfg.Keys == nil || cfg.Slivers == nil {
		return nil, fmt.Errorf("ssh gateway: a host key, a key source and a sliver backend are required: %w", errdefs.ErrInvalid)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	signer, err := ssh.NewSignerFromSigner(cfg.HostKey.CryptoSigner())
	if err != nil {
		return nil, fmt.Errorf("ssh gateway: host key: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, done: make(chan struct{})}
	s.ssh = &ssh.ServerConfig{
		PublicKeyCallback: s.authorize,
		ServerVersion:     "SSH-2.0-plab",
		MaxAuthTries:      6,
	}
	s.ssh.AddHostKey(signer)
	return s, nil
}

// authorize accepts key for user (a slice name) when it is one of the
// sliver's keys now.
func (s *Server) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	lines, ok := s.cfg.Keys(meta.User())
	if !ok {
		return nil, errors.New("no such slice here")
	}
	want := key.Marshal()
	for _, l := range lines {
		pub, err := cred.ParseUserKey(l)
		if err != nil {
			continue
		}
		if string(pub.Marshal()) == string(want) {
			return &ssh.Permissions{Extensions: map[string]string{"fp": string(cred.FingerprintSSH(key))}}, nil
		}
	}
	return nil, errors.New("key not authorized for this slice")
}

// Serve accepts connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// Close stops accepting and waits for the sessions' goroutines.
func (s *Server) Close() {
	close(s.done)
	s.wg.Wait()
}

func (s *Server) handle(nc net.Conn) {
	defer nc.Close()
	ic := &idleConn{Conn: nc, timeout: s.cfg.IdleTimeout}
	ic.touch()
	conn, chans, reqs, err := ssh.NewServerConn(ic, s.ssh)
	if err != nil {
		s.log.Info("ssh login refused", "from", nc.RemoteAddr().String(), "err", err)
		return
	}
	defer conn.Close()
	slice := conn.User()
	s.log.Info("ssh login", "slice", slice, "key", conn.Permissions.Extensions["fp"], "from", nc.RemoteAddr().String())
	go ssh.DiscardRequests(reqs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.Prohibited, "only sessions are served")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ctx, slice, ch, creqs)
		}()
	}
	cancel()
	wg.Wait()
}

// idleConn closes itself after timeout without traffic.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) touch() { _ = c.Conn.SetDeadline(time.Now().Add(c.timeout)) }

func (c *idleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.touch()
	return n, err
}

func (c *idleConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.touch()
	return n, err
}
