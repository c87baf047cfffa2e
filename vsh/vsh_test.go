//go:build linux

package vsh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
)

// keyFile makes an ed25519 key for the OpenSSH client and returns its path
// and authorized_keys line.
func keyFile(t testing.TB) (string, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return path, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// gateway is a real sliver backend with slivers behind a Server on
// loopback, and keys the test changes.
type gateway struct {
	addr string
	srv  *Server
	b    *oci.Backend
	mu   sync.Mutex
	keys map[string][]string
}

// gatewayOpts shape a test gateway: which slivers (default site_a and
// site_b), with which image each, and changes to the Server's Config.
type gatewayOpts struct {
	slivers []string
	images  func(b *oci.Backend) map[string]string
	config  func(*Config, *oci.Backend)
}

func newGateway(t *testing.T) *gateway { return newGatewayWith(t, gatewayOpts{}) }

func newGatewayWith(t testing.TB, o gatewayOpts) *gateway {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "runc", "mkfs.btrfs", "busybox", "ssh")
	dir := t.TempDir()
	for d := dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o711)
	}
	if o.slivers == nil {
		o.slivers = []string{"site_a", "site_b"}
	}
	cfg := oci.Config{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"),
		CgroupParent: fmt.Sprintf("plabvshtest-%d", os.Getpid()), UIDBase: 0xC0000000 + uint32(os.Getpid()%64)*0x100000, MaxSlivers: len(o.slivers) + 2,
		LayerImageSize: 2 << 30}
	b, err := oci.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		if err := oci.Cleanup(context.Background(), cfg); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	images := map[string]string{}
	if o.images != nil {
		images = o.images(b)
	}
	for _, name := range o.slivers {
		if _, err := b.Create(context.Background(), sliver.Spec{Name: name, Image: images[name]}); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	hk, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{keys: map[string][]string{}, b: b}
	c := Config{HostKey: hk, Slivers: b, Keys: func(slice string) ([]string, bool) {
		g.mu.Lock()
		defer g.mu.Unlock()
		k, ok := g.keys[slice]
		return k, ok
	}}
	if o.config != nil {
		o.config(&c, b)
	}
	srv, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	g.addr, g.srv = ln.Addr().String(), srv
	return g
}

func (g *gateway) setKeys(slice string, keys ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys[slice] = keys
}

// ssh runs the OpenSSH client as user@gateway with key, and returns its
// stdout, stderr and exit code.
func (g *gateway) ssh(t testing.TB, key, user string, cmd ...string) (string, string, int) {
	t.Helper()
	host, _, _ := net.SplitHostPort(g.addr)
	return g.run(t, "ssh", append(append(g.sshOpts(key, "-p"), user+"@"+host), cmd...)...)
}

// sshOpts are the OpenSSH options every test uses, with the port given by
// portFlag (-p for ssh, -P for scp and sftp).
func (g *gateway) sshOpts(key, portFlag string) []string {
	_, port, _ := net.SplitHostPort(g.addr)
	return []string{"-F", "/dev/null", "-i", key, portFlag, port, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"}
}

// run runs an OpenSSH tool and returns its stdout, stderr and exit code.
func (g *gateway) run(t testing.TB, name string, args ...string) (string, string, int) {
	t.Helper()
	c := exec.Command(name, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestExec: ssh slice@node CMD returns output and exit status, stdout and
// stderr apart, and the environment the client passes.
func TestExec(t *testing.T) {
	g := newGateway(t)
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	for _, tc := range []struct {
		cmd      string
		out, err string
		code     int
	}{
		{"echo hello; hostname", "hello\nsite_a\n", "", 0},
		{"false", "", "", 1},
		{"exit 42", "", "", 42},
		{"echo out; echo err >&2", "out\n", "err\n", 0},
		{"id -u", "0\n", "", 0},
	} {
		out, errOut, code := g.ssh(t, key, "site_a", tc.cmd)
		if out != tc.out || errOut != tc.err || code != tc.code {
			t.Errorf("ssh site_a %q = %q, %q, %d; want %q, %q, %d", tc.cmd, out, errOut, code, tc.out, tc.err, tc.code)
		}
	}
}

// TestKeys: a wrong key is refused; slice A's key cannot enter slice B; a
// removed key is refused at the next login.
func TestKeys(t *testing.T) {
	g := newGateway(t)
	keyA, pubA := keyFile(t)
	keyB, pubB := keyFile(t)
	stranger, _ := keyFile(t)
	g.setKeys("site_a", pubA)
	g.setKeys("site_b", pubB)
	if out, _, code := g.ssh(t, keyA, "site_a", "echo in"); code != 0 || out != "in\n" {
		t.Fatalf("A into site_a: %q, %d", out, code)
	}
	if out, _, code := g.ssh(t, keyB, "site_b", "hostname"); code != 0 || out != "site_b\n" {
		t.Fatalf("B into site_b: %q, %d", out, code)
	}
	for _, tc := range []struct{ name, key, user string }{
		{"a stranger's key", stranger, "site_a"},
		{"A's key into B", keyA, "site_b"},
		{"a slice that is not here", keyA, "site_none"},
	} {
		if out, errOut, code := g.ssh(t, tc.key, tc.user, "echo in"); code != 255 || out != "" || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("%s: %q, %q, %d; want refused", tc.name, out, errOut, code)
		}
	}
	g.setKeys("site_a") // delkey
	if _, errOut, code := g.ssh(t, keyA, "site_a", "echo in"); code != 255 || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("a removed key at the next login: %q, %d; want refused", errOut, code)
	}
}

// TestPTY: an interactive session (OpenSSH in a tmux pane) gets a pty of
// the pane's size, and follows the pane when it is resized.
func TestPTY(t *testing.T) {
	g := newGateway(t)
	testenv.RequireBinaries(t, "tmux")
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	host, port, _ := net.SplitHostPort(g.addr)
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	sshCmd := fmt.Sprintf("ssh -F /dev/null -i %s -p %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes -t site_a@%s", key, port, host)
	tmux("new-session", "-d", "-x", "100", "-y", "30", sshCmd)
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	// screen polls the pane until want shows (the session is asynchronous).
	screen := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out := tmux("capture-pane", "-p")
			if strings.Contains(out, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pane never showed %q:\n%s", want, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	tmux("send-keys", "echo size=$(stty size)", "Enter")
	screen("size=30 100")
	tmux("resize-window", "-x", "120", "-y", "40")
	tmux("send-keys", "echo size=$(stty size) term=$TERM", "Enter")
	screen("size=40 120 term=")
	tmux("send-keys", "exit", "Enter")
}
