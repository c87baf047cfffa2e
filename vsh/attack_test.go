//go:build linux

package vsh

// Attacks on the gateway, each written so that it fails if the attack
// works: logins that must be refused, the helper's descriptors seen from
// inside the sliver, paths that try to leave the sliver, forwarding to the
// host, requests the gateway must not serve, limits, environment and
// scp look-alike commands. The real OpenSSH client is used where it can
// make the request; golang.org/x/crypto/ssh where only the protocol can.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
)

// signerOf reads the private key keyFile wrote.
func signerOf(t testing.TB, path string) ssh.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialGo logs into the gateway as user with golang.org/x/crypto/ssh.
func (g *gateway) dialGo(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	return ssh.Dial("tcp", g.addr, &ssh.ClientConfig{User: user, Auth: auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

// client logs in as user with the key at path, or fails the test.
func (g *gateway) client(t testing.TB, user, path string) *ssh.Client {
	t.Helper()
	c, err := g.dialGo(user, ssh.PublicKeys(signerOf(t, path)))
	if err != nil {
		t.Fatalf("log in as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runGo runs cmd in a session of c with stdin, and returns its stdout,
// stderr and exit status (-1: no status).
func runGo(c *ssh.Client, cmd, stdin string) (string, string, int, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", "", -1, err
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = strings.NewReader(stdin), &out, &errb
	err = s.Run(cmd)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitStatus(), nil
	}
	if err != nil {
		return out.String(), errb.String(), -1, err
	}
	return out.String(), errb.String(), 0, nil
}

// logBuffer collects the gateway's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// forgedSigner claims a public key it does not hold: it signs with other,
// or with garbage when other is nil, or refuses to sign (a bare public-key
// query) when refuse is set.
type forgedSigner struct {
	pub    ssh.PublicKey
	other  ssh.Signer
	refuse bool
}

func (f forgedSigner) PublicKey() ssh.PublicKey { return f.pub }

func (f forgedSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	switch {
	case f.refuse:
		return nil, errors.New("no private key")
	case f.other != nil:
		return f.other.Sign(r, data)
	}
	blob := make([]byte, 64)
	rand.Read(blob)
	return &ssh.Signature{Format: f.pub.Type(), Blob: blob}, nil
}

// TestAttackAuth: only a key of the slice logs into it, only as a user
// name the sliver can hold, only by public key with a valid signature;
// the key logged is the one that signed.
func TestAttackAuth(t *testing.T) {
	logs := &logBuffer{}
	g := newGatewayWith(t, gatewayOpts{config: func(c *Config, _ *oci.Backend) {
		c.MaxAuthFailures = 1000 // the attacks below fail many times
		c.Log = slog.New(slog.NewTextHandler(logs, nil))
	}})
	keyA, pubA := keyFile(t)
	keyB, pubB := keyFile(t)
	keyC, pubC := keyFile(t)
	g.setKeys("site_a", pubA, pubC)
	g.setKeys("site_b", pubB)
	sigA, sigB, sigC := signerOf(t, keyA), signerOf(t, keyB), signerOf(t, keyC)

	// The OpenSSH client: another slice's key, a slice not on this node.
	for _, tc := range []struct{ name, key, user string }{
		{"A's key into site_b", keyA, "site_b"},
		{"A's key as a user of site_b", keyA, "user+site_b"},
		{"A's key as site_b's root by name", keyA, "root+site_b"},
		{"a slice not on this node", keyA, "site_none"},
		{"password and keyboard-interactive only", keyA, "site_a"},
	} {
		args := g.sshOpts(tc.key, "-p")
		if strings.HasPrefix(tc.name, "password") {
			args = append(args, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive")
		}
		host, _, _ := net.SplitHostPort(g.addr)
		out, errOut, code := g.run(t, "ssh", append(args, tc.user+"@"+host, "echo in")...)
		if code != 255 || out != "" || !strings.Contains(errOut, "Permission denied (publickey)") {
			t.Errorf("%s: ssh %s = %q %q %d; want refused, publickey the only method offered", tc.name, tc.user, out, errOut, code)
		}
	}

	// The names that are allowed land where they say, and nowhere else.
	for _, tc := range []struct{ user, want string }{
		{"site_a", "0 site_a\n"}, {"root+site_a", "0 site_a\n"}, {"user+site_a", "1000 site_a\n"},
	} {
		out, _, code, err := runGo(g.client(t, tc.user, keyA), "echo $(id -u) $(hostname)", "")
		if err != nil || code != 0 || out != tc.want {
			t.Errorf("login %s = %q %d %v; want %q", tc.user, out, code, err, tc.want)
		}
	}
	mark := len(logs.String())

	// Hostile user names with a key that is good for site_a.
	for _, user := range []string{
		"../x+site_a", "root:0+site_a", "user:0+site_a", "0+site_a", "1000+site_a", "user/../root+site_a",
		"-oProxyCommand=x+site_a", "user\x00+site_a", "user\n+site_a", "us er+site_a", "USER+site_a",
		strings.Repeat("a", 33) + "+site_a", strings.Repeat("a", 4096) + "+site_a", strings.Repeat("a", 4096),
		"a+b+site_a", "user+site_a+", "+site_a", "user+", "+", "", "site_a+", "site_a\x00", "site_a/../site_b", "site_a ",
	} {
		c, err := g.dialGo(user, ssh.PublicKeys(sigA))
		if err == nil {
			out, _, _, _ := runGo(c, "id -u; hostname", "")
			c.Close()
			t.Errorf("login %q with site_a's key succeeded (%q); want refused", user, out)
		}
	}

	// Methods other than public key are not offered, however asked.
	asked := false
	for name, m := range map[string]ssh.AuthMethod{
		"none":                 nil,
		"password":             ssh.Password(""),
		"password root":        ssh.Password("root"),
		"keyboard-interactive": ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { asked = true; return nil, nil }),
	} {
		var auth []ssh.AuthMethod
		if m != nil {
			auth = append(auth, m)
		}
		if c, err := g.dialGo("site_a", auth...); err == nil {
			c.Close()
			t.Errorf("%s authentication logged in; want refused", name)
		}
	}
	if asked {
		t.Error("the gateway asked keyboard-interactive questions")
	}

	// Knowing an authorized public key is not enough: a query with no
	// signature, a garbage signature, or another key's signature.
	for _, tc := range []struct {
		name, user string
		s          ssh.Signer
	}{
		{"query only", "site_a", forgedSigner{pub: sigA.PublicKey(), refuse: true}},
		{"garbage signature", "site_a", forgedSigner{pub: sigA.PublicKey()}},
		{"B's signature as A's", "site_a", forgedSigner{pub: sigA.PublicKey(), other: sigB}},
		{"B's signature as C's", "site_a", forgedSigner{pub: sigC.PublicKey(), other: sigB}},
		{"A's signature as B's", "site_b", forgedSigner{pub: sigB.PublicKey(), other: sigA}},
		{"C's key", "site_b", sigC},
	} {
		if c, err := g.dialGo(tc.user, ssh.PublicKeys(tc.s)); err == nil {
			c.Close()
			t.Errorf("%s into %s logged in; want refused", tc.name, tc.user)
		}
	}
	if l := logs.String()[mark:]; strings.Contains(l, "msg=\"ssh login\"") {
		t.Errorf("a refused attempt was logged as a login:\n%s", l)
	}

	// Querying C (authorized, not held: OpenSSH with only C's public half
	// asks whether C would do, then cannot sign) and then signing with A
	// logs A in, and the log names A, not C (CVE-2024-45337's misuse).
	pubOnly := filepath.Join(t.TempDir(), "id_c")
	rawC, err := os.ReadFile(keyC)
	if err != nil {
		t.Fatal(err)
	}
	privC, err := ssh.ParseRawPrivateKey(rawC)
	if err != nil {
		t.Fatal(err)
	}
	locked, err := ssh.MarshalPrivateKeyWithPassphrase(privC, "", []byte("not given"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(pubOnly, pem.EncodeToMemory(locked), 0o600)
	if err := os.WriteFile(pubOnly+".pub", []byte(pubC+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(g.addr)
	out, errOut, code := g.run(t, "ssh", append(append([]string{"-v"}, g.sshOpts(pubOnly, "-p")...), "-i", keyA, "site_a@"+host, "id -u")...)
	if code != 0 || out != "0\n" || !strings.Contains(errOut, "Server accepts key: "+pubOnly) {
		t.Fatalf("C's public half, then A: %q %q %d; want C accepted, then A logged in", out, errOut, code)
	}
	fpA, fpC := string(cred.FingerprintSSH(sigA.PublicKey())), string(cred.FingerprintSSH(sigC.PublicKey()))
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=\"ssh login\"") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], fpA) || strings.Contains(strings.Join(lines, "\n"), fpC) {
		t.Errorf("logins logged %q; want the last to name A's key %s and none C's %s", lines, fpA, fpC)
	}
	// The gateway still serves after all this.
	if out, _, code := g.ssh(t, keyB, "site_b", "hostname"); code != 0 || out != "site_b\n" {
		t.Errorf("site_b after the attacks = %q %d", out, code)
	}
}

// procStatus reads /proc/pid/status on the host.
func procStatus(t testing.TB, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// sliverInit returns the host PID of slice's init and the host UID its
// root is.
func (g *gateway) sliverInit(t testing.TB, slice string) (pid int, rootUID uint64) {
	t.Helper()
	info, err := g.b.State(context.Background(), slice)
	if err != nil || info.Pid == 0 {
		t.Fatalf("state of %s: %+v %v", slice, info, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", info.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 || f[0] != "0" {
		t.Fatalf("uid_map of %s: %q", slice, b)
	}
	rootUID, err = strconv.ParseUint(f[1], 10, 32)
	if err != nil || rootUID == 0 {
		t.Fatalf("uid_map of %s: %q", slice, b)
	}
	return info.Pid, rootUID
}

// findHelper waits for a helper (exe the host file at path) that runs in
// slice's sliver and is not in seen, and returns its PID on the host and
// inside the sliver.
func (g *gateway) findHelper(t testing.TB, slice, path string, seen map[int]bool) (host, inside int) {
	t.Helper()
	initPid, _ := g.sliverInit(t, slice)
	pidNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", initPid))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || seen[pid] {
				continue
			}
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
			if exe != path || ns != pidNS {
				continue
			}
			f := strings.Fields(procStatus(t, pid)["NSpid"])
			if len(f) != 2 {
				continue
			}
			if in, err := strconv.Atoi(f[1]); err == nil {
				return pid, in
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no helper running in %s", slice)
	return 0, 0
}

// openSFTP starts the SFTP subsystem on c, served by the helper.
func openSFTP(t testing.TB, c *ssh.Client) *sftp.Client {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := s.StdinPipe()
	r, _ := s.StdoutPipe()
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}
	fc, err := sftp.NewClientPipe(r, w)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	t.Cleanup(func() { fc.Close(); s.Close() })
	return fc
}

// fileID is a file's identity and what an attacker would change.
type fileID struct {
	dev, ino, size uint64
	mode, uid      uint32
	mtime          int64
	sum            string
}

func identify(t testing.TB, path string) fileID {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mode: st.Mode, uid: st.Uid,
		mtime: st.Mtim.Nano(), sum: fmt.Sprintf("%x", sha256.Sum256(b))}
}

// inspectHelper lists, from inside the sliver as login, what the helper
// (inside PID pid) holds, and tries to write the host file behind it.
// What it prints is checked by checkHelperView.
const inspectHelper = `P=%d
echo "exe|$(readlink /proc/$P/exe)"
echo "cwd|$(readlink /proc/$P/cwd)"
echo "root|$(readlink /proc/$P/root)"
for f in /proc/$P/fd/*; do
	l=$(readlink $f)
	echo "fd ${f##*/}|$l|$(stat -L -c %%d:%%i $f 2>/dev/null)|$(stat -L -c %%d:%%i "$l" 2>/dev/null)"
done
for T in /proc/$P/exe /proc/$P/fd/3; do
	(echo x >> $T) 2>/dev/null && echo "WROTE append $T"
	(dd if=/dev/zero of=$T bs=1 count=1 conv=notrunc) 2>/dev/null && echo "WROTE dd $T"
	chmod 4777 $T 2>/dev/null && echo "WROTE chmod $T"
	chown 0:0 $T 2>/dev/null && echo "WROTE chown $T"
	truncate -s 0 $T 2>/dev/null && echo "WROTE truncate $T"
	touch $T 2>/dev/null && echo "WROTE touch $T"
	ln $T $HOME/hardlink 2>/dev/null && echo "WROTE link $T"
	mv $T $HOME/moved 2>/dev/null && echo "WROTE rename $T"
done
head -c 4 /proc/$P/fd/3 | od -An -c | tr -d ' \n'; echo
true`

// checkHelperView checks inspectHelper's output: the helper runs from
// the host file path (fd 3, read-only, not otherwise visible in the
// sliver) and every other descriptor is a pipe, an anonymous inode or a
// socket, or a file that is the sliver's own at the path it shows.
func checkHelperView(t *testing.T, out, path, home string) {
	t.Helper()
	var fds []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "|")
		switch {
		case strings.HasPrefix(l, "WROTE"):
			t.Errorf("the sliver changed the host's helper: %s", l)
		case f[0] == "exe" && f[1] != path, f[0] == "root" && f[1] != "/", f[0] == "cwd" && f[1] != home:
			t.Errorf("helper %s = %q", f[0], f[1])
		case strings.HasPrefix(f[0], "fd "):
			if len(f) != 4 {
				t.Errorf("helper descriptor line %q", l)
				continue
			}
			fds = append(fds, strings.TrimPrefix(f[0], "fd "))
			n, target, id, inSliver := strings.TrimPrefix(f[0], "fd "), f[1], f[2], f[3]
			switch {
			case n == "3":
				if target != path || inSliver != "" {
					t.Errorf("helper fd 3 = %q (%q inside the sliver); want the host's helper %s, which the sliver cannot see otherwise", target, inSliver, path)
				}
			case n == "0" || n == "1" || n == "2":
				if !strings.HasPrefix(target, "pipe:") && target != "/dev/null" {
					t.Errorf("helper fd %s = %q; want a pipe", n, target)
				}
			case strings.HasPrefix(target, "pipe:") || strings.HasPrefix(target, "anon_inode:") || strings.HasPrefix(target, "socket:"):
			case target == path || id == "" || id != inSliver:
				t.Errorf("helper fd %s = %q (%s), which is not the sliver's own %q (%s): a host file leaked into the sliver", n, target, id, target, inSliver)
			}
		case len(f) == 1 && f[0] != "":
			if f[0] != `177ELF` {
				t.Errorf("reading the helper through fd 3 gave %q", f[0])
			}
		}
	}
	if len(fds) < 4 || fds[0] != "0" || fds[3] != "3" {
		t.Errorf("helper descriptors seen from the sliver: %q; want 0 1 2 3 at least (is /proc readable?)\n%s", fds, out)
	}
}

// TestAttackHelper: the descriptor of the host's plab binary that runs
// scp and sftp in a sliver gives the sliver nothing but a read-only view
// of that binary; the helper runs as the session's user in the sliver's
// namespaces; no path it is given leaves the sliver; commands that look
// like scp but are more go to the sliver's shell.
func TestAttackHelper(t *testing.T) {
	testenv.RequireBinaries(t, "scp", "sftp", "go")
	helper := helperBinary(t)
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}, config: func(c *Config, _ *oci.Backend) {
		c.Helper, c.HelperArgs = helper, []string{"plab", "vsh-helper"}
	}})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	host, _, _ := net.SplitHostPort(g.addr)
	initPid, rootUID := g.sliverInit(t, "site_a")
	before := identify(t, helper.Name())
	seen := map[int]bool{}

	t.Run("descriptor", func(t *testing.T) {
		for _, login := range []struct{ user, home string }{{"site_a", "/root"}, {"user+site_a", "/home/user"}} {
			fc := openSFTP(t, g.client(t, login.user, key))
			if _, err := fc.Getwd(); err != nil {
				t.Fatal(err)
			}
			hpid, ipid := g.findHelper(t, "site_a", helper.Name(), seen)
			seen[hpid] = true
			// On the host: the sliver's namespaces, the session's user, no
			// privilege beyond it.
			for _, ns := range []string{"mnt", "pid", "net", "user", "ipc", "uts", "cgroup"} {
				a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", hpid, ns))
				b, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", initPid, ns))
				if a == "" || a != b {
					t.Errorf("%s's helper %s namespace %q, the sliver's %q", login.user, ns, a, b)
				}
			}
			st := procStatus(t, hpid)
			uid := rootUID
			if login.user != "site_a" {
				uid += 1000
			}
			if want := strings.Repeat(fmt.Sprint(uid)+"\t", 3) + fmt.Sprint(uid); st["Uid"] != want || st["Gid"] != want {
				t.Errorf("%s's helper runs as host uid %q gid %q; want %d (the sliver's %s)", login.user, st["Uid"], st["Gid"], uid, login.user)
			}
			if st["NoNewPrivs"] != "1" || (login.user != "site_a" && (st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000")) {
				t.Errorf("%s's helper: NoNewPrivs %s, CapEff %s, CapPrm %s", login.user, st["NoNewPrivs"], st["CapEff"], st["CapPrm"])
			}
			if caps, _ := strconv.ParseUint(st["CapEff"], 16, 64); caps&(1<<21) != 0 { // CAP_SYS_ADMIN
				t.Errorf("%s's helper holds CAP_SYS_ADMIN", login.user)
			}
			// From inside, as the same user (the sliver's root cannot look
			// into another user's process: it lacks CAP_SYS_PTRACE).
			out, errOut, code := g.ssh(t, key, login.user, fmt.Sprintf(inspectHelper, ipid))
			if code != 0 {
				t.Fatalf("inspect the helper as %s: %q %d", login.user, errOut, code)
			}
			checkHelperView(t, out, helper.Name(), login.home)
			if login.user != "site_a" {
				out, _, _ := g.ssh(t, key, "site_a", fmt.Sprintf("readlink /proc/%d/fd/3 || echo denied", ipid))
				if out != "denied\n" {
					t.Errorf("the sliver's root read %s's helper descriptors: %q", login.user, out)
				}
			}
		}
		// Nothing changed on the host, and the next helper runs the same file.
		if after := identify(t, helper.Name()); after != before {
			t.Errorf("the host's helper changed: %+v, was %+v", after, before)
		}
		fc := openSFTP(t, g.client(t, "site_a", key))
		if _, err := fc.Getwd(); err != nil {
			t.Fatal(err)
		}
		hpid, _ := g.findHelper(t, "site_a", helper.Name(), seen)
		seen[hpid] = true
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", hpid), &st); err != nil || st.Dev != before.dev || st.Ino != before.ino {
			t.Errorf("the next helper runs %d:%d (%v); want the host's %d:%d", st.Dev, st.Ino, err, before.dev, before.ino)
		}
	})

	t.Run("paths", func(t *testing.T) {
		// A readable file on the host, in a directory the sliver could name.
		hostDir := t.TempDir()
		for d := hostDir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		secret := make([]byte, 16)
		rand.Read(secret)
		marker := filepath.Join(hostDir, "marker")
		if err := os.WriteFile(marker, []byte(hex.EncodeToString(secret)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := g.ssh(t, key, "site_a", "ln -s / /root/hostroot && ln -s /proc/1/root /root/p1 && ln -s ../../../../../../.. /root/up"); code != 0 {
			t.Fatal(errOut)
		}
		tries := []string{
			marker, "/proc/1/root" + marker, "/proc/self/root" + marker, "/proc/1/cwd/../../../.." + marker,
			"/proc/self/cwd/../../../../../.." + marker, "../../../../../../../.." + marker, "/root/hostroot" + marker,
			"/root/p1" + marker, "/root/up" + marker, "/root/p1/proc/1/root" + marker, "/proc/self/fd/3/.." + marker,
			"/proc/self/fd/3/../.." + marker,
		}
		fc := openSFTP(t, g.client(t, "site_a", key))
		for _, p := range tries {
			if f, err := fc.Open(p); err == nil {
				b, _ := io.ReadAll(f)
				f.Close()
				t.Errorf("sftp open %s read %q; want no such file", p, b)
			}
			if _, err := fc.Stat(p); err == nil {
				t.Errorf("sftp stat %s succeeded; want no such file", p)
			}
		}
		if ents, err := fc.ReadDir(hostDir); err == nil {
			t.Errorf("sftp listed the host's %s: %d entries", hostDir, len(ents))
		}
		if err := fc.Link(marker, "/root/hardlink"); err == nil {
			t.Error("sftp hard-linked the host's marker")
		}
		if err := fc.Symlink("/proc/1/root/..", "/root/s"); err != nil {
			t.Fatal(err)
		}
		if _, err := fc.Stat("/root/s" + marker); err == nil {
			t.Error("a symlink made over sftp reached the host")
		}
		// Uploads to the host's path land in the sliver, as its root.
		if err := fc.MkdirAll(hostDir); err != nil {
			t.Fatal(err)
		}
		w, err := fc.Create(hostDir + "/planted-sftp")
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("planted"))
		w.Close()

		// The OpenSSH tools, the same paths.
		local := t.TempDir()
		up := filepath.Join(local, "up")
		os.WriteFile(up, []byte("planted"), 0o644)
		var batch strings.Builder
		for i, p := range tries {
			fmt.Fprintf(&batch, "-get \"%s\" %s/sftp%d\n", p, local, i)
		}
		fmt.Fprintf(&batch, "put %s %s/planted-openssh\n", up, hostDir)
		os.WriteFile(filepath.Join(local, "batch"), []byte(batch.String()), 0o644)
		if _, errOut, code := g.run(t, "sftp", append(g.sshOpts(key, "-P"), "-b", filepath.Join(local, "batch"), "site_a@"+host)...); code != 0 {
			t.Errorf("sftp -b: %q %d", errOut, code)
		}
		for i, p := range tries[:4] {
			for _, mode := range []string{"-O", "-s"} {
				dst := filepath.Join(local, fmt.Sprintf("scp%s%d", mode, i))
				if _, _, code := g.run(t, "scp", append(append([]string{mode}, g.sshOpts(key, "-P")...), "site_a@"+host+":"+p, dst)...); code == 0 {
					t.Errorf("scp %s site_a:%s succeeded; want no such file", mode, p)
				}
			}
		}
		for _, mode := range []string{"-O", "-s"} {
			if _, errOut, code := g.run(t, "scp", append(append([]string{mode}, g.sshOpts(key, "-P")...), up, "site_a@"+host+":"+hostDir+"/planted-scp"+mode)...); code != 0 {
				t.Errorf("scp %s upload: %q %d", mode, errOut, code)
			}
		}
		ents, _ := os.ReadDir(local)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(local, e.Name()))
			if bytes.Contains(b, []byte(hex.EncodeToString(secret))) {
				t.Errorf("%s holds the host's marker", e.Name())
			}
		}
		// On the host: the marker alone; in the sliver: the uploads, its
		// root's files (host uid rootUID), as its root sees them.
		if ents, _ := os.ReadDir(hostDir); len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("the host's %s holds %q; want the marker alone", hostDir, names)
		}
		for _, name := range []string{"planted-sftp", "planted-openssh", "planted-scp-O", "planted-scp-s"} {
			var st syscall.Stat_t
			p := fmt.Sprintf("/proc/%d/root%s/%s", initPid, hostDir, name)
			if err := syscall.Stat(p, &st); err != nil || uint64(st.Uid) != rootUID || uint64(st.Gid) != rootUID {
				t.Errorf("%s in the sliver: host uid %d gid %d (%v); want %d, the sliver's root", name, st.Uid, st.Gid, err, rootUID)
			}
		}
		out, _, _ := g.ssh(t, key, "site_a", "cd "+hostDir+" && stat -c '%n %u:%g' planted-*")
		if want := "planted-openssh 0:0\nplanted-scp-O 0:0\nplanted-scp-s 0:0\nplanted-sftp 0:0\n"; out != want {
			t.Errorf("uploads seen in the sliver:\n%s\nwant\n%s", out, want)
		}
		// The one host file the sliver reads: the helper, through its fd 3.
		if f, err := fc.Open("/proc/self/fd/3"); err == nil {
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			if fmt.Sprintf("%x", h.Sum(nil)) != before.sum {
				t.Error("/proc/self/fd/3 in the helper is not the helper")
			}
		}
	})

	t.Run("user", func(t *testing.T) {
		// The helper runs as the session's user: a user's scp and sftp
		// cannot write the root's files.
		local := filepath.Join(t.TempDir(), "f")
		os.WriteFile(local, []byte("x"), 0o644)
		for _, mode := range []string{"-O", "-s"} {
			if _, errOut, code := g.run(t, "scp", append(append([]string{mode}, g.sshOpts(key, "-P")...), local, "user+site_a@"+host+":/root/owned"+mode)...); code == 0 || !strings.Contains(errOut, "Permission denied") {
				t.Errorf("scp %s as user into /root = %q %d; want Permission denied", mode, errOut, code)
			}
			if _, errOut, code := g.run(t, "scp", append(append([]string{mode}, g.sshOpts(key, "-P")...), local, "user+site_a@"+host+":/home/user/up"+mode)...); code != 0 {
				t.Errorf("scp %s as user into its home = %q %d", mode, errOut, code)
			}
		}
		fc := openSFTP(t, g.client(t, "user+site_a", key))
		if _, err := fc.Create("/root/owned-sftp"); err == nil {
			t.Error("sftp as user created /root/owned-sftp")
		}
		if _, err := fc.ReadDir("/root"); err == nil {
			t.Error("sftp as user listed /root (mode 0700)")
		}
		out, _, _ := g.ssh(t, key, "site_a", "ls /root | grep -c owned; stat -c '%n %u:%g' /home/user/up-*")
		if out != "0\n/home/user/up-O 1000:1000\n/home/user/up-s 1000:1000\n" {
			t.Errorf("after the user's uploads, the sliver shows %q; want nothing in /root, its uploads its own", out)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/root/home/user/up-O", initPid), &st); err != nil || uint64(st.Uid) != rootUID+1000 {
			t.Errorf("the user's upload on the host: uid %d (%v); want %d", st.Uid, err, rootUID+1000)
		}
	})

	t.Run("exec", func(t *testing.T) {
		// Lines that start like scp but do more are not the helper's: the
		// sliver's shell runs them, inside the sliver.
		tag := randomTag()
		for i, cmd := range []string{
			"scp -t /tmp/x; touch /tmp/pwned-%s-%d",
			"scp -t /tmp/x || touch /tmp/pwned-%s-%d",
			"scp -t \"$(touch /tmp/pwned-%s-%d)\"",
			"scp -t `touch /tmp/pwned-%s-%d`",
			"scp -t /tmp/x > /tmp/pwned-%s-%d",
			"scp -f /etc/hostname | touch /tmp/pwned-%s-%d",
			"scp -t /tmp/x\ntouch /tmp/pwned-%s-%d",
		} {
			line := fmt.Sprintf(cmd, tag, i)
			if args, ok := HelperCommand(line); ok {
				t.Errorf("HelperCommand(%q) = %q; want it left to the shell", line, args)
			}
			out, errOut, code, err := runGo(g.client(t, "site_a", key), line, "")
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("/tmp/pwned-%s-%d", tag, i)
			if _, err := os.Stat(name); err == nil {
				os.Remove(name)
				t.Errorf("%q made %s on the host", line, name)
			}
			if in, _, _ := g.ssh(t, key, "site_a", "test -e "+name+" && echo inside"); in != "inside\n" {
				t.Errorf("%q = %q %q %d: the sliver's shell did not run it", line, out, errOut, code)
			}
		}
		// The helper's own scp: nothing of the host, either way.
		c := g.client(t, "user+site_a", key)
		out, _, code, _ := runGo(c, "scp -t /root", "C0644 3 f\nabc\x00")
		if code == 0 || !strings.Contains(out, "Permission denied") {
			t.Errorf("the helper's scp -t /root as user = %q %d; want Permission denied", out, code)
		}
		out, _, code, _ = runGo(g.client(t, "site_a", key), "scp -f /proc/1/root"+helper.Name()+" /proc/self/root/../../.."+helper.Name()+" "+helper.Name(), "\x00")
		if code == 0 || strings.Contains(out, "C0") {
			t.Errorf("the helper's scp -f of host paths = %q %d; want errors only", out, code)
		}
	})
}

