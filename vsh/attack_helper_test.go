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
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver/oci"
)

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
