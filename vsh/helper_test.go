//go:build linux

package vsh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/internal/testenv"
)

// The file-transfer helper is tested with OpenSSH's own scp and sftp and
// no SSH server: both take -S PROGRAM to run instead of ssh, and the test
// binary is that program when fakeSSHEnv is set. It is given ssh's
// arguments (options, host, command or -s host sftp), runs in the "remote"
// directory, and serves the request with HelperMain, as the gateway does
// inside a sliver.
const (
	fakeSSHEnv    = "PLAB_VSH_FAKE_SSH"     // the remote home directory
	fakeSSHLogEnv = "PLAB_VSH_FAKE_SSH_LOG" // a file each request is logged to
	fakeSSHUmask  = 0o027                   // the remote user's umask
)

// init is the fake ssh (not TestMain, which vsh_test.go may want).
func init() {
	if home := os.Getenv(fakeSSHEnv); home != "" {
		os.Exit(fakeSSH(home, os.Getenv(fakeSSHLogEnv), os.Args[1:]))
	}
}

// sshOptsWithArg are ssh's options that take an argument (OpenSSH 9.2).
const sshOptsWithArg = "BbcDEeFIiJLlmOoPpQRSWw"

func fakeSSH(home, log string, args []string) int {
	subsystem := false
	i := 0
options:
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			if a[j] == 's' {
				subsystem = true
			}
			if strings.IndexByte(sshOptsWithArg, a[j]) >= 0 {
				if j == len(a)-1 {
					i++ // the argument is the next word
				}
				continue options
			}
		}
	}
	if i >= len(args)-1 {
		fmt.Fprintf(os.Stderr, "fake ssh: no host or command in %q\n", args)
		return 255
	}
	cmd := strings.Join(args[i+1:], " ") // as ssh joins them
	if subsystem {
		cmd = "subsystem " + cmd
	}
	if f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
		fmt.Fprintln(f, cmd)
		f.Close()
	}
	syscall.Umask(fakeSSHUmask)
	if err := os.Chdir(home); err != nil {
		fmt.Fprintln(os.Stderr, "fake ssh:", err)
		return 255
	}
	var hargs []string
	switch {
	case cmd == "subsystem sftp":
		hargs = []string{"sftp-server"}
	case subsystem:
		fmt.Fprintf(os.Stderr, "fake ssh: no subsystem %q\n", cmd)
		return 255
	default:
		var ok bool
		if hargs, ok = HelperCommand(cmd); !ok {
			fmt.Fprintf(os.Stderr, "fake ssh: HelperCommand refuses %q\n", cmd)
			return 127
		}
	}
	return HelperMain(hargs, os.Stdin, os.Stdout, os.Stderr)
}

// remote is a local directory and a "remote" one, reached by OpenSSH's
// clients through the fake ssh.
type remote struct {
	local, home, log string
}

func newRemote(t *testing.T) *remote {
	t.Helper()
	testenv.RequireBinaries(t, "scp", "sftp")
	dir := t.TempDir()
	r := &remote{local: filepath.Join(dir, "local"), home: filepath.Join(dir, "home"), log: filepath.Join(dir, "ssh.log")}
	for _, d := range []string{r.local, r.home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// run runs an OpenSSH client (scp or sftp) with the fake ssh, in the local
// directory; it returns the client's stderr.
func (r *remote) run(t *testing.T, client string, args ...string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, append([]string{"-S", exe}, args...)...)
	cmd.Dir = r.local
	cmd.Env = append(os.Environ(), fakeSSHEnv+"="+r.home, fakeSSHLogEnv+"="+r.log)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", client, args, err, stdout.String(), stderr.String())
	return stdout.String() + stderr.String(), err
}

// ok runs a client that must succeed.
func (r *remote) ok(t *testing.T, client string, args ...string) string {
	t.Helper()
	out, err := r.run(t, client, args...)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", client, args, err, out)
	}
	return out
}

