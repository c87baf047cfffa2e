package node

import (
	"bytes"
	"errors"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/credtest"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/atomicfile"
	"github.com/plab/plab/internal/testenv"
)

// sshInto runs OpenSSH as login@node's gateway with u's key, checking the
// host key against the one the node publishes.
func sshInto(t *testing.T, n *testNode, addr string, u *credtest.User, login string, cmd string) (string, string, int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	known := t.TempDir() + "/known_hosts"
	if err := atomicfile.Write(known, []byte("[127.0.0.1]:"+port+" "+n.n.SSHHostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("ssh", "-F", "/dev/null", "-i", u.KeyFile, "-p", port, "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+known, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
		login+"@"+host, cmd)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// serveSSH runs the node's gateway on a loopback port until the test ends.
func serveSSH(t *testing.T, n *testNode) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.n.ServeSSH(t.Context(), ln) }()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestSSHGateway: the node's gateway lets a lease's keys into its sliver
// under the published host key, follows addkey/delkey at the next login,
// keeps its host key across restarts, and reports it to PLC.
func TestSSHGateway(t *testing.T) {
	testenv.RequireBinaries(t, "ssh")
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_ssh", "direct", w.alice, 7*24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_ssh", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	addr := serveSSH(t, n)
	if out, errOut, code := sshInto(t, n, addr, w.alice, "ucb_ssh", "hostname; id -u"); code != 0 || out != "ucb_ssh\n0\n" {
		t.Fatalf("alice into ucb_ssh = %q %q %d", out, errOut, code)
	}
	bob := credtest.NewUser(t, "bob@ucb.test")
	if _, errOut, code := sshInto(t, n, addr, bob, "ucb_ssh", "true"); code != 255 || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("bob before addkey = %q %d; want refused", errOut, code)
	}
	alice := w.client(w.alice, n)
	if err := alice.Do(ctx, "POST", "/v1/slivers/ucb_ssh/keys", api.SSHKey{Key: bob.Pub}, nil); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := sshInto(t, n, addr, bob, "ucb_ssh", "echo bob"); code != 0 || out != "bob\n" {
		t.Errorf("bob after addkey = %q %q %d", out, errOut, code)
	}
	if err := alice.Do(ctx, "DELETE", "/v1/slivers/ucb_ssh/keys/"+url.PathEscape(string(bob.Fingerprint())), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := sshInto(t, n, addr, bob, "ucb_ssh", "true"); code != 255 || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("bob after delkey = %q %d; want refused", errOut, code)
	}

	// PLC publishes the host key and port the node reports.
	key := n.n.SSHHostKey
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rec api.Node
		w.plc.Do(w.plc.Admin, "GET", "/v1/nodes/"+n.host, nil, &rec)
		_, apiPort, _ := net.SplitHostPort(n.addr)
		if rec.SSHHostKey == key && rec.SSHPort == port && strconv.Itoa(rec.APIPort) == apiPort {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PLC's record of the node = key %q port %d API port %d; want %q port %d, API port %s", rec.SSHHostKey, rec.SSHPort, rec.APIPort, key, port, apiPort)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The host key survives a restart; so does the way in.
	n.stop(t)
	n.start(t, w.clock)
	if n.n.SSHHostKey != key {
		t.Errorf("host key after a restart = %q, want %q", n.n.SSHHostKey, key)
	}
	addr = serveSSH(t, n)
	if out, errOut, code := sshInto(t, n, addr, w.alice, "ucb_ssh", "hostname"); code != 0 || out != "ucb_ssh\n" {
		t.Errorf("alice after a restart = %q %q %d", out, errOut, code)
	}
}

// TestRedeemShorterLease: a redemption may ask for a shorter lease than the
// node grants; a negative one is refused and leaves nothing behind.
func TestRedeemShorterLease(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_short", "direct", w.alice, 7*24*time.Hour)
	c := w.client(w.alice, n)
	tk := w.ticket(w.alice, "ucb_short", n, api.Resources{})
	var l api.Lease
	err := c.Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk, LeaseSeconds: -5}, &l)
	mustErr(t, "a negative lease", err, errdefs.ErrInvalid)
	if got := n.sliverState("ucb_short"); got != "" {
		t.Errorf("a refused redemption left a sliver (%s)", got)
	}
	start := w.clock.Now()
	if err := c.Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk, LeaseSeconds: 600}, &l); err != nil {
		t.Fatal(err)
	}
	if d := l.NotAfter.Sub(start); d < 595*time.Second || d > 605*time.Second {
		t.Errorf("lease for 600 s ends %s after the redemption", d)
	}
}
