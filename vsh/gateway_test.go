//go:build linux

package vsh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver/oci"
	"github.com/plab/plab/vnet"
)

// withDial lets the gateway forward into its slivers as the node does.
func withDial(b *oci.Backend) Dialer {
	return func(ctx context.Context, slice, addr string) (net.Conn, error) {
		info, err := b.State(ctx, slice)
		if err != nil {
			return nil, err
		}
		return vnet.DialInside(ctx, info.Pid, addr)
	}
}

// lockedBuffer is a buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// verbose makes OpenSSH print why a channel was refused (it logs that at
// INFO).
func verbose(opts []string) []string {
	out := append([]string(nil), opts...)
	for i, o := range out {
		if o == "LogLevel=ERROR" {
			out[i] = "LogLevel=INFO"
		}
	}
	return out
}

// freePort returns a loopback port nobody listens on now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestForwarding: -L reaches a server inside the sliver, never an address
// outside it (the host's loopback, another network); -R is refused.
func TestForwarding(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{config: func(c *Config, b *oci.Backend) { c.Dial = withDial(b) }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	if out, errOut, code := g.ssh(t, key, "site_a", "mkdir -p /www && echo forwarded > /www/index.html && httpd -p 127.0.0.1:8080 -h /www"); code != 0 {
		t.Fatalf("start httpd in the sliver: %q %q %d", out, errOut, code)
	}
	// A server on the host's loopback, which -L must not reach.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	hostHits := make(chan struct{}, 4)
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			hostHits <- struct{}{}
			c.Close()
		}
	}()
	_, hostPort, _ := net.SplitHostPort(hostLn.Addr().String())
	inside, hostFwd, outside := freePort(t), freePort(t), freePort(t)
	host, _, _ := net.SplitHostPort(g.addr)
	args := append(verbose(g.sshOpts(key, "-p")), "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", inside+":127.0.0.1:8080", "-L", hostFwd+":127.0.0.1:"+hostPort, "-L", outside+":198.18.0.1:80", "site_a@"+host)
	fwd := exec.Command("ssh", args...)
	var fwdErr lockedBuffer
	fwd.Stderr = &fwdErr
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fwd.Process.Kill(); fwd.Wait() }()
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + inside + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("-L to the sliver's httpd never answered: %v; ssh said %s", err, fwdErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "forwarded\n" {
		t.Errorf("-L to 127.0.0.1:8080 inside the sliver got %q, want the sliver's page", body)
	}
	for _, port := range []string{hostFwd, outside} {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 {
			t.Errorf("-L %s: read data through a forward that must be refused", port)
		}
	}
	select {
	case <-hostHits:
		t.Error("-L to 127.0.0.1 reached the host's loopback instead of the sliver's")
	case <-time.After(200 * time.Millisecond):
	}
	if !strings.Contains(fwdErr.String(), "open failed") {
		t.Errorf("ssh did not report the refused forwards: %q", fwdErr.String())
	}
	// -R is refused.
	_, errOut, code := g.run(t, "ssh", append(g.sshOpts(key, "-p"), "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:1", "site_a@"+host, "echo", "ran")...)
	if code != 255 || !strings.Contains(errOut, "remote port forwarding failed") {
		t.Errorf("ssh -R = %d %q; want exit 255, remote port forwarding failed", code, errOut)
	}
}

// TestUserLogin: user+slice lands as that user inside the sliver; an
// unknown user is refused with a reason.
func TestUserLogin(t *testing.T) {
	g := newGateway(t)
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	if out, errOut, code := g.ssh(t, key, "user+site_a", "id -u; echo $HOME; hostname"); code != 0 || out != "1000\n/home/user\nsite_a\n" {
		t.Errorf("ssh user+site_a = %q %q %d; want uid 1000, its home, site_a", out, errOut, code)
	}
	if _, errOut, code := g.ssh(t, key, "nosuch+site_a", "true"); code == 0 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("ssh nosuch+site_a = %q %d; want refused naming the user", errOut, code)
	}
	if _, errOut, code := g.ssh(t, key, "user+site_b", "true"); code != 255 || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("ssh user+site_b with site_a's key = %q %d; want refused", errOut, code)
	}
}

