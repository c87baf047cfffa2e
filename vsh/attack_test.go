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
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
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