// randomTag names files no other run makes.
func randomTag() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// forwardTo opens a direct-tcpip channel (ssh -L) to host:port as given,
// unresolved.
func forwardTo(c *ssh.Client, host string, port uint32) (ssh.Channel, error) {
	ch, reqs, err := c.OpenChannel("direct-tcpip", ssh.Marshal(struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}{host, port, "127.0.0.1", 40000}))
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

// counter counts the connections a host listener accepts.
type counter struct {
	ln   net.Listener
	hits atomic.Int32
}

func listenCounting(t testing.TB, network, addr string) *counter {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.hits.Add(1)
			conn.Write([]byte("HOST\n"))
			conn.Close()
		}
	}()
	return c
}

// sliverLink gives slice's sliver an eth0 routed to the host as vnet does
// (default via 169.254.0.1, the host veth's MAC a permanent neighbour), so
// that the host's own addresses are reachable from inside the sliver and
// only the gateway's checks stand between -L and them. It returns the
// sliver's address.
func (g *gateway) sliverLink(t *testing.T, slice string) netip.Addr {
	t.Helper()
	testenv.RequireBinaries(t, "ip", "nsenter")
	pid, _ := g.sliverInit(t, slice)
	hostIf := fmt.Sprintf("vsha%d", os.Getpid()%100000)
	addr := netip.AddrFrom4([4]byte{100, 127, byte(os.Getpid() >> 8), byte(os.Getpid())})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pid))
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	mac, err := os.ReadFile("/sys/class/net/" + hostIf + "/address")
	if err != nil {
		t.Fatal(err)
	}
	in := []string{"nsenter", "-t", strconv.Itoa(pid), "-n", "ip"}
	run(append(in, "addr", "add", addr.String()+"/32", "dev", "eth0")...)
	run(append(in, "link", "set", "eth0", "up")...)
	run(append(in, "route", "add", "169.254.0.1/32", "dev", "eth0", "scope", "link")...)
	run(append(in, "neigh", "add", "169.254.0.1", "lladdr", strings.TrimSpace(string(mac)), "dev", "eth0", "nud", "permanent")...)
	run(append(in, "route", "add", "default", "via", "169.254.0.1", "dev", "eth0")...)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "route", "add", addr.String()+"/32", "dev", hostIf, "scope", "link")
	return addr
}

