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
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
)

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
