package vsh

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The legacy SCP protocol (RCP's), as the remote end speaks it: OpenSSH's
// scp.c run as `scp -t` (sink) or `scp -f` (source). Each record is one
// line, answered by one byte: 0 (ok), 1 followed by a message line (an
// error; the transfer goes on) or 2 and a message (fatal).
//
//	client (source)            sink (scp -t DIR)
//	                       ◀── \0
//	T<mtime> 0 <atime> 0\n ──▶                  (-p)
//	                       ◀── \0
//	C0644 <size> <name>\n  ──▶
//	                       ◀── \0               (or \1scp: <why>\n)
//	<size bytes> \0        ──▶
//	                       ◀── \0
//	D0755 0 <name>\n ... E\n                    (-r: a directory, its entries, its end)
//
// The source (scp -f) plays the left column after reading the client's
// first \0.

// scpOpts are a remote scp's options.
type scpOpts struct {
	to, from  bool // -t (sink), -f (source)
	recursive bool // -r
	preserve  bool // -p: times (T records) and modes as sent
	targetDir bool // -d: the target must be a directory
	paths     []string
}

// parseSCPArgs parses a remote scp's arguments the way scp.c's getopt does:
// grouped flags, "--" or the first operand ends the options. -v and -q are
// accepted and ignored: the remote end prints nothing but records.
func parseSCPArgs(args []string) (scpOpts, error) {
	var o scpOpts
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, c := range a[1:] {
			switch c {
			case 't':
				o.to = true
			case 'f':
				o.from = true
			case 'r':
				o.recursive = true
			case 'p':
				o.preserve = true
			case 'd':
				o.targetDir = true
			case 'v', 'q':
			default:
				return o, fmt.Errorf("unknown option -%c", c)
			}
		}
	}
	if o.to == o.from {
		return o, errors.New("need exactly one of -t (receive) and -f (send)")
	}
	o.paths = args[i:]
	return o, nil
}

// errSCPExit ends a transfer where scp.c exits: a fatal protocol error, a
// lost connection, a fatal error from the peer. What the peer should see
// has been sent already.
var errSCPExit = errors.New("scp: transfer ended")

var errSCPRecordTooLong = errors.New("record too long")

// maxSCPRecord bounds a record line (scp.c's buffer is 2048 bytes).
const maxSCPRecord = 2048

// scpConn is one remote scp's side of a transfer.
type scpConn struct {
	in    *bufio.Reader
	out   io.Writer
	opts  scpOpts
	umask uint32
	errs  int    // errors so far: the exit status is 1 if any
	noted string // the first error of a file's data, sent when it ends (scp.c's note_err)
	buf   []byte
}

func scpMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseSCPArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "vsh-helper scp: %v\nusage: vsh-helper scp [-dpqrv] [--] -t target | -f file...\n", err)
		return 1
	}
	s := &scpConn{in: bufio.NewReaderSize(stdin, 64<<10), out: stdout, opts: o,
		umask: currentUmask(), buf: make([]byte, 64<<10)}
	if o.from {
		// The client's sink speaks first (its ready \0).
		if _, err = s.response(); err == nil {
			err = s.source(o.paths)
		}
	} else if len(o.paths) != 1 {
		_ = s.runErr("ambiguous target")
	} else {
		err = s.sink(o.paths[0], true)
	}
	if err != nil || s.errs > 0 {
		return 1
	}
	return 0
}

// ack sends the ok byte.
func (s *scpConn) ack() error {
	_, err := s.out.Write([]byte{0})
	return err
}

// runErr counts an error and sends it to the peer as a warning record, as
// scp.c's run_err does. Its error is the connection's.
func (s *scpConn) runErr(format string, args ...any) error {
	s.errs++
	_, err := fmt.Fprintf(s.out, "\x01scp: "+format+"\n", args...)
	return err
}

// note remembers the first error while a file's data still flows; the
// peer hears of it at the file's end.
func (s *scpConn) note(format string, args ...any) {
	if s.noted == "" {
		s.noted = fmt.Sprintf(format, args...)
	}
}

