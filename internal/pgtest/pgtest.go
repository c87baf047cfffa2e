// Package pgtest runs a throwaway PostgreSQL server for tests: initdb in a
// temporary directory, a postmaster listening only on a Unix socket in that
// directory, and a fresh database per test. It uses Debian's server packages
// (the newest /usr/lib/postgresql/*/bin) and never touches an installed or
// running service. As root, the server runs as the OS user postgres, since
// initdb and postgres refuse to run as root.
//
// A server's life:
//
//	             ┌─ Restart ─┐ (fast shutdown, then start)
//	             ▼           │
//	StartMain ─► running ────┴── Kill9 ──► killed
//	             ▲                           │
//	             └──────── Restart ──────────┘ (crash recovery)
//
//	running, killed ── Stop ──► stopped: no process, shared memory or directory left
//
// One server per test:
//
//	srv := pgtest.Start(t, pgtest.Options{})
//	dsn := srv.NewDatabase(t) // postgres://plab@/db1_testx?host=%2Ftmp%2Fpgtest-123&port=5432&sslmode=disable
//
// One server per test binary, shared by its tests:
//
//	var srv *pgtest.Server
//	var srvErr error
//
//	func TestMain(m *testing.M) {
//		srv, srvErr = pgtest.StartMain("", pgtest.Options{})
//		code := m.Run()
//		if srv != nil {
//			srv.Stop()
//		}
//		os.Exit(code)
//	}
//
// and in each test, testenv.Unmet(t, "%v", srvErr) when
// errors.Is(srvErr, pgtest.ErrNotInstalled), t.Fatal on any other error.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/internal/testenv"
	"golang.org/x/sys/unix"
)

const (
	superuser = "plab" // the database superuser initdb creates
	// port only names the socket file: the socket directory is private.
	port         = "5432"
	startTimeout = 2 * time.Minute // includes crash recovery after Kill9
	stopTimeout  = time.Minute
	poll         = 10 * time.Millisecond
)

// ErrNotInstalled reports that the PostgreSQL server binaries, or the OS
// user postgres that runs them under root, are missing.
var ErrNotInstalled = errors.New("postgresql server not installed; make test installs it (apt-get install postgresql)")

// Options tune a server. The zero value gives a durable server.
type Options struct {
	// NoFsync turns fsync off: faster, and a committed row still survives
	// Kill9 (the kernel's page cache outlives the server), but not a crash
	// of the machine.
	NoFsync bool
}

// Server is a PostgreSQL server in a temporary directory. NewDatabase and
// DSN may be called concurrently; the other methods may not.
type Server struct {
	dir  string // socket, log, data/; absolute, symlinks resolved
	bin  string // directory of the PostgreSQL programs
	opts Options
	cred *syscall.Credential // the postgres user when we are root, else nil

	cmd     *exec.Cmd     // the running postmaster, nil when none
	exited  chan struct{} // closed when cmd has exited
	stopped bool
	ndb     atomic.Int64
}

// Start starts a server for tb and stops it when tb ends. A missing
// installation skips tb (fails it in CI, see testenv.Unmet); on failure of
// tb, the end of the server log is logged.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := StartMain("", opts)
	if errors.Is(err, ErrNotInstalled) {
		testenv.Unmet(tb, "%v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("end of the postgres log:\n%s", s.logTail())
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// StartMain starts a server in a new directory under parent (os.TempDir()
// if empty), for use from TestMain; the caller must Stop it. As root, the OS
// user postgres must be able to reach parent (t.TempDir() is private to
// root). The error wraps ErrNotInstalled when PostgreSQL is missing.
func StartMain(parent string, opts Options) (*Server, error) {
	paths, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	bin := newestBin(paths)
	if bin == "" {
		return nil, fmt.Errorf("%w: no /usr/lib/postgresql/*/bin/postgres", ErrNotInstalled)
	}
	s := &Server{bin: bin, opts: opts}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: as root the server runs as OS user postgres: %v", ErrNotInstalled, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if parent == "" {
		parent = os.TempDir()
	}
	// The postgres processes' working directory identifies them (see pids),
	// so the path must be the one the kernel reports.
	parent, err := filepath.EvalSymlinks(parent)
	if err == nil {
		parent, err = filepath.Abs(parent)
	}
	if err == nil {
		s.dir, err = os.MkdirTemp(parent, "pgtest-")
	}
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := s.initdb(); err != nil {
		return nil, errors.Join(fmt.Errorf("start postgres: %w", err), s.Stop())
	}
	if err := s.start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start postgres: %w", err), s.Stop())
	}
	return s, nil
}

// newestBin returns the bin directory of the highest major version among
// paths of the form /usr/lib/postgresql/<version>/bin/postgres.
func newestBin(paths []string) string {
	best, bestV := "", -1
	for _, p := range paths {
		bin := filepath.Dir(p)
		major, _, _ := strings.Cut(filepath.Base(filepath.Dir(bin)), ".")
		if v, err := strconv.Atoi(major); err == nil && v > bestV {
			best, bestV = bin, v
		}
	}
	return best
}

func (s *Server) data() string    { return filepath.Join(s.dir, "data") }
func (s *Server) pidFile() string { return filepath.Join(s.data(), "postmaster.pid") }
func (s *Server) logFile() string { return filepath.Join(s.dir, "postgres.log") }

// command prepares a server program to run as the server's OS user, with a
// clean environment (no PG* variables) and a quit signal if we die.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + s.bin + ":/usr/bin:/bin", "LC_ALL=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

