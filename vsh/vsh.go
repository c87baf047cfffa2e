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
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Dialer connects to addr ("host:port") from inside the sliver of slice,
// refusing any address outside it (vnet.DialInside).
type Dialer func(ctx context.Context, slice, addr string) (net.Conn, error)

// Config configures a Server.
type Config struct {
	// HostKey is the gateway's host key.
	HostKey *cred.PrivateKey
	// Keys says who may log into which sliver.
	Keys Keys
	// Slivers runs the sessions.
	Slivers Execer
	// Dial serves local port forwarding (ssh -L); nil refuses it.
	Dial Dialer
	// Helper is the static program run inside slivers for file transfer
	// (scp, sftp): the plab binary, invoked with HelperArgs then
	// HelperMain's arguments. Nil leaves scp and sftp to the sliver's own
	// programs.
	Helper     *os.File
	HelperArgs []string
	// IdleTimeout closes a connection with no traffic (default 1 h).
	IdleTimeout time.Duration
	// LoginGrace is how long a client has to log in (default 30 s).
	LoginGrace time.Duration
	// MaxLogins bounds the connections one source address may have
	// logging in at once (default 128; sshd's MaxStartups, per source).
	MaxLogins int
	// MaxSessions is how many sessions a slice may have open on the node at
	// once (default 64).
	MaxSessions int
	// MaxAuthFailures is how many connections a source address may fail to
	// authenticate in a minute before it is refused for the rest of that
	// minute (default 20).
	MaxAuthFailures int
	// Now is the clock of the failed-login window (default time.Now).
	Now func() time.Time
	// Log receives logins (who, which slice, from where; never secrets).
	Log *slog.Logger
}

