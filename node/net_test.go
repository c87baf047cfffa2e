//go:build linux

package node

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/plab/plab/api"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/vnet"
)

// netTopo is a node namespace (uplink up0, 198.18.0.2) and an "internet"
// namespace (198.18.0.1) joined by a veth; nothing routes elsewhere.
type netTopo struct {
	node, inet string
	inetNS     netns.NsHandle
}

func newNetTopo(t *testing.T) *netTopo {
	t.Helper()
	testenv.RequireBinaries(t, "ip", "nft", "tc")
	id := fmt.Sprintf("%d-%d", os.Getpid(), backendSeq.Add(1))
	tp := &netTopo{node: "plabn-n" + id, inet: "plabn-i" + id}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{tp.node, tp.inet} {
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("link", "add", "up0", "netns", tp.node, "type", "veth", "peer", "name", "wan0", "netns", tp.inet)
	run("-n", tp.node, "addr", "add", "198.18.0.2/24", "dev", "up0")
	run("-n", tp.inet, "addr", "add", "198.18.0.1/24", "dev", "wan0")
	run("-n", tp.node, "link", "set", "up0", "up")
	run("-n", tp.inet, "link", "set", "wan0", "up")
	var err error
	if tp.inetNS, err = netns.GetFromName(tp.inet); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.inetNS.Close() })
	return tp
}

// listen opens a TCP listener in the internet namespace.
func (tp *netTopo) listen(t *testing.T) net.Listener {
	t.Helper()
	errc := make(chan error, 1)
	var ln net.Listener
	go func() {
		// A socket belongs to the namespace of the thread that made it.
		defer close(errc)
		if err := vnet.InNamespace(tp.inetNS, func() error {
			var err error
			ln, err = net.Listen("tcp", "198.18.0.1:0")
			return err
		}); err != nil {
			errc <- err
		}
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestSliverNetwork: a redeemed sliver (real runc) reaches the internet
// with the node's address, its reserved port reaches it from outside, its
// traffic is counted, and destroying it leaves nothing of its network.
func TestSliverNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	tp := newNetTopo(t)
	w := newWorld(t, worldOpts{cfg: Config{Uplink: "up0", NetNS: "/run/netns/" + tp.node, Resolvers: []string{"198.18.0.53"}}})
	n := w.node
	w.plc.Slice("ucb_web", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_web", n, api.Resources{Ports: []string{"tcp/8080"}})); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	ln := tp.listen(t)
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		seen <- c.RemoteAddr().String()
		fmt.Fprintln(c, "hello sliver")
		c.Close()
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var out strings.Builder
	code, err := n.backend.Exec(ctx, "ucb_web", sliver.ExecSpec{Args: []string{"sh", "-c", "nc 198.18.0.1 " + port + "; cat /etc/resolv.conf"}, Stdout: &out, Stderr: &out})
	if err != nil || code != 0 || !strings.Contains(out.String(), "hello sliver") || !strings.Contains(out.String(), "nameserver 198.18.0.53") {
		t.Fatalf("sliver to the internet = %d, %v: %q", code, err, out.String())
	}
	if from := <-seen; !strings.HasPrefix(from, "198.18.0.2:") {
		t.Errorf("the server saw %s, want the node's address 198.18.0.2", from)
	}

	// Inbound on the reserved port reaches the sliver.
	go n.backend.Exec(ctx, "ucb_web", sliver.ExecSpec{Args: []string{"sh", "-c", "echo inside | nc -l -p 8080"}})
	var answer string
	deadline := time.Now().Add(5 * time.Second)
	for answer == "" && time.Now().Before(deadline) {
		_ = vnet.InNamespace(tp.inetNS, func() error {
			c, err := net.DialTimeout("tcp", "198.18.0.2:8080", time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(time.Second))
			answer, _ = bufio.NewReader(c).ReadString('\n')
			return nil
		})
		if answer == "" {
			time.Sleep(50 * time.Millisecond) // the listener inside is starting
		}
	}
	if strings.TrimSpace(answer) != "inside" {
		t.Errorf("node:8080 answered %q, want the sliver's 'inside'", answer)
	}
	usage, _ := n.n.M.Usage(ctx)
	if len(usage) != 1 || usage[0].TxBytes == 0 || usage[0].RxBytes == 0 {
		t.Errorf("usage = %+v; want the sliver's traffic counted", usage)
	}

	// Destroying the sliver removes its network.
	if err := w.client(w.alice, n).Do(ctx, "DELETE", "/v1/slivers/ucb_web", nil, nil); err != nil {
		t.Fatal(err)
	}
	if links, _ := exec.Command("ip", "-n", tp.node, "-o", "link").Output(); strings.Count(string(links), "\n") != 2 {
		t.Errorf("links left in the node namespace:\n%s", links)
	}
	if rules, _ := exec.Command("ip", "netns", "exec", tp.node, "nft", "list", "map", "inet", "plab", "tcp_ports").Output(); strings.Contains(string(rules), "8080") {
		t.Errorf("the port reservation outlived the sliver:\n%s", rules)
	}
}
