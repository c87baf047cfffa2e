//go:build linux

package vnet

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/plab/plab/internal/testenv"
)

// The test world (DESIGN.md): an "internet" namespace with the test
// servers at 198.18.0.1, a node namespace whose uplink up0 has 198.18.0.2,
// and slivers: processes in network namespaces of their own. Nothing in it
// has a route to a real interface. Everything is removed when the test
// ends, and checked gone.

const (
	inetAddr = "198.18.0.1"
	nodeAddr = "198.18.0.2"
)

var topoSeq atomic.Uint32

type topo struct {
	t          *testing.T
	inet, node string // namespace names (ip netns)
	inetNS     netns.NsHandle
	cfg        Config
	net        *Net
}

// newTopo builds the world and opens vnet on its node.
func newTopo(t *testing.T, cfg Config) *topo {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "ip", "nft", "tc", "nsenter", "unshare", "busybox")
	n := topoSeq.Add(1)
	tp := &topo{t: t, inet: fmt.Sprintf("plabt-i%d-%d", os.Getpid(), n), node: fmt.Sprintf("plabt-n%d-%d", os.Getpid(), n)}
	for _, ns := range []string{tp.inet, tp.node} {
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh(t, "ip", "link", "add", "up0", "netns", tp.node, "type", "veth", "peer", "name", "wan0", "netns", tp.inet)
	sh(t, "ip", "-n", tp.node, "addr", "add", nodeAddr+"/24", "dev", "up0")
	sh(t, "ip", "-n", tp.inet, "addr", "add", inetAddr+"/24", "dev", "wan0")
	for _, c := range [][]string{{tp.node, "up0"}, {tp.node, "lo"}, {tp.inet, "wan0"}, {tp.inet, "lo"}} {
		sh(t, "ip", "-n", c[0], "link", "set", c[1], "up")
	}
	var err error
	if tp.inetNS, err = netns.GetFromName(tp.inet); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.inetNS.Close() })
	cfg.NetNS = "/run/netns/" + tp.node
	cfg.Uplink = "up0"
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tp.cfg = cfg
	if tp.net, err = Open(cfg); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		tp.net.Close()
		if err := Cleanup(cfg); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		if left := tp.objects(); len(left) > 0 {
			t.Errorf("after Cleanup the node still holds:\n%s", strings.Join(left, "\n"))
		}
	})
	return tp
}

// objects lists what vnet may leave in the node's namespace: links but
// lo and up0, routes beyond the uplink's, nft tables, qdiscs on up0 other
// than the kernel's default.
func (tp *topo) objects() []string {
	var out []string
	for _, line := range lines(tp.t, "ip", "-n", tp.node, "-o", "link") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
			if name != "lo" && name != "up0" {
				out = append(out, "link "+name)
			}
		}
	}
	for _, line := range lines(tp.t, "ip", "-n", tp.node, "route") {
		if !strings.Contains(line, "dev up0 proto kernel") {
			out = append(out, "route "+line)
		}
	}
	for _, line := range lines(tp.t, "ip", "netns", "exec", tp.node, "nft", "list", "tables") {
		out = append(out, "nft "+line)
	}
	for _, line := range lines(tp.t, "tc", "-n", tp.node, "qdisc", "show", "dev", "up0") {
		if !strings.Contains(line, "noqueue") && !strings.Contains(line, "noop") && !strings.Contains(line, "qdisc pfifo_fast 0:") && !strings.Contains(line, "qdisc mq 0:") && !strings.Contains(line, "qdisc fq_codel 0:") {
			out = append(out, "qdisc "+line)
		}
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func lines(t *testing.T, name string, args ...string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(sh(t, name, args...)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// fakeSliver is a process in network and user namespaces of its own, as a
// sliver's init is: its root holds CAP_NET_RAW in its namespace only.
type fakeSliver struct {
	name string
	cmd  *exec.Cmd
	pid  int
}

func (tp *topo) sliver(name string) *fakeSliver {
	t := tp.t
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--user", "--map-root-user", "--fork", "--kill-child", "sh", "-c", "echo $$; exec sleep 3600")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The shell is unshare's child, in the new namespaces: it says its pid.
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil || pid == 0 {
		t.Fatalf("the fake sliver did not start: %v", err)
	}
	return &fakeSliver{name: name, cmd: cmd, pid: pid}
}

// run runs a command inside the sliver (its network and user namespaces)
// and returns its output.
func (s *fakeSliver) run(ctx context.Context, args ...string) (string, error) {
	a := append([]string{"-t", fmt.Sprint(s.pid), "-n", "-U", "--preserve-credentials", "--"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", a...).CombinedOutput()
	return string(out), err
}

// server is a TCP server in the internet namespace that answers each
// connection with the address it came from.
func (tp *topo) server(port int) (addr string, seen chan netip.AddrPort) {
	t := tp.t
	var ln net.Listener
	err := inNS(tp.inetNS, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", inetAddr, port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen = make(chan netip.AddrPort, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap := netip.MustParseAddrPort(c.RemoteAddr().String())
			select {
			case seen <- ap:
			default:
			}
			fmt.Fprintf(c, "you are %s\n", ap)
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
	return ln.Addr().String(), seen
}

// helper runs the test binary inside the sliver as helper job (see
// helper_test.go).
func (s *fakeSliver) helper(ctx context.Context, job string, args ...string) *exec.Cmd {
	a := append([]string{"-t", fmt.Sprint(s.pid), "-n", "-U", "--preserve-credentials", "--", "env", "PLAB_VNET_HELPER=" + job, os.Args[0]}, args...)
	return exec.CommandContext(ctx, "nsenter", a...)
}

// dial connects from the internet namespace.
func (tp *topo) dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(tp.inetNS, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 2*time.Second)
		return err
	})
	return c, err
}

// udpSink counts UDP packets arriving at the internet namespace on a
// port, by source address.
func (tp *topo) udpSink() (port int, count func() map[string]int) {
	t := tp.t
	var pc net.PacketConn
	if err := inNS(tp.inetNS, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", inetAddr+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	got := map[string]int{}
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got[from.(*net.UDPAddr).IP.String()]++
			mu.Unlock()
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		c := map[string]int{}
		for k, v := range got {
			c[k] = v
		}
		return c
	}
}