// requests returns the requests the fake ssh got, and forgets them.
func (r *remote) requests(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(r.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(r.log)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// randomFile writes n random bytes to path and returns their SHA-256.
func randomFile(t *testing.T, path string, n int, mode os.FileMode) [32]byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

const bigFile = 10 << 20

func TestSCPLegacy(t *testing.T) {
	r := newRemote(t)
	sum := randomFile(t, filepath.Join(r.local, "big.bin"), bigFile, 0o666)

	r.ok(t, "scp", "-O", "big.bin", "h:up.bin")
	if got := fileSum(t, filepath.Join(r.home, "up.bin")); got != sum {
		t.Errorf("uploaded SHA-256 = %x, want %x", got, sum)
	}
	// Without -p, the mode sent less the remote umask.
	if got, want := fileMode(t, filepath.Join(r.home, "up.bin")), os.FileMode(0o666&^fakeSSHUmask); got != want {
		t.Errorf("uploaded mode = %v, want %v", got, want)
	}
	r.ok(t, "scp", "-O", "h:up.bin", "down.bin")
	if got := fileSum(t, filepath.Join(r.local, "down.bin")); got != sum {
		t.Errorf("downloaded SHA-256 = %x, want %x", got, sum)
	}

	// A remote path with a space, quoted for the remote shell; ~/.
	small := randomFile(t, filepath.Join(r.local, "small"), 1000, 0o600)
	r.ok(t, "scp", "-O", "small", "h:'a b'")
	r.ok(t, "scp", "-O", "small", "h:~/c")
	for _, name := range []string{"a b", "c"} {
		if got := fileSum(t, filepath.Join(r.home, name)); got != small {
			t.Errorf("%q: SHA-256 = %x, want %x", name, got, small)
		}
	}
	if diff := cmp.Diff([]string{"scp -t up.bin", "scp -f up.bin", "scp -t 'a b'", "scp -t ~/c"}, r.requests(t)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// Errors reach the client as scp's own do, and fail it.
	out, err := r.run(t, "scp", "-O", "h:missing", ".")
	if err == nil || !strings.Contains(out, "scp: missing: No such file or directory") {
		t.Errorf("scp -O h:missing: %v, %q; want an error naming the file", err, out)
	}
	// Two files to a target that is not a directory: the client sends -d.
	out, err = r.run(t, "scp", "-O", "small", "big.bin", "h:nodir")
	if err == nil || !strings.Contains(out, "scp: nodir: No such file or directory") {
		t.Errorf("scp -O small big.bin h:nodir: %v, %q; want an error naming the target", err, out)
	}
	if _, err := os.Lstat(filepath.Join(r.home, "nodir")); !os.IsNotExist(err) {
		t.Errorf("h:nodir exists after a refused copy (%v)", err)
	}
	// A file the remote user cannot write: the error, and the next file
	// still goes.
	if err := os.Mkdir(filepath.Join(r.home, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(r.home, "dir", "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err = r.run(t, "scp", "-O", "small", "big.bin", "h:dir")
	if err == nil || !strings.Contains(out, "dir/small: Is a directory") {
		t.Errorf("scp -O small big.bin h:dir: %v, %q; want an error about dir/small", err, out)
	}
	if got := fileSum(t, filepath.Join(r.home, "dir", "big.bin")); got != sum {
		t.Errorf("dir/big.bin after dir/small failed: SHA-256 = %x, want %x", got, sum)
	}
	r.requests(t)
}

// treeEntry is what a copy must keep of a file or directory.
type treeEntry struct {
	Mode  os.FileMode
	MTime int64 // zero when not compared
	Data  string
}

// snapshot reads the tree under dir.
func snapshot(t *testing.T, dir string, times bool) map[string]treeEntry {
	t.Helper()
	m := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{Mode: fi.Mode()}
		if times {
			e.MTime = fi.ModTime().Unix()
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Data = string(b)
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSCPRecursivePreserve(t *testing.T) {
	r := newRemote(t)
	tree := filepath.Join(r.local, "tree")
	files := []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"", os.ModeDir | 0o751, ""},
		{"a.txt", 0o666, "alpha\n"},
		{"sub", os.ModeDir | 0o705, ""},
		{"sub/run.sh", 0o755, "#!/bin/sh\necho hi\n"},
		{"sub/empty", 0o604, ""},
		{"sub/ro", os.ModeDir | 0o555, ""}, // filled although read-only
		{"sub/ro/f", 0o400, "read only"},
	}
	for _, f := range files {
		p := filepath.Join(tree, f.path)
		var err error
		if f.mode.IsDir() {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte(f.data), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Modes and times last, deepest first.
	for i := len(files) - 1; i >= 0; i-- {
		p := filepath.Join(tree, files[i].path)
		if err := os.Chmod(p, files[i].mode.Perm()); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1_500_000_000+int64(i)*86400, 0)
		if err := os.Chtimes(p, mt.Add(time.Hour), mt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { // t.TempDir's cleanup must be able to remove them
		filepath.WalkDir(filepath.Dir(r.local), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	want := snapshot(t, tree, true)

	r.ok(t, "scp", "-O", "-r", "-p", "tree", "h:")
	if diff := cmp.Diff(want, snapshot(t, filepath.Join(r.home, "tree"), true)); diff != "" {
		t.Errorf("uploaded with -r -p (-want +got):\n%s", diff)
	}
	r.ok(t, "scp", "-O", "-r", "-p", "h:tree", "back")
	if diff := cmp.Diff(want, snapshot(t, filepath.Join(r.local, "back"), true)); diff != "" {
		t.Errorf("downloaded with -r -p (-want +got):\n%s", diff)
	}

	// Without -p, modes less the remote umask, and the copy's own times.
	r.ok(t, "scp", "-O", "-r", "tree", "h:plain")
	masked := snapshot(t, tree, false)
	for k, e := range masked {
		e.Mode &^= fakeSSHUmask
		masked[k] = e
	}
	if diff := cmp.Diff(masked, snapshot(t, filepath.Join(r.home, "plain"), false)); diff != "" {
		t.Errorf("uploaded with -r (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"scp -r -p -t .", "scp -r -p -f tree", "scp -r -t plain"}, r.requests(t)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestSCPSFTPMode: OpenSSH 9's scp without -O speaks SFTP to the helper.
func TestSCPSFTPMode(t *testing.T) {
	r := newRemote(t)
	sum := randomFile(t, filepath.Join(r.local, "big.bin"), bigFile, 0o640)
	r.ok(t, "scp", "big.bin", "h:up.bin")
	if got := fileSum(t, filepath.Join(r.home, "up.bin")); got != sum {
		t.Errorf("uploaded SHA-256 = %x, want %x", got, sum)
	}
	r.ok(t, "scp", "h:up.bin", "down.bin")
	if got := fileSum(t, filepath.Join(r.local, "down.bin")); got != sum {
		t.Errorf("downloaded SHA-256 = %x, want %x", got, sum)
	}
	if diff := cmp.Diff([]string{"subsystem sftp", "subsystem sftp"}, r.requests(t)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestSFTPBatch(t *testing.T) {
	r := newRemote(t)
	sum := randomFile(t, filepath.Join(r.local, "f.bin"), 100_000, 0o644)
	if err := os.WriteFile(filepath.Join(r.home, "gone"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(batch, []byte(`mkdir d
put f.bin d/x.bin
ls -1 d
get d/x.bin back.bin
rename d/x.bin d/y.bin
ls -1 d
rm gone
mkdir e
rmdir e
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := r.ok(t, "sftp", "-b", batch, "h")
	if !strings.Contains(out, "d/x.bin\n") || !strings.Contains(out, "d/y.bin\n") {
		t.Errorf("sftp ls output lacks d/x.bin then d/y.bin:\n%s", out)
	}
	if got := fileSum(t, filepath.Join(r.home, "d", "y.bin")); got != sum {
		t.Errorf("put: SHA-256 = %x, want %x", got, sum)
	}
	if got := fileSum(t, filepath.Join(r.local, "back.bin")); got != sum {
		t.Errorf("get: SHA-256 = %x, want %x", got, sum)
	}
	ents, err := os.ReadDir(r.home)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"d"}, names); diff != "" {
		t.Errorf("remote home after rm and rmdir (-want +got):\n%s", diff)
	}
	// A failing command fails the batch.
	if err := os.WriteFile(batch, []byte("get nothere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := r.run(t, "sftp", "-b", batch, "h"); err == nil || !strings.Contains(out, "nothere") {
		t.Errorf("sftp get nothere: %v, %q; want a failure naming the file", err, out)
	}
}

// TestSCPSinkRefusesNames speaks the protocol to the sink directly: a name
// that is not a single path element ends the transfer with scp's error and
// writes nothing.
func TestSCPSinkRefusesNames(t *testing.T) {
	for _, tc := range []struct {
		name, stream, reply string
		recursive           bool
		made                string // what may be made in the target, relative to it
	}{
		{name: "dotdot-path", stream: "C0644 3 ../x\nabc\x00", reply: "\x00\x01scp: error: unexpected filename: ../x\n"},
		{name: "dotdot", stream: "C0644 3 ..\nabc\x00", reply: "\x00\x01scp: error: unexpected filename: ..\n"},
		{name: "dot", stream: "C0644 3 .\nabc\x00", reply: "\x00\x01scp: error: unexpected filename: .\n"},
		{name: "absolute", stream: "C0644 3 /tmp/x\nabc\x00", reply: "\x00\x01scp: error: unexpected filename: /tmp/x\n"},
		{name: "empty", stream: "C0644 3 \nabc\x00", reply: "\x00\x01scp: error: unexpected filename: \n"},
		{name: "dir-dotdot", stream: "D0755 0 ..\nC0644 3 x\nabc\x00E\n", reply: "\x00\x01scp: error: unexpected filename: ..\n", recursive: true},
		{name: "nested", stream: "D0755 0 d\nC0644 3 ../../x\nabc\x00E\n", reply: "\x00\x00\x01scp: error: unexpected filename: ../../x\n", recursive: true, made: "d"},
		{name: "dir-without-r", stream: "D0755 0 d\nE\n", reply: "\x00\x01scp: protocol error: received directory without -r\n"},
		{name: "bad-mode", stream: "C0x44 3 x\nabc\x00", reply: "\x00\x01scp: protocol error: bad mode\n"},
		{name: "cut-in-directory", stream: "D0755 0 d\n", reply: "\x00\x00", recursive: true, made: "d"},
		{name: "not-scp", stream: "sh: scp: not found\n", reply: "\x00\x01scp: sh: scp: not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dst := filepath.Join(root, "a", "b")
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			args := []string{"scp", "-t", dst}
			if tc.recursive {
				args = []string{"scp", "-r", "-t", dst}
			}
			var out, errOut bytes.Buffer
			code := HelperMain(args, strings.NewReader(tc.stream), &out, &errOut)
			if code != 1 || out.String() != tc.reply {
				t.Errorf("HelperMain(%q) with %q = %d, replied %q; want 1, %q", args, tc.stream, code, out.String(), tc.reply)
			}
			var written []string
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if rel, _ := filepath.Rel(dst, p); p != root && p != filepath.Dir(dst) && p != dst && rel != tc.made {
					written = append(written, p)
				}
				return nil
			})
			if len(written) != 0 {
				t.Errorf("written: %q", written)
			}
		})
	}

	// The same harness accepts a good file, so the refusals above mean
	// something.
	dst := t.TempDir()
	var out bytes.Buffer
	code := HelperMain([]string{"scp", "-p", "-t", dst}, strings.NewReader("T1500000000 0 1500000001 0\nC0604 3 ok\nabc\x00"), &out, &out)
	if code != 0 || out.String() != "\x00\x00\x00\x00" {
		t.Errorf("a good file: exit %d, replied %q; want 0 and four \\0", code, out.String())
	}
	fi, err := os.Stat(filepath.Join(dst, "ok"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "ok")); string(b) != "abc" || fi.Mode() != 0o604 || fi.ModTime().Unix() != 1500000000 {
		t.Errorf("ok = %q, %v, %v; want abc, -rw----r--, mtime 1500000000", b, fi.Mode(), fi.ModTime().Unix())
	}
}

func TestHelperCommand(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want []string // nil: not the helper's
	}{
		{"scp -t -- /tmp/x", []string{"scp", "-t", "--", "/tmp/x"}},
		{"scp -r -f dir", []string{"scp", "-r", "-f", "dir"}},
		{"scp -p -d -t .", []string{"scp", "-p", "-d", "-t", "."}},
		{"scp -v -r -p -d -t -- -x", []string{"scp", "-v", "-r", "-p", "-d", "-t", "--", "-x"}},
		{"scp -rpt dir", []string{"scp", "-rpt", "dir"}},
		{"scp -t 'a b'", []string{"scp", "-t", "a b"}},
		{`scp -t "a b"`, []string{"scp", "-t", "a b"}},
		{`scp -t a\ b`, []string{"scp", "-t", "a b"}},
		{`scp -t 'it'\''s'`, []string{"scp", "-t", "it's"}},
		{`scp -t "\$HOME \"q\" \\ \a"`, []string{"scp", "-t", `$HOME "q" \ \a`}},
		{"scp -t ''", []string{"scp", "-t", ""}},
		{"scp -t '*;$(x)'", []string{"scp", "-t", "*;$(x)"}},
		{"scp  -f\ta  b ", []string{"scp", "-f", "a", "b"}},
		{"scp -t ~", []string{"scp", "-t", "."}},
		{"scp -t ~/x", []string{"scp", "-t", "./x"}},
		{"scp -f a~ b~c", []string{"scp", "-f", "a~", "b~c"}},
		{"scp -t '~'", []string{"scp", "-t", "~"}},
		{"scp -t héllo,x:y@z+%=1", []string{"scp", "-t", "héllo,x:y@z+%=1"}},
		{"scp -t", []string{"scp", "-t"}}, // the helper reports it to the client

		{"scp -t ~root/x", nil},
		{"scp -t a=~/x", nil},
		{"scp -t x:~/x", nil},
		{"scp -t $HOME", nil},
		{`scp -t "$HOME"`, nil},
		{"scp -t `id`", nil},
		{`scp -t "x`, nil},
		{"scp -t 'x", nil},
		{`scp -t x\`, nil},
		{"scp -t x; rm -rf /", nil},
		{"scp -t x && y", nil},
		{"scp -t x | y", nil},
		{"scp -t x > y", nil},
		{"scp -t x < y", nil},
		{"scp -f *.txt", nil},
		{"scp -f a?", nil},
		{"scp -f [ab]", nil},
		{"scp -f {a,b}", nil},
		{"scp -f (a)", nil},
		{"scp -f a #b", nil},
		{"scp -f a!b", nil},
		{"scp -t x\ny", nil},
		{"scp -t 'x\ny'", nil},
		{"scp -t x\x00", nil},
		{"scp", nil},
		{"scp x", nil},
		{"scp -t -f x", nil},
		{"scp -O -t x", nil},
		{"scp -tZ x", nil},
		{"/usr/bin/scp -t x", nil},
		{"FOO=1 scp -t x", nil},
		{"'scp' -t x", []string{"scp", "-t", "x"}}, // the shell would run scp too
		{"ls -l", nil},
		{"", nil},
		{"sftp-server", nil},
	} {
		got, ok := HelperCommand(tc.cmd)
		if ok != (tc.want != nil) || !cmp.Equal(got, tc.want) {
			t.Errorf("HelperCommand(%q) = %q, %v; want %q, %v", tc.cmd, got, ok, tc.want, tc.want != nil)
		}
	}
}

// FuzzHelperCommand: whatever HelperCommand accepts is an scp the helper
// takes, and the words it found come back the same when single-quoted.
func FuzzHelperCommand(f *testing.F) {
	for _, s := range []string{"scp -t -- /tmp/x", "scp -r -f 'a b' c\\ d", `scp -t "x\"y"`, "scp -t ~/x", "scp -t a~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		args, ok := HelperCommand(cmd)
		if !ok {
			return
		}
		if args[0] != "scp" {
			t.Fatalf("HelperCommand(%q) = %q", cmd, args)
		}
		if _, err := parseSCPArgs(args[1:]); err != nil {
			t.Fatalf("HelperCommand(%q) = %q, which scp refuses: %v", cmd, args, err)
		}
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		again, ok := HelperCommand(strings.Join(quoted, " "))
		if !ok || !cmp.Equal(again, args) {
			t.Fatalf("HelperCommand(%q) = %q, but quoted back %q, %v", cmd, args, again, ok)
		}
	})
}