// Server is an SSH gateway into slivers.
type Server struct {
	cfg      Config
	ssh      *ssh.ServerConfig
	log      *slog.Logger
	wg       sync.WaitGroup
	done     chan struct{}
	failures *failures
	now      func() time.Time

	mu       sync.Mutex
	sessions counts // per slice: sessions open
	forwards counts // per slice: forwarded connections open or being dialed
	logins   counts // per source address: logins under way
	conns    map[net.Conn]struct{}
	closed   bool
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.HostKey == nil || cfg.Keys == nil || cfg.Slivers == nil {
		return nil, fmt.Errorf("ssh gateway: a host key, a key source and a sliver backend are required: %w", errdefs.ErrInvalid)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Hour
	}
	if cfg.LoginGrace == 0 {
		cfg.LoginGrace = 30 * time.Second
	}
	if cfg.MaxLogins == 0 {
		cfg.MaxLogins = 128
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 64
	}
	if cfg.MaxAuthFailures == 0 {
		cfg.MaxAuthFailures = 20
	}
	if cfg.IdleTimeout < 0 || cfg.LoginGrace < 0 || cfg.MaxLogins < 0 || cfg.MaxSessions < 0 || cfg.MaxAuthFailures < 0 {
		return nil, fmt.Errorf("ssh gateway: idle timeout, session and failure limits must not be negative: %w", errdefs.ErrInvalid)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	signer, err := ssh.NewSignerFromSigner(cfg.HostKey.CryptoSigner())
	if err != nil {
		return nil, fmt.Errorf("ssh gateway: host key: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, done: make(chan struct{}), conns: map[net.Conn]struct{}{}, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.failures = &failures{max: cfg.MaxAuthFailures, window: time.Minute, bySource: map[string]*failureCount{}}
	s.ssh = &ssh.ServerConfig{
		PublicKeyCallback: s.authorize,
		ServerVersion:     "SSH-2.0-plab",
		MaxAuthTries:      6,
	}
	// AES only: Go's AES-GCM and AES-CTR use the CPU's AES instructions,
	// its ChaCha20 does not on amd64 (about half the throughput), and
	// OpenSSH clients pick ChaCha20 first when it is offered.
	s.ssh.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"}
	s.ssh.AddHostKey(signer)
	return s, nil
}

// Login splits an SSH user name into the slice and the user inside its
// sliver: "slice" is the sliver's root, "user+slice" that user.
func Login(name string) (user, slice string) {
	if u, sl, ok := strings.Cut(name, "+"); ok {
		return u, sl
	}
	return "", name
}

// authorize accepts key for a login ("slice" or "user+slice") when it is one
// of the sliver's keys now.
func (s *Server) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	user, slice := Login(meta.User())
	// "+slice" is no other name for the sliver's root.
	if strings.Contains(meta.User(), "+") && !validUser(user) {
		return nil, errors.New("bad user name")
	}
	lines, ok := s.cfg.Keys(slice)
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

// validUser accepts the user names a sliver's /etc/passwd can hold.
func validUser(u string) bool {
	if u == "" || len(u) > 32 {
		return false
	}
	for i, c := range u {
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
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

// Close ends every connection (their processes are killed) and waits for
// them; Serve returns once its listener is closed.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) handle(nc net.Conn) {
	defer nc.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.conns[nc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	from := nc.RemoteAddr().String()
	source, _, _ := net.SplitHostPort(from)
	if !s.failures.allowed(source, s.now()) {
		s.log.Warn("ssh connection refused: too many failed logins from this address", "from", from)
		return
	}
	if !s.logins.take(source, s.cfg.MaxLogins) {
		s.log.Warn("ssh connection refused: too many logins under way from this address", "from", from)
		return
	}
	// The login must finish within LoginGrace, however slowly the client
	// trickles bytes; then the idle timeout applies.
	ic := &idleConn{Conn: nc}
	_ = nc.SetDeadline(time.Now().Add(s.cfg.LoginGrace))
	conn, chans, reqs, err := ssh.NewServerConn(ic, s.ssh)
	s.logins.give(source)
	if err != nil {
		s.failures.add(source, s.now())
		s.log.Info("ssh login refused", "from", from, "err", err)
		return
	}
	defer conn.Close()
	ic.timeout.Store(int64(s.cfg.IdleTimeout))
	ic.touch()
	user, slice := Login(conn.User())
	s.log.Info("ssh login", "slice", slice, "user", cmp.Or(user, "root"), "key", conn.Permissions.Extensions["fp"], "from", from)
	go s.globalRequests(slice, reqs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			if !s.sessions.take(slice, s.cfg.MaxSessions) {
				nch.Reject(ssh.ResourceShortage, fmt.Sprintf("slice %s has %d sessions open on this node, the most it may; close one and try again", slice, s.cfg.MaxSessions))
				continue
			}
			ch, creqs, err := nch.Accept()
			if err != nil {
				s.sessions.give(slice)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.sessions.give(slice)
				s.session(ctx, user, slice, ch, creqs)
			}()
		case "direct-tcpip":
			if !s.forwards.take(slice, maxForwards) {
				nch.Reject(ssh.ResourceShortage, fmt.Sprintf("slice %s has %d forwarded connections open on this node, the most it may; close some", slice, maxForwards))
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.forwards.give(slice)
				s.forward(ctx, slice, nch)
			}()
		default:
			nch.Reject(ssh.UnknownChannelType, "only sessions and local forwarding (-L) are served")
		}
	}
	cancel()
	wg.Wait()
}

// globalRequests refuses remote forwarding (-R) and whatever else a client
// asks of the connection.
func (s *Server) globalRequests(slice string, reqs <-chan *ssh.Request) {
	for req := range reqs {
		if req.Type == "tcpip-forward" || req.Type == "streamlocal-forward@openssh.com" {
			s.log.Info("ssh remote forwarding refused", "slice", slice)
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}

// forward serves one direct-tcpip channel (ssh -L): a connection to an
// address inside the sliver.
func (s *Server) forward(ctx context.Context, slice string, nch ssh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &p); err != nil || p.Port == 0 || p.Port > 65535 {
		nch.Reject(ssh.ConnectionFailed, "malformed forwarding request")
		return
	}
	if s.cfg.Dial == nil {
		nch.Reject(ssh.Prohibited, "port forwarding is not offered by this node")
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := s.cfg.Dial(dctx, slice, net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	cancel()
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	defer conn.Close()
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	// A sliver that stops reading must not hold the forward: its socket
	// closes with the login, and soon after the client closes the channel
	// (what the client sent has forwardDrain to get there).
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go func() {
		ssh.DiscardRequests(reqs) // until the channel is closed
		time.AfterFunc(forwardDrain, func() { conn.Close() })
	}()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(conn, ch)
	if tc, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// counts bounds how many of something each key holds at once: sessions
// per slice, logins under way per source address.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

// take takes one for key unless it holds max already.
func (c *counts) take(key string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[key] >= max {
		return false
	}
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[key]++
	return true
}

// give returns one of key's.
func (c *counts) give(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[key]--; c.m[key] <= 0 {
		delete(c.m, key)
	}
}

// failures counts, per source address, the connections that failed to
// log in during the current window.
type failures struct {
	max      int
	window   time.Duration
	mu       sync.Mutex
	bySource map[string]*failureCount
}

type failureCount struct {
	n     int
	since time.Time
}

// allowed says whether source may try to log in now.
func (f *failures) allowed(source string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.bySource[source]
	if c == nil {
		return true
	}
	if now.Sub(c.since) >= f.window {
		delete(f.bySource, source)
		return true
	}
	return c.n < f.max
}

// add counts a failed login from source.
func (f *failures) add(source string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.bySource[source]
	if c == nil || now.Sub(c.since) >= f.window {
		c = &failureCount{since: now}
		f.bySource[source] = c
		// Forget sources whose window is over, so the map stays small.
		if len(f.bySource) > 4096 {
			for k, v := range f.bySource {
				if now.Sub(v.since) >= f.window {
					delete(f.bySource, k)
				}
			}
		}
	}
	c.n++
}

// maxForwards bounds the forwarded connections (ssh -L) one slice may hold
// open on the node at once, across all its logins: each holds a socket of
// the node's daemon and, when the sliver does not read, up to an SSH window
// (2 MiB) of the daemon's memory.
const maxForwards = 64

// forwardDrain is how long what a client sent may take to reach the sliver
// after the client closed the channel.
const forwardDrain = 5 * time.Second

// idleConn closes itself after timeout without traffic, once timeout is
// set (0: the deadline already set stands).
type idleConn struct {
	net.Conn
	timeout atomic.Int64
}

func (c *idleConn) touch() {
	if t := c.timeout.Load(); t > 0 {
		_ = c.Conn.SetDeadline(time.Now().Add(time.Duration(t)))
	}
}

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