// screwup reports a protocol error and ends the transfer.
func (s *scpConn) screwup(why string) error {
	_ = s.runErr("protocol error: %s", why)
	return errSCPExit
}

// readLine reads the rest of a record after its first byte, without the
// newline.
func (s *scpConn) readLine() (string, error) {
	var b strings.Builder
	for b.Len() < maxSCPRecord {
		c, err := s.in.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return b.String(), nil
		}
		b.WriteByte(c)
	}
	return "", errSCPRecordTooLong
}

// response reads the peer's answer to a record: ok is false for a warning
// (counted); err ends the transfer (a fatal answer or a lost connection).
func (s *scpConn) response() (ok bool, err error) {
	c, err := s.in.ReadByte()
	if err != nil {
		return false, errSCPExit
	}
	if c == 0 {
		return true, nil
	}
	if _, err := s.readLine(); err != nil {
		return false, errSCPExit
	}
	s.errs++
	if c == 1 {
		return false, nil
	}
	return false, errSCPExit
}

// source sends files and, with -r, directories (scp.c's source).
func (s *scpConn) source(names []string) error {
	for _, name := range names {
		if err := s.sourceOne(name); err != nil {
			return err
		}
	}
	return nil
}

func (s *scpConn) sourceOne(name string) error {
	for len(name) > 1 && name[len(name)-1] == '/' {
		name = name[:len(name)-1]
	}
	// Non-blocking so that a FIFO is refused rather than waited on.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return s.runErr("%s: %s", name, errText(err))
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil { // Fd also makes it blocking
		return s.runErr("%s: %s", name, errText(err))
	}
	last := name[strings.LastIndexByte(name, '/')+1:]
	if strings.ContainsRune(last, '\n') {
		// scp.c sends it vis(3)-encoded; a name the peer cannot store as
		// sent is better refused.
		return s.runErr("%s: name contains a newline", strconv.Quote(name))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		if s.opts.recursive {
			return s.sourceDir(name, last, &st)
		}
		fallthrough
	default:
		return s.runErr("%s: not a regular file", name)
	}
	if s.opts.preserve {
		if ok, err := s.sendTimes(&st); !ok || err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(s.out, "C%04o %d %s\n", st.Mode&0o6777, st.Size, last); err != nil {
		return err
	}
	if ok, err := s.response(); !ok || err != nil {
		return err
	}
	// Send exactly the size announced: after a read error, zeros, to stay
	// in step, then the error instead of the final \0.
	var readErr error
	for left := st.Size; left > 0; {
		b := s.buf[:min(int64(len(s.buf)), left)]
		if readErr == nil {
			if n, err := io.ReadFull(f, b); err != nil {
				readErr = err
				clear(b[n:])
			}
		} else {
			clear(b)
		}
		if _, err := s.out.Write(b); err != nil {
			return err
		}
		left -= int64(len(b))
	}
	if readErr == nil {
		err = s.ack()
	} else {
		err = s.runErr("%s: %s", name, errText(readErr))
	}
	if err != nil {
		return err
	}
	_, err = s.response()
	return err
}

// sourceDir sends a directory: D, its entries, E (scp.c's rsource).
func (s *scpConn) sourceDir(name, last string, st *unix.Stat_t) error {
	entries, err := os.ReadDir(name)
	if err != nil {
		return s.runErr("%s: %s", name, errText(err))
	}
	if s.opts.preserve {
		if ok, err := s.sendTimes(st); !ok || err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(s.out, "D%04o 0 %s\n", st.Mode&0o6777, last); err != nil {
		return err
	}
	if ok, err := s.response(); !ok || err != nil {
		return err
	}
	dir := strings.TrimSuffix(name, "/") + "/"
	for _, e := range entries {
		if err := s.sourceOne(dir + e.Name()); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(s.out, "E\n"); err != nil {
		return err
	}
	_, err = s.response()
	return err
}

// sendTimes sends a T record (scp.c's do_times).
func (s *scpConn) sendTimes(st *unix.Stat_t) (bool, error) {
	if _, err := fmt.Fprintf(s.out, "T%d 0 %d 0\n", max(st.Mtim.Sec, 0), max(st.Atim.Sec, 0)); err != nil {
		return false, err
	}
	return s.response()
}

// sink receives into targ: a directory, or with a single file its name
// (scp.c's sink). top is false for the directories it descends into.
func (s *scpConn) sink(targ string, top bool) error {
	if top && s.opts.targetDir {
		if err := verifyDir(targ); err != nil {
			_ = s.runErr("%s: %s", targ, errText(err))
			return errSCPExit
		}
	}
	if err := s.ack(); err != nil {
		return err
	}
	targIsDir := verifyDir(targ) == nil
	var setTimes bool
	var atime, mtime time.Time
	for first := true; ; first = false {
		c, err := s.in.ReadByte()
		if err != nil && top {
			return nil // the peer is done
		} else if err != nil {
			return errSCPExit // gone inside a directory (scp.c would exit 0)
		}
		if c == '\n' {
			return s.screwup("unexpected <newline>")
		}
		rest, err := s.readLine()
		if errors.Is(err, errSCPRecordTooLong) {
			return s.screwup(err.Error())
		} else if err != nil {
			return s.screwup("lost connection")
		}
		switch c {
		case 1, 2: // the peer's error, for a remote end to count, not print
			s.errs++
			if c == 2 {
				return errSCPExit
			}
			continue
		case 'E':
			return s.ack()
		case 'T':
			if mtime, atime, err = parseSCPTimes(rest); err != nil {
				return s.screwup(err.Error())
			}
			setTimes = true
			if err := s.ack(); err != nil {
				return err
			}
			continue
		case 'C', 'D':
		default:
			if first {
				// Something that is not scp speaking, e.g. a shell's
				// complaint: pass it on.
				_ = s.runErr("%s", string(c)+rest)
				return errSCPExit
			}
			return s.screwup("expected control record")
		}
		mode, size, name, err := parseSCPRecord(rest)
		if err != nil {
			return s.screwup(err.Error())
		}
		if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			_ = s.runErr("error: unexpected filename: %s", name)
			return errSCPExit
		}
		if !s.opts.preserve {
			mode &^= s.umask
		}
		np := targ
		if targIsDir {
			np = strings.TrimSuffix(targ, "/") + "/" + name
		}
		var times *[2]time.Time // atime, mtime
		if setTimes {
			times = &[2]time.Time{atime, mtime}
		}
		setTimes = false
		if c == 'D' && !s.opts.recursive {
			return s.screwup("received directory without -r")
		}
		var st unix.Stat_t
		exists := unix.Stat(np, &st) == nil
		if c == 'D' {
			err = s.sinkDir(np, mode, times, exists, &st)
		} else {
			err = s.sinkFile(np, mode, size, times, exists, &st)
		}
		if err != nil {
			return err
		}
	}
}

// sinkDir receives a directory into np. Its mode and times are set after
// its entries, so that a read-only directory can be filled.
func (s *scpConn) sinkDir(np string, mode uint32, times *[2]time.Time, exists bool, st *unix.Stat_t) error {
	setMode := s.opts.preserve
	if exists {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return s.runErr("%s: %s", np, errText(unix.ENOTDIR))
		}
	} else {
		setMode = true
		if err := unix.Mkdir(np, mode|0o700); err != nil {
			return s.runErr("%s: %s", np, errText(err))
		}
	}
	if err := s.sink(np, false); err != nil {
		return err
	}
	if times != nil {
		_ = os.Chtimes(np, times[0], times[1])
	}
	if setMode {
		_ = unix.Chmod(np, mode)
	}
	return nil
}

// sinkFile receives a file into np, up to and including the final answer
// for it. Errors while the data flows are noted and sent at the end: the
// data must be read to stay in step.
func (s *scpConn) sinkFile(np string, mode uint32, size int64, times *[2]time.Time, exists bool, st *unix.Stat_t) error {
	fd, err := unix.Open(np, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, mode|unix.S_IWUSR)
	if err != nil {
		// The source skips the data of a file refused here.
		return s.runErr("%s: %s", np, errText(err))
	}
	f := os.NewFile(uintptr(fd), np)
	defer f.Close()
	if err := s.ack(); err != nil {
		return err
	}
	wrErr := false
	for left := size; left > 0; {
		b := s.buf[:min(int64(len(s.buf)), left)]
		if _, err := io.ReadFull(s.in, b); err != nil {
			_ = s.runErr("lost connection")
			return errSCPExit
		}
		if !wrErr {
			if _, err := f.Write(b); err != nil {
				s.note("%s: %s", np, errText(err))
				wrErr = true
			}
		}
		left -= int64(len(b))
	}
	if !wrErr && (!exists || st.Mode&unix.S_IFMT == unix.S_IFREG) {
		if err := f.Truncate(size); err != nil {
			s.note("%s: truncate: %s", np, errText(err))
		}
	}
	// With -p the mode is exactly the one sent, whatever the umask; without,
	// a new file drops the write bit it was opened with if the mode sent
	// had none; an existing file keeps its mode.
	if s.opts.preserve || (!exists && mode&unix.S_IWUSR == 0) {
		if err := unix.Fchmod(fd, mode); err != nil {
			s.note("%s: set mode: %s", np, errText(err))
		}
	}
	if err := f.Close(); err != nil {
		s.note("%s: close: %s", np, errText(err))
	}
	if _, err := s.response(); err != nil {
		return err
	}
	if times != nil && !wrErr {
		if err := os.Chtimes(np, times[0], times[1]); err != nil {
			s.note("%s: set times: %s", np, errText(err))
		}
	}
	if s.noted != "" {
		err, s.noted = s.runErr("%s", s.noted), ""
		return err
	}
	return s.ack()
}

// parseSCPRecord parses the rest of a C or D record: "%04o %d name".
func parseSCPRecord(r string) (mode uint32, size int64, name string, err error) {
	if len(r) < 4 {
		return 0, 0, "", errors.New("bad mode")
	}
	for _, c := range r[:4] {
		if c < '0' || c > '7' {
			return 0, 0, "", errors.New("bad mode")
		}
		mode = mode<<3 | uint32(c-'0')
	}
	r, ok := strings.CutPrefix(r[4:], " ")
	if !ok {
		return 0, 0, "", errors.New("mode not delimited")
	}
	sz, name, ok := strings.Cut(r, " ")
	if !ok || !isDigits(sz) {
		return 0, 0, "", errors.New("size not delimited")
	}
	if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
		return 0, 0, "", errors.New("size out of range")
	}
	return mode, size, name, nil
}