// TestSessionLimit: a slice's sessions beyond MaxSessions are refused with
// a reason; another slice is not held up; a closed session frees its slot.
func TestSessionLimit(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{config: func(c *Config, _ *oci.Backend) { c.MaxSessions = 2 }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	g.setKeys("site_b", pub)
	host, _, _ := net.SplitHostPort(g.addr)
	var long []*exec.Cmd
	for range 2 {
		c := exec.Command("ssh", append(g.sshOpts(key, "-p"), "site_a@"+host, "echo up; sleep 60")...)
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		long = append(long, c)
		buf := make([]byte, 3)
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "up\n" {
			t.Fatalf("a long session did not start: %q %v", buf, err)
		}
	}
	defer func() {
		for _, c := range long {
			c.Process.Kill()
			c.Wait()
		}
	}()
	if _, errOut, code := g.run(t, "ssh", append(verbose(g.sshOpts(key, "-p")), "site_a@"+host, "true")...); code != 255 || !strings.Contains(errOut, "sessions open") {
		t.Errorf("a third session of site_a = %q %d; want refused: sessions open", errOut, code)
	}
	if out, _, code := g.ssh(t, key, "site_b", "echo b"); code != 0 || out != "b\n" {
		t.Errorf("site_b while site_a is full = %q %d", out, code)
	}
	long[0].Process.Kill()
	long[0].Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, errOut, code := g.ssh(t, key, "site_a", "echo again")
		if code == 0 && out == "again\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed session never freed its slot: %q %d", errOut, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAuthFailureLimit: a source that fails to log in too often is refused
// even with a good key until its minute is over.
func TestAuthFailureLimit(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	g := newGatewayWith(t, gatewayOpts{config: func(c *Config, _ *oci.Backend) { c.MaxAuthFailures, c.Now = 3, clock }})
	key, pub := keyFile(t)
	stranger, _ := keyFile(t)
	g.setKeys("site_a", pub)
	for range 3 {
		if _, _, code := g.ssh(t, stranger, "site_a", "true"); code != 255 {
			t.Fatalf("a stranger's key logged in")
		}
	}
	if out, errOut, code := g.ssh(t, key, "site_a", "echo in"); code != 255 || out != "" {
		t.Errorf("after 3 failures, the good key = %q %q %d; want refused", out, errOut, code)
	}
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	if out, errOut, code := g.ssh(t, key, "site_a", "echo in"); code != 0 || out != "in\n" {
		t.Errorf("a minute later, the good key = %q %q %d; want in", out, errOut, code)
	}
}

// TestConcurrentSessions: 100 sessions at once across 10 slivers all
// succeed, each in its own sliver.
func TestConcurrentSessions(t *testing.T) {
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("slice_%d", i))
	}
	g := newGatewayWith(t, gatewayOpts{slivers: names})
	key, pub := keyFile(t)
	for _, n := range names {
		g.setKeys(n, pub)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slice := names[i%10]
			out, errOut, code := g.ssh(t, key, slice, fmt.Sprintf("sleep 1; echo %d $(hostname)", i))
			if want := fmt.Sprintf("%d %s\n", i, slice); code != 0 || out != want {
				errs <- fmt.Sprintf("session %d into %s = %q %q %d, want %q", i, slice, out, errOut, code, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// helperBinary builds the static plab binary the gateway runs inside
// slivers for scp and sftp.
func helperBinary(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Open(testenv.StaticPlab(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// rsyncImage imports an image holding a static busybox and the host's
// rsync with its libraries.
func rsyncImage(t *testing.T, b *oci.Backend) string {
	t.Helper()
	dir := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cp := func(src string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		mk(filepath.Dir(src))
		if err := os.WriteFile(filepath.Join(dir, src), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "etc", "root", "tmp", "proc", "sys", "dev"} {
		mk(d)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(bb)
	os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755)
	for _, app := range []string{"sh", "cat", "sha256sum", "ls", "mkdir"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", app))
	}
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		t.Fatal(err)
	}
	cp(rsync)
	out, err := exec.Command("ldd", rsync).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			real, err := filepath.EvalSymlinks(f)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(real)
			if err != nil {
				t.Fatal(err)
			}
			mk(filepath.Dir(f))
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644)
	if _, err := b.Images().Import(context.Background(), "rsync", dir); err != nil {
		t.Fatal(err)
	}
	return "rsync"
}

// TestFileTransfer: scp (SFTP-based and legacy), sftp and rsync round-trip
// a 10 MB file with identical checksums, through the stock OpenSSH tools.
func TestFileTransfer(t *testing.T) {
	testenv.RequireBinaries(t, "scp", "sftp", "rsync", "go")
	helper := helperBinary(t)
	g := newGatewayWith(t, gatewayOpts{
		slivers: []string{"site_a", "site_r"},
		images:  func(b *oci.Backend) map[string]string { return map[string]string{"site_r": rsyncImage(t, b)} },
		config:  func(c *Config, _ *oci.Backend) { c.Helper, c.HelperArgs = helper, []string{"plab", "vsh-helper"} },
	})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	g.setKeys("site_r", pub)
	host, _, _ := net.SplitHostPort(g.addr)
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	data := make([]byte, 10<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", sha256.Sum256(data))
	remoteSum := func(slice, path string) string {
		t.Helper()
		out, errOut, code := g.ssh(t, key, slice, "sha256sum "+path)
		if code != 0 {
			t.Fatalf("sha256sum %s in %s: %q %d", path, slice, errOut, code)
		}
		return strings.Fields(out + " x")[0]
	}
	localSum := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	for _, mode := range []struct{ name, flag string }{{"scp", ""}, {"scp -O", "-O"}} {
		up := "/root/" + strings.ReplaceAll(mode.name, " ", "") + ".up"
		args := append(g.sshOpts(key, "-P"), src, "site_a@"+host+":"+up)
		if mode.flag != "" {
			args = append([]string{mode.flag}, args...)
		}
		if _, errOut, code := g.run(t, "scp", args...); code != 0 {
			t.Errorf("%s upload: %q %d", mode.name, errOut, code)
			continue
		}
		if got := remoteSum("site_a", up); got != want {
			t.Errorf("%s upload: checksum in the sliver %s, want %s", mode.name, got, want)
		}
		back := filepath.Join(dir, strings.ReplaceAll(mode.name, " ", "")+".back")
		args = append(g.sshOpts(key, "-P"), "site_a@"+host+":"+up, back)
		if mode.flag != "" {
			args = append([]string{mode.flag}, args...)
		}
		if _, errOut, code := g.run(t, "scp", args...); code != 0 {
			t.Errorf("%s download: %q %d", mode.name, errOut, code)
			continue
		}
		if got := localSum(back); got != want {
			t.Errorf("%s round trip: checksum %s, want %s", mode.name, got, want)
		}
	}
	// sftp, in batch mode.
	batch := filepath.Join(dir, "batch")
	back := filepath.Join(dir, "sftp.back")
	os.WriteFile(batch, []byte(fmt.Sprintf("mkdir d\nput %s d/f\nls -l d\nget d/f %s\n", src, back)), 0o644)
	if out, errOut, code := g.run(t, "sftp", append(g.sshOpts(key, "-P"), "-b", batch, "site_a@"+host)...); code != 0 || !strings.Contains(out, "d/f") {
		t.Errorf("sftp -b: %q %q %d", out, errOut, code)
	} else if got := localSum(back); got != want {
		t.Errorf("sftp round trip: checksum %s, want %s", got, want)
	}
	if got := remoteSum("site_a", "/root/d/f"); got != want {
		t.Errorf("sftp put: checksum in the sliver %s, want %s", got, want)
	}
	// rsync, in the sliver whose image has it.
	rsh := "ssh " + strings.Join(g.sshOpts(key, "-p"), " ")
	if _, errOut, code := g.run(t, "rsync", "-e", rsh, src, "site_r@"+host+":/root/r.up"); code != 0 {
		t.Errorf("rsync upload: %q %d", errOut, code)
	} else if got := remoteSum("site_r", "/root/r.up"); got != want {
		t.Errorf("rsync upload: checksum %s, want %s", got, want)
	}
	rback := filepath.Join(dir, "rsync.back")
	if _, errOut, code := g.run(t, "rsync", "-e", rsh, "site_r@"+host+":/root/r.up", rback); code != 0 {
		t.Errorf("rsync download: %q %d", errOut, code)
	} else if got := localSum(rback); got != want {
		t.Errorf("rsync round trip: checksum %s, want %s", got, want)
	}
	// Files written by the helper belong to the sliver's root, not the host's.
	if out, _, _ := g.ssh(t, key, "site_a", "ls -ln /root/scp.up"); !strings.Contains(out, " 0 ") {
		t.Errorf("an uploaded file's owner inside the sliver: %q, want uid 0", out)
	}
}

// TestTimeouts: a client that does not log in within LoginGrace is cut off
// however it trickles bytes; an idle session is closed, a busy one is not.
func TestTimeouts(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}, config: func(c *Config, _ *oci.Backend) {
		c.LoginGrace, c.IdleTimeout = 500*time.Millisecond, time.Second
	}})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	// closed says whether the server closes c within d.
	closed := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 256)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				return !(errors.As(err, &ne) && ne.Timeout())
			}
		}
	}
	silent, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	trickle, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer trickle.Close()
	go func() {
		for _, b := range []byte("SSH-2.0-slow\r\n") {
			if _, err := trickle.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if !closed(silent, 10*time.Second) {
		t.Error("a silent connection outlived the login grace")
	}
	if !closed(trickle, 10*time.Second) {
		t.Error("a trickling connection outlived the login grace")
	}

	// A busy session outlives the idle timeout; an idle one does not.
	if out, errOut, code := g.ssh(t, key, "site_a", "for i in 1 2 3 4 5 6; do echo $i; sleep 0.4; done"); code != 0 || out != "1\n2\n3\n4\n5\n6\n" {
		t.Errorf("a busy session across the idle timeout = %q %q %d", out, errOut, code)
	}
	host, _, _ := net.SplitHostPort(g.addr)
	idle := exec.Command("ssh", append(g.sshOpts(key, "-p"), "-N", "-o", "ServerAliveInterval=0", "site_a@"+host)...)
	if err := idle.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- idle.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		idle.Process.Kill()
		<-done
		t.Error("an idle connection was never closed")
	}
}

// TestLoginLimit: logins under way from one address are bounded; the next
// is closed without a word.
func TestLoginLimit(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}, config: func(c *Config, _ *oci.Backend) {
		c.LoginGrace, c.MaxLogins = time.Minute, 8
	}})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 8 {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The server counts a login when it takes the connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.srv.logins.mu.Lock()
		n := g.srv.logins.m["127.0.0.1"]
		g.srv.logins.mu.Unlock()
		if n == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server counts %d logins under way, want 8", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	// A taken connection gets the server's version line at once; a
	// refused one is closed (the grace, a minute, cannot end it first).
	extra.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = extra.Read(make([]byte, 64))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("login 9 from one address was taken (%v); want it closed", err)
	}
}