// initdb makes the data directory.
func (s *Server) initdb() error {
	if len(s.dir+"/.s.PGSQL."+port) > 107 {
		return fmt.Errorf("socket path in %s too long for a Unix socket", s.dir)
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	out, err := s.command(ctx, "initdb", "-D", s.data(), "--auth=trust", "--encoding=UTF8",
		"--locale=C.UTF-8", "--username="+superuser, "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb in %s (under root, the OS user postgres must be able to reach it): %w\n%s", s.dir, err, out)
	}
	return nil
}

// start runs the postmaster and waits until it accepts connections.
func (s *Server) start() error {
	if s.stopped {
		return errors.New("postgres server already stopped")
	}
	log, err := os.OpenFile(s.logFile(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fsync := "on"
	if s.opts.NoFsync {
		fsync = "off"
	}
	cmd := s.command(context.Background(), "postgres", "-D", s.data(), "-p", port,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+s.dir,
		"-c", "max_connections=100",
		"-c", "shared_buffers=16MB",
		// Dynamic shared memory in files under data/, not /dev/shm, so
		// that a killed server leaves nothing outside its directory.
		"-c", "dynamic_shared_memory_type=mmap",
		"-c", "fsync="+fsync)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	return s.waitReady()
}

// waitReady polls postmaster.pid, as pg_ctl does, until our postmaster
// says it is ready.
func (s *Server) waitReady() error {
	pid := strconv.Itoa(s.cmd.Process.Pid)
	deadline := time.After(startTimeout)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(s.pidFile()); err == nil {
			l := strings.Split(string(b), "\n")
			if len(l) > 7 && l[0] == pid && strings.TrimSpace(l[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("postgres exited while starting; end of its log:\n%s", s.logTail())
		case <-deadline:
			return fmt.Errorf("postgres not ready after %v; end of its log:\n%s", startTimeout, s.logTail())
		case <-tick.C:
		}
	}
}

// DSN returns a URL for libpq and pgx that connects to database dbname as
// the superuser plab over the server's socket.
func (s *Server) DSN(dbname string) string {
	q := url.Values{"host": {s.dir}, "port": {port}, "sslmode": {"disable"}}
	u := url.URL{Scheme: "postgres", User: url.User(superuser), Path: "/" + dbname, RawQuery: q.Encode()}
	return u.String()
}

// NewDatabase creates an empty database named after tb and returns its
// DSN. The database is dropped when tb ends, unless the server is stopped.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := []byte(fmt.Sprintf("db%d_%s", s.ndb.Add(1), strings.ToLower(tb.Name())))
	for i, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			name[i] = '_'
		}
	}
	db := string(name[:min(len(name), 63)])
	if err := s.psql("CREATE DATABASE " + db); err != nil {
		tb.Fatalf("new database: %v", err)
	}
	tb.Cleanup(func() {
		if s.stopped {
			return
		}
		if err := s.psql("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)"); err != nil {
			tb.Logf("drop database (best effort): %v", err)
		}
	})
	return s.DSN(db)
}

// psql runs sql in database postgres.
func (s *Server) psql(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-d", s.DSN("postgres"), "-c", sql)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("psql %q: %w\n%s", sql, err, out)
	}
	return nil
}

// Kill9 kills the postmaster and all its children with SIGKILL, as a crash
// would, and waits until they are gone. The data directory stays for
// Restart.
func (s *Server) Kill9() error {
	if s.cmd == nil {
		return errors.New("kill postgres: not running")
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	return s.reap(syscall.SIGKILL)
}

// Restart starts the server again on the same data directory, after a fast
// shutdown if it is running: after Kill9, PostgreSQL runs crash recovery.
func (s *Server) Restart() error {
	if err := s.shutdown(); err != nil {
		return err
	}
	return s.start()
}

// Stop shuts the server down (fast shutdown: open sessions are ended),
// waits until none of its processes remain, removes what a killed server
// leaves in shared memory, and removes its directory. Stop is idempotent.
func (s *Server) Stop() error {
	if s.stopped {
		return nil
	}
	err := errors.Join(s.shutdown(), s.removeShm())
	s.stopped = true
	return errors.Join(err, os.RemoveAll(s.dir))
}

// shutdown asks a running postmaster for a fast shutdown and waits for its
// processes to exit.
func (s *Server) shutdown() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
		s.cmd = nil
		return s.reap(syscall.SIGKILL)
	case <-time.After(stopTimeout):
		return errors.Join(fmt.Errorf("postgres did not shut down in %v; killed it", stopTimeout), s.Kill9())
	}
}

// reap waits until no process of the server remains, sending sig to those
// left after the postmaster has exited.
func (s *Server) reap(sig syscall.Signal) error {
	deadline := time.Now().Add(stopTimeout)
	for {
		pids := s.pids()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres processes %v outlive their postmaster", pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, sig)
		}
		time.Sleep(poll)
	}
}

// pids lists the live processes whose working directory is the data
// directory: the postmaster chdirs there, and its children keep it even
// when orphaned (their environment and command line are rewritten).
func (s *Server) pids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == s.data() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeShm removes the System V shared memory segment that a killed
// postmaster leaves behind, named in its postmaster.pid. A clean shutdown
// removes both.
func (s *Server) removeShm() error {
	b, err := os.ReadFile(s.pidFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	l := strings.Split(string(b), "\n")
	if len(l) < 7 {
		return nil // died before creating the segment
	}
	f := strings.Fields(l[6])
	if len(f) != 2 {
		return nil
	}
	key, err1 := strconv.ParseUint(f[0], 10, 32)
	id, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("postmaster.pid: bad shared memory line %q", l[6])
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil || uint32(ds.Perm.Key) != uint32(key) {
		return nil // already gone, or the id names someone else's segment now
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		return fmt.Errorf("remove shared memory %d: %w", id, err)
	}
	return nil
}

// logTail returns the end of the server log.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logFile())
	return string(b[max(0, len(b)-4000):])
}