// parseSCPTimes parses the rest of a T record: "mtime 0 atime 0", seconds
// and microseconds.
func parseSCPTimes(r string) (mtime, atime time.Time, err error) {
	f := strings.Split(r, " ")
	if len(f) != 4 {
		return mtime, atime, errors.New("bad time record")
	}
	var v [4]int64
	for i, s := range f {
		if !isDigits(s) {
			return mtime, atime, errors.New("bad time record")
		}
		if v[i], err = strconv.ParseInt(s, 10, 64); err != nil || (i%2 == 1 && v[i] > 999999) {
			return mtime, atime, errors.New("time out of range")
		}
	}
	return time.Unix(v[0], v[1]*1000), time.Unix(v[2], v[3]*1000), nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// verifyDir says whether path is a directory, with the reason it is not.
func verifyDir(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.ENOTDIR
	}
	return nil
}

// errText says what went wrong the way strerror(3) does ("No such file or
// directory"), which is what scp users see from OpenSSH's own scp.
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "file shrank while being sent"
	}
	return err.Error()
}

// currentUmask returns the process's umask without changing it: Linux
// shows it in /proc/self/status; elsewhere it is set and put back.
func currentUmask() uint32 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return uint32(m)
				}
			}
		}
	}
	m := unix.Umask(0)
	unix.Umask(m)
	return uint32(m)
}