// hostAddress returns an address of the host that is not loopback.
func hostAddress() (netip.Addr, bool) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			if ip.Is4() && ip.IsGlobalUnicast() && !ip.IsLoopback() && !netip.MustParsePrefix("100.64.0.0/10").Contains(ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// httpVia fetches / through a forwarded channel.
func httpVia(ch ssh.Channel) string {
	defer ch.Close()
	io.WriteString(ch, "GET / HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(io.LimitReader(ch, 1<<16))
	return string(b)
}

// TestAttackForwarding: -L reaches the sliver's own loopback and
// addresses, never the host's (loopback, its address, the sliver's
// gateway, names); unix sockets, -R, agent and X11 forwarding are refused.
func TestAttackForwarding(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}, config: func(c *Config, b *oci.Backend) { c.Dial = withDial(b) }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	own := g.sliverLink(t, "site_a")
	if _, errOut, code := g.ssh(t, key, "site_a", fmt.Sprintf("mkdir -p /www && echo SLIVER > /www/index.html && httpd -p 127.0.0.1:8080 -h /www && httpd -p [::1]:8081 -h /www && httpd -p %s:8082 -h /www", own)); code != 0 {
		t.Fatalf("httpd in the sliver: %q", errOut)
	}
	// The host listens on every address, at a port the sliver leaves free.
	hostAll := listenCounting(t, "tcp", "[::]:0")
	port := uint32(hostAll.ln.Addr().(*net.TCPAddr).Port)
	sock := filepath.Join(t.TempDir(), "host.sock")
	hostSock := listenCounting(t, "unix", sock)
	hostIP, haveHostIP := hostAddress()
	if haveHostIP {
		// The path is there: the sliver itself reaches the host's address.
		out, _, _ := g.ssh(t, key, "site_a", fmt.Sprintf("nc -w 3 %s %d </dev/null", hostIP, port))
		if out != "HOST\n" {
			t.Logf("the sliver cannot reach the host's %s here (%q): the refusal below is checked, not needed", hostIP, out)
		}
		hostAll.hits.Store(0)
	}
	c := g.client(t, "site_a", key)

	// What the sliver serves is reached.
	for _, h := range []struct {
		host string
		port uint32
	}{{"127.0.0.1", 8080}, {"localhost", 8080}, {"::1", 8081}, {"::ffff:127.0.0.1", 8080}, {own.String(), 8082}} {
		ch, err := forwardTo(c, h.host, h.port)
		if err != nil {
			t.Errorf("-L %s:%d: %v; want the sliver's httpd", h.host, h.port, err)
			continue
		}
		if body := httpVia(ch); !strings.Contains(body, "SLIVER") {
			t.Errorf("-L %s:%d read %q; want the sliver's page", h.host, h.port, body)
		}
	}
	// Nothing else: the host's port is free in the sliver, so every one of
	// these must fail to open.
	hostname, _ := os.Hostname()
	targets := []string{"127.0.0.1", "127.0.0.2", "localhost", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", "169.254.0.1",
		"169.254.169.254", "192.0.2.1", "198.18.0.1", own.String(), "[::1]", "127.0.0.1:22", "127.1", "0x7f000001", "2130706433",
		"LOCALHOST", "localhost.", "ip6-localhost", "localhost4", hostname, "fe80::1%lo", "::1%lo", ""}
	if haveHostIP {
		targets = append(targets, hostIP.String(), "::ffff:"+hostIP.String())
	}
	for _, h := range targets {
		if ch, err := forwardTo(c, h, port); err == nil {
			b, _ := io.ReadAll(io.LimitReader(ch, 64))
			ch.Close()
			t.Errorf("-L %q:%d opened (read %q); want refused", h, port, b)
		}
	}
	// Unix sockets (-L to a socket path): not a channel the gateway serves.
	for _, p := range []string{sock, "/proc/1/root" + sock, "/run/plab/node.sock"} {
		ch, _, err := c.OpenChannel("direct-streamlocal@openssh.com", ssh.Marshal(struct {
			Path      string
			Reserved0 string
			Reserved1 uint32
		}{p, "", 0}))
		var oce *ssh.OpenChannelError
		if err == nil {
			ch.Close()
			t.Errorf("direct-streamlocal to %s opened", p)
		} else if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType {
			t.Errorf("direct-streamlocal to %s: %v; want unknown channel type", p, err)
		}
	}
	// The same with the OpenSSH client.
	host, _, _ := net.SplitHostPort(g.addr)
	lTargets := []string{"127.0.0.1:%d", "[::1]:%d", "169.254.0.1:%d"}
	if haveHostIP {
		lTargets = append(lTargets, hostIP.String()+":%d")
	}
	args := append(g.sshOpts(key, "-p"), "-N", "-o", "ExitOnForwardFailure=yes")
	var locals []string
	for _, tgt := range lTargets {
		lp := freePort(t)
		locals = append(locals, lp)
		args = append(args, "-L", lp+":"+fmt.Sprintf(tgt, port))
	}
	sockPort := freePort(t)
	okPort := freePort(t)
	args = append(args, "-L", sockPort+":"+sock, "-L", okPort+":localhost:8080", "site_a@"+host)
	fwd := exec.Command("ssh", args...)
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fwd.Process.Kill(); fwd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", "127.0.0.1:"+okPort)
		if err == nil {
			io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
			b, _ := io.ReadAll(conn)
			conn.Close()
			if !strings.Contains(string(b), "SLIVER") {
				t.Errorf("ssh -L to localhost:8080 read %q; want the sliver's page", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh -L never listened: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, lp := range append(locals, sockPort) {
		conn, err := net.Dial("tcp", "127.0.0.1:"+lp)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn)
		conn.Close()
		if len(b) != 0 {
			t.Errorf("ssh -L %s read %q; want refused", lp, b)
		}
	}
	if n, m := hostAll.hits.Load(), hostSock.hits.Load(); n != 0 || m != 0 {
		t.Errorf("forwarding reached the host: %d connections to its port, %d to its socket", n, m)
	}

	// -R, TCP and unix: refused, nothing listens on the host.
	rport := freePort(t)
	if ln, err := c.Listen("tcp", "127.0.0.1:"+rport); err == nil {
		ln.Close()
		t.Error("tcpip-forward (-R) accepted")
	}
	if conn, err := net.Dial("tcp", "127.0.0.1:"+rport); err == nil {
		conn.Close()
		t.Errorf("-R made the host listen on %s", rport)
	}
	rsock := filepath.Join(t.TempDir(), "r.sock")
	if ln, err := c.ListenUnix(rsock); err == nil {
		ln.Close()
		t.Error("streamlocal-forward (-R to a socket) accepted")
	}
	if _, err := os.Stat(rsock); err == nil {
		t.Errorf("-R made %s on the host", rsock)
	}
	for _, a := range []string{"0:127.0.0.1:8080", rsock + ":127.0.0.1:8080"} {
		_, errOut, code := g.run(t, "ssh", append(g.sshOpts(key, "-p"), "-o", "ExitOnForwardFailure=yes", "-R", a, "site_a@"+host, "echo ran")...)
		if code != 255 || !strings.Contains(errOut, "forwarding failed") {
			t.Errorf("ssh -R %s = %q %d; want refused", a, errOut, code)
		}
	}

	// Agent forwarding (-A): an agent on the host that nobody may reach.
	agentSock := filepath.Join(t.TempDir(), "agent.sock")
	agentLn, err := net.Listen("unix", agentSock)
	if err != nil {
		t.Fatal(err)
	}
	defer agentLn.Close()
	var agentUsed atomic.Int32
	go func() {
		for {
			conn, err := agentLn.Accept()
			if err != nil {
				return
			}
			agentUsed.Add(1)
			go agent.ServeAgent(agent.NewKeyring(), conn)
		}
	}()
	ax := exec.Command("ssh", append(g.sshOpts(key, "-p"), "-o", "IdentityAgent=none", "-o", "ForwardAgent="+agentSock,
		"-o", "ForwardX11=yes", "-o", "ForwardX11Trusted=yes", "site_a@"+host, "echo \"agent=${SSH_AUTH_SOCK-unset} display=${DISPLAY-unset} tmp=$(ls -a /tmp | grep -c ssh-)\"")...)
	ax.Env = append(os.Environ(), "DISPLAY=127.0.0.1:99")
	var axOut, axErr bytes.Buffer
	ax.Stdout, ax.Stderr = &axOut, &axErr
	if err := ax.Run(); err != nil || axOut.String() != "agent=unset display=unset tmp=0\n" {
		t.Errorf("ssh -A -X = %q %q %v; want no agent socket, no display", axOut.String(), axErr.String(), err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name    string
		payload []byte
	}{
		{"auth-agent-req@openssh.com", nil},
		{"x11-req", ssh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00112233445566778899aabbccddeeff", 0})},
		{"tun@openssh.com", nil},
	} {
		if ok, err := s.SendRequest(r.name, true, r.payload); ok || err != nil {
			t.Errorf("session request %s = %v, %v; want refused", r.name, ok, err)
		}
	}
	s.Close()
	if n := agentUsed.Load(); n != 0 {
		t.Errorf("the gateway reached the forwarded agent %d times", n)
	}
}

// TestAttackLimits: a slice's sessions and forwarded connections are
// bounded across all its logins, channel types other than session and
// direct-tcpip are refused, and floods of refused opens leave nothing
// behind.
func TestAttackLimits(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{config: func(c *Config, b *oci.Backend) { c.MaxSessions = 3; c.Dial = withDial(b) }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	g.setKeys("site_b", pub)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	isShortage := func(err error) bool {
		var oce *ssh.OpenChannelError
		return errors.As(err, &oce) && oce.Reason == ssh.ResourceShortage
	}

	t.Run("sessions", func(t *testing.T) {
		c1, c2, cb := g.client(t, "site_a", key), g.client(t, "user+site_a", key), g.client(t, "site_b", key)
		var held []*ssh.Session
		for _, c := range []*ssh.Client{c1, c1, c2} {
			s, err := c.NewSession()
			if err != nil {
				t.Fatalf("session %d of site_a: %v", len(held)+1, err)
			}
			held = append(held, s)
		}
		for i, c := range []*ssh.Client{c1, c2, g.client(t, "site_a", key)} {
			if s, err := c.NewSession(); err == nil {
				s.Close()
				t.Errorf("session 4 of site_a on login %d opened; want refused (3 at most across logins)", i)
			} else if !isShortage(err) {
				t.Errorf("session 4 of site_a: %v; want resource shortage", err)
			}
		}
		host, _, _ := net.SplitHostPort(g.addr)
		if _, errOut, code := g.run(t, "ssh", append(verbose(g.sshOpts(key, "-p")), "site_a@"+host, "true")...); code != 255 || !strings.Contains(errOut, "sessions open") {
			t.Errorf("ssh into a full site_a = %q %d; want refused", errOut, code)
		}
		for range 3 {
			s, err := cb.NewSession()
			if err != nil {
				t.Fatalf("site_b while site_a is full: %v", err)
			}
			defer s.Close()
		}
		held[0].Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := c2.NewSession()
			if err == nil {
				s.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a closed session never freed its slot: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, s := range held[1:] {
			s.Close()
		}
	})

	t.Run("channel types", func(t *testing.T) {
		c := g.client(t, "site_a", key)
		for _, typ := range []string{"x11", "forwarded-tcpip", "auth-agent@openssh.com", "direct-streamlocal@openssh.com",
			"forwarded-streamlocal@openssh.com", "tun@openssh.com", "Session", "session ", "session\x00", "direct-tcpip\x00", ""} {
			ch, _, err := c.OpenChannel(typ, nil)
			var oce *ssh.OpenChannelError
			if err == nil {
				ch.Close()
				t.Errorf("channel %q opened; want refused", typ)
			} else if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType {
				t.Errorf("channel %q: %v; want unknown channel type", typ, err)
			}
		}
	})

	t.Run("floods", func(t *testing.T) {
		c := g.client(t, "site_a", key)
		base := fds()
		var wg sync.WaitGroup
		var opened atomic.Int32
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					var err error
					var ch ssh.Channel
					switch (w + i) % 3 {
					case 0:
						ch, _, err = c.OpenChannel("x11", nil)
					case 1:
						ch, _, err = c.OpenChannel("direct-tcpip", []byte("malformed"))
					case 2:
						ch, err = forwardTo(c, "198.18.0.1", 80)
					}
					if err == nil {
						opened.Add(1)
						ch.Close()
					}
				}
			}()
		}
		wg.Wait()
		if n := opened.Load(); n != 0 {
			t.Errorf("%d refused channels opened", n)
		}
		if out, _, code, err := runGo(c, "echo alive", ""); err != nil || code != 0 || out != "alive\n" {
			t.Errorf("a session after 3200 refused opens = %q %d %v", out, code, err)
		}
		for deadline := time.Now().Add(5 * time.Second); fds() > base+8; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("the gateway holds %d descriptors after the flood, %d before", fds(), base)
				break
			}
		}
	})

	t.Run("forwards", func(t *testing.T) {
		// Each forwarded connection holds a socket of the node's daemon;
		// the sliver's httpd holds the other end open.
		if _, errOut, code := g.ssh(t, key, "site_a", "mkdir -p /www && echo SLIVER > /www/index.html && httpd -p 127.0.0.1:8090 -h /www"); code != 0 {
			t.Fatalf("httpd in the sliver: %q", errOut)
		}
		base := fds()
		var held []ssh.Channel
		defer func() {
			for _, ch := range held {
				ch.Close()
			}
		}()
		// Fill from several logins of the slice at once.
		logins := []*ssh.Client{g.client(t, "site_a", key), g.client(t, "site_a", key), g.client(t, "user+site_a", key)}
		var mu sync.Mutex
		var wg sync.WaitGroup
		refused := 0
		for _, c := range logins {
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 48 {
						ch, err := forwardTo(c, "127.0.0.1", 8090)
						mu.Lock()
						if err == nil {
							held = append(held, ch)
						} else if isShortage(err) {
							refused++
						} else {
							t.Errorf("forward: %v", err)
						}
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		if len(held) > maxForwards {
			t.Errorf("site_a holds %d forwarded connections across 3 logins; want at most %d", len(held), maxForwards)
		}
		if refused == 0 {
			t.Error("no forward refused")
		}
		if n := fds(); n > base+maxForwards+16 {
			t.Errorf("the gateway holds %d descriptors with site_a's forwards open, %d before: more than %d", n, base, maxForwards)
		}
		// Another slice is not held up; closing frees the slice's slots.
		if out, _, code := g.ssh(t, key, "site_b", "echo b"); code != 0 || out != "b\n" {
			t.Errorf("site_b while site_a's forwards are full = %q %d", out, code)
		}
		mu.Lock()
		for _, ch := range held[:10] {
			ch.Close()
		}
		held = held[10:]
		mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ch, err := forwardTo(logins[2], "127.0.0.1", 8090)
			if err == nil {
				if body := httpVia(ch); !strings.Contains(body, "SLIVER") {
					t.Errorf("a freed forward read %q", body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("closed forwards never freed their slots: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestAttackEnv: only LANG, LC_* and TERM reach the process; what a
// client sends beyond them (SetEnv/SendEnv, env requests after the
// command started, names with tricks in them) does not.
func TestAttackEnv(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	host, _, _ := net.SplitHostPort(g.addr)
	if _, errOut, code := g.ssh(t, key, "site_a", "echo 'echo ENV-RAN' > /tmp/evil && chmod +x /tmp/evil"); code != 0 {
		t.Fatal(errOut)
	}
	const show = `for v in LD_PRELOAD LD_LIBRARY_PATH BASH_ENV ENV SHELL LANGUAGE LC_X LC_PLAB LANG TERM HOME PATH USER; do eval "x=\${$v-unset}"; printf 'ENV:%s=%s\n' $v "$(printf %s "$x" | tr '\n' '~')"; done`
	refused := map[string]string{"LD_PRELOAD": "/tmp/evil.so", "LD_LIBRARY_PATH": "/tmp", "BASH_ENV": "/tmp/evil", "ENV": "/tmp/evil",
		"SHELL": "/tmp/evil", "LANGUAGE": "xx", "PATH": "/tmp:/bin", "HOME": "/tmp", "USER": "evil"}
	check := func(name, out string, extra map[string]string) {
		t.Helper()
		want := map[string]string{"LD_PRELOAD": "unset", "LD_LIBRARY_PATH": "unset", "BASH_ENV": "unset", "ENV": "unset",
			"SHELL": "unset", "LANGUAGE": "unset", "HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		for k, v := range extra {
			want[k] = v
		}
		got := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if _, kv, ok := strings.Cut(l, "ENV:"); ok && !strings.Contains(l, "printf") {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = strings.TrimRight(v, "\r")
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s=%q; want %q", name, k, got[k], v)
			}
		}
		if strings.Contains(out, "ENV-RAN") {
			t.Errorf("%s: the client's ENV ran", name)
		}
	}
	// OpenSSH's SetEnv.
	var setenv []string
	for k, v := range refused {
		setenv = append(setenv, k+"="+v)
	}
	setenv = append(setenv, "LANG=C.UTF-8", "LC_PLAB=ok", "TERM=dumb")
	out, errOut, code := g.run(t, "ssh", append(g.sshOpts(key, "-p"), "-o", "SetEnv="+strings.Join(setenv, " "), "site_a@"+host, show)...)
	if code != 0 {
		t.Fatalf("ssh with SetEnv: %q %d", errOut, code)
	}
	check("ssh -o SetEnv", out, map[string]string{"LANG": "C.UTF-8", "LC_PLAB": "ok", "TERM": "dumb", "USER": "root"})

	// The protocol: each refused name is refused, names with tricks too.
	c := g.client(t, "site_a", key)
	for _, pty := range []bool{false, true} {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range refused {
			if err := s.Setenv(k, v); err == nil {
				t.Errorf("env %s accepted", k)
			}
		}
		for _, kv := range [][2]string{{"LANG\x00LD_PRELOAD", "/tmp/evil.so"}, {"LD_PRELOAD\x00LANG", "/tmp/evil.so"}, {"LANGX", "x"}, {"lang", "x"}, {" LANG", "x"}, {"TERM2", "x"}} {
			if err := s.Setenv(kv[0], kv[1]); err == nil {
				t.Errorf("env %q accepted", kv[0])
			}
		}
		for _, kv := range [][2]string{{"LC_X", "1=2 LD_PRELOAD=/tmp/evil.so"}, {"LANG", "C.UTF-8"}} {
			if err := s.Setenv(kv[0], kv[1]); err != nil {
				t.Errorf("env %s: %v", kv[0], err)
			}
		}
		var b bytes.Buffer
		s.Stdout = &b
		if pty {
			if err := s.RequestPty("xterm\nLD_PRELOAD=/tmp/evil.so", 24, 80, ssh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
			in, _ := s.StdinPipe()
			if err := s.Shell(); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.SendRequest("env", true, ssh.Marshal(struct{ K, V string }{"LD_PRELOAD", "/tmp/evil.so"})); ok {
				t.Error("env after the shell started accepted")
			}
			io.WriteString(in, show+"; exit\n")
			s.Wait()
			check("a pty shell", b.String(), map[string]string{"LC_X": "1=2 LD_PRELOAD=/tmp/evil.so", "LANG": "C.UTF-8", "TERM": "xterm~LD_PRELOAD=/tmp/evil.so"})
		} else {
			if err := s.Start(show); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.SendRequest("env", true, ssh.Marshal(struct{ K, V string }{"LC_LATE", "x"})); ok {
				t.Error("env after the command started accepted")
			}
			s.Wait()
			check("exec", b.String(), map[string]string{"LC_X": "1=2 LD_PRELOAD=/tmp/evil.so", "LANG": "C.UTF-8", "TERM": "unset"})
		}
		s.Close()
	}
}

// TestAttackStalledForward: a sliver that stops reading what a client
// forwards to it holds neither the forward (its socket on the node, what
// the client sent, the slice's slot) once the client closes the channel or
// leaves, nor the gateway's shutdown.
func TestAttackStalledForward(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}, config: func(c *Config, b *oci.Backend) { c.Dial = withDial(b) }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	// The non-readers go at the end whatever happens, so that a gateway
	// that waits for them is not waited on for ever.
	t.Cleanup(func() {
		g.b.Exec(context.Background(), "site_a", sliver.ExecSpec{Args: []string{"killall", "nc", "sleep"}})
	})
	if _, errOut, code := g.ssh(t, key, "site_a", "nc -ll -p 9000 -e sleep 1000 </dev/null >/dev/null 2>&1 &"); code != 0 {
		t.Fatalf("a server that never reads, in the sliver: %q", errOut)
	}
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	base := fds()
	held := func() int {
		g.srv.forwards.mu.Lock()
		defer g.srv.forwards.mu.Unlock()
		return g.srv.forwards.m["site_a"]
	}
	flood := make([]byte, 32<<20) // more than the socket buffers on the way take
	stall := func(c *ssh.Client) []ssh.Channel {
		t.Helper()
		var chs []ssh.Channel
		deadline := time.Now().Add(10 * time.Second)
		for len(chs) < 4 {
			ch, err := forwardTo(c, "127.0.0.1", 9000)
			if err != nil {
				if time.Now().After(deadline) {
					t.Fatalf("forward to the sliver's nc: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			chs = append(chs, ch)
			go ch.Write(flood)
		}
		return chs
	}
	freed := func(what string, d time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(d); held() != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%s, site_a still holds %d forwards %v later", what, held(), d)
				return
			}
		}
	}
	c := g.client(t, "site_a", key)
	for _, ch := range stall(c) {
		ch.Close()
	}
	freed("after the client closed its channels", 3*forwardDrain)
	c2 := g.client(t, "site_a", key)
	stall(c2)
	c2.Close()
	freed("after the client left", 5*time.Second)
	stall(g.client(t, "site_a", key))
	closed := make(chan struct{})
	go func() {
		g.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("the gateway's Close waits for a sliver that does not read")
	}
	for deadline := time.Now().Add(5 * time.Second); fds() > base+8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the gateway holds %d descriptors after it closed, %d before", fds(), base)
			break
		}
	}
}
