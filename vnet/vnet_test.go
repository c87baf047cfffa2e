//go:build linux

package vnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
)

// TestOutbound: two slivers reach a server in the internet namespace, which
// sees the node's address (acceptance 1).
func TestOutbound(t *testing.T) {
	tp := newTopo(t, Config{})
	addr, seen := tp.server(0)
	host, port, _ := strings.Cut(addr, ":")
	for _, name := range []string{"site_a", "site_b"} {
		s := tp.sliver(name)
		a, err := tp.net.Attach(Sliver{Name: name, Pid: s.pid})
		if err != nil {
			t.Fatalf("Attach %s: %v", name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := s.run(ctx, "busybox", "nc", host, port)
		cancel()
		if err != nil || !strings.Contains(out, "you are "+nodeAddr+":") {
			t.Errorf("sliver %s (%s) to the internet: %q, %v; want the server to see %s", name, a.Addr, out, err, nodeAddr)
		}
		select {
		case ap := <-seen:
			if ap.Addr().String() != nodeAddr {
				t.Errorf("server saw %s, want %s", ap, nodeAddr)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("server saw no connection from %s", name)
		}
	}
	if got := len(tp.net.List()); got != 2 {
		t.Errorf("List = %d attachments, want 2", got)
	}
	for _, a := range tp.net.List() {
		if err := tp.net.Detach(a.Name); err != nil {
			t.Errorf("Detach %s: %v", a.Name, err)
		}
	}
}

func attach(t *testing.T, tp *topo, name string, ports ...string) (*fakeSliver, Attachment) {
	t.Helper()
	pr, err := ParsePorts(ports)
	if err != nil {
		t.Fatal(err)
	}
	s := tp.sliver(name)
	a, err := tp.net.Attach(Sliver{Name: name, Pid: s.pid, Ports: pr})
	if err != nil {
		t.Fatalf("Attach %s: %v", name, err)
	}
	return s, a
}

// listen runs a one-shot TCP server inside sliver s on port that answers
// with word.
func listen(t *testing.T, s *fakeSliver, port int, word string) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "nsenter", "-t", fmt.Sprint(s.pid), "-n", "-U", "--preserve-credentials", "--",
		"busybox", "sh", "-c", fmt.Sprintf("while true; do echo %s | busybox nc -l -p %d; done", word, port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
}

// ask connects to the node's address on port from the internet and returns
// the answer ("" when nobody answered).
func ask(t *testing.T, tp *topo, port int) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := tp.dial("tcp", fmt.Sprintf("%s:%d", nodeAddr, port))
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b, _ := io.ReadAll(c)
			c.Close()
			if s := strings.TrimSpace(string(b)); s != "" || time.Now().After(deadline) {
				return s
			}
		} else if time.Now().After(deadline) {
			return ""
		}
		// The sliver's server may not listen yet.
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReservedPorts: a reserved port reaches its slice; an unreserved port
// reaches nobody; slice B cannot take or intercept A's port (acceptance 2).
func TestReservedPorts(t *testing.T) {
	tp := newTopo(t, Config{})
	a, _ := attach(t, tp, "site_a", "tcp/8080", "udp/5353")
	b, _ := attach(t, tp, "site_b", "tcp/9000-9010")
	listen(t, a, 8080, "A")
	listen(t, b, 8080, "B") // B listens on A's port inside its own namespace
	listen(t, b, 9005, "B9005")
	listen(t, a, 8081, "A8081") // a port nobody reserved
	if got := ask(t, tp, 8080); got != "A" {
		t.Errorf("node:8080 (reserved by A) answered %q, want A", got)
	}
	if got := ask(t, tp, 9005); got != "B9005" {
		t.Errorf("node:9005 (in B's range) answered %q, want B9005", got)
	}
	if got := ask(t, tp, 8081); got != "" {
		t.Errorf("node:8081 (reserved by nobody) answered %q, want nobody", got)
	}
	// A reservation NAT could use is refused.
	s := tp.sliver("site_c")
	pr, _ := ParsePorts([]string{"tcp/50000"})
	if _, err := tp.net.Attach(Sliver{Name: "site_c", Pid: s.pid, Ports: pr}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Attach with a port in the NAT range = %v, want invalid", err)
	}
}

// TestSpoofing: raw packets a sliver sends with another source address
// never arrive; its own do (acceptance 3).
func TestSpoofing(t *testing.T) {
	tp := newTopo(t, Config{})
	a, aa := attach(t, tp, "site_a")
	_, ba := attach(t, tp, "site_b")
	port, count := tp.udpSink()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, src := range []string{ba.Addr.String(), "198.18.0.99", nodeAddr, "10.1.2.3", inetAddr} {
		if out, err := a.helper(ctx, "spoof", src, inetAddr, fmt.Sprint(port), "50").CombinedOutput(); err != nil {
			t.Fatalf("spoof from %s: %v: %s", src, err, out)
		}
	}
	// The sliver's own address goes through (NATed to the node's): the
	// path works, so the silence above is the filter's doing.
	if out, err := a.helper(ctx, "spoof", aa.Addr.String(), inetAddr, fmt.Sprint(port), "50").CombinedOutput(); err != nil {
		t.Fatalf("send from the own address: %v: %s", err, out)
	}
	deadline := time.Now().Add(3 * time.Second)
	for count()[nodeAddr] < 50 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := count()
	if got[nodeAddr] != 50 {
		t.Errorf("packets from the sliver's own address arrived %d times, want 50 (all: %v)", got[nodeAddr], got)
	}
	for src, n := range got {
		if src != nodeAddr {
			t.Errorf("%d spoofed packets arrived from %s", n, src)
		}
	}
}

// TestRawSockets: ping works from a sliver; a packet capture in sliver A
// never shows sliver B's packets (acceptance 4).
func TestRawSockets(t *testing.T) {
	tp := newTopo(t, Config{})
	a, aa := attach(t, tp, "site_a")
	b, ba := attach(t, tp, "site_b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := a.run(ctx, "busybox", "ping", "-c", "2", "-W", "2", inetAddr); err != nil || !strings.Contains(out, "2 packets received") {
		t.Fatalf("ping from a sliver: %v: %s", err, out)
	}
	capture := a.helper(ctx, "capture", "1500")
	var out strings.Builder
	capture.Stdout = &out
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	addr, _ := tp.server(0)
	host, port, _ := strings.Cut(addr, ":")
	for range 5 {
		if o, err := b.run(ctx, "busybox", "nc", host, port); err != nil {
			t.Fatalf("B to the server: %v: %s", err, o)
		}
	}
	b.run(ctx, "busybox", "ping", "-c", "2", "-W", "1", inetAddr)
	if err := capture.Wait(); err != nil {
		t.Fatalf("capture: %v: %s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "capturing") {
		t.Fatalf("capture did not run: %q", out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, ba.Addr.String()) {
			t.Errorf("sliver A saw sliver B's packet: %s", line)
		}
	}
	_ = aa
}

// TestCycles: after 200 attach/detach cycles nothing of plab remains but
// the table and qdisc Open made (acceptance 7); Cleanup removes those.
func TestCycles(t *testing.T) {
	tp := newTopo(t, Config{})
	base := tp.objects()
	s := tp.sliver("site_c")
	pr, _ := ParsePorts([]string{"tcp/80", "udp/9000-9010"})
	n := 200
	if testing.Short() {
		n = 20
	}
	for i := range n {
		if _, err := tp.net.Attach(Sliver{Name: "site_c", Pid: s.pid, Ports: pr, MinRate: 1e6}); err != nil {
			t.Fatalf("cycle %d: Attach: %v", i, err)
		}
		if err := tp.net.Detach("site_c"); err != nil {
			t.Fatalf("cycle %d: Detach: %v", i, err)
		}
	}
	if diff := cmp.Diff(base, tp.objects()); diff != "" {
		t.Errorf("after %d cycles the node holds (-before +after):\n%s", n, diff)
	}
	for _, set := range []string{"set slivers", "set own", "map tcp_ports", "map udp_ports", "map marks"} {
		kind, name, _ := strings.Cut(set, " ")
		out := sh(t, "ip", "netns", "exec", tp.node, "nft", "list", kind, "inet", "plab", name)
		if strings.Contains(out, "elements") {
			t.Errorf("set %s still has elements after the cycles:\n%s", set, out)
		}
	}
}

// TestIsolation: a sliver reaches neither another sliver (by its address or
// through the node's address on the other's reserved port) nor the node
// itself.
func TestIsolation(t *testing.T) {
	tp := newTopo(t, Config{})
	a, _ := attach(t, tp, "site_a")
	b, ba := attach(t, tp, "site_b", "tcp/8080")
	listen(t, b, 8080, "B")
	if got := ask(t, tp, 8080); got != "B" {
		t.Fatalf("node:8080 from the internet answered %q, want B (the path works)", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, target := range []string{ba.Addr.String(), nodeAddr, "169.254.0.1"} {
		out, err := a.run(ctx, "busybox", "nc", "-w", "2", target, "8080")
		if err == nil || strings.Contains(out, "B") {
			t.Errorf("sliver A reached %s:8080: %q, %v", target, out, err)
		}
	}
	if out, err := a.run(ctx, "busybox", "ping", "-c", "1", "-W", "1", ba.Addr.String()); err == nil {
		t.Errorf("sliver A pinged sliver B: %s", out)
	}
}

// TestAlarmingTraffic: ICMP echo requests and packets with IP options
// beyond a sliver's rate are dropped at the node.
func TestAlarmingTraffic(t *testing.T) {
	tp := newTopo(t, Config{EchoRate: 10, OptionsRate: 5})
	a, aa := attach(t, tp, "site_a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := a.helper(ctx, "echo", inetAddr, "200").CombinedOutput()
	if err != nil {
		t.Fatalf("echo flood: %v: %s", err, out)
	}
	var replies int
	fmt.Sscanf(strings.TrimSpace(string(out)), "replies %d", &replies)
	// A burst of 10 and 10 per second, over about a second: never 200.
	if replies == 0 || replies > 30 {
		t.Errorf("200 echo requests at once got %d replies; want some, at most the rate's 10/s and burst of 10", replies)
	}
	port, count := tp.udpSink()
	if out, err := a.helper(ctx, "options", aa.Addr.String(), inetAddr, fmt.Sprint(port), "100").CombinedOutput(); err != nil {
		t.Fatalf("options flood: %v: %s", err, out)
	}
	if out, err := a.helper(ctx, "spoof", aa.Addr.String(), inetAddr, fmt.Sprint(port), "20").CombinedOutput(); err != nil {
		t.Fatalf("plain packets: %v: %s", err, out)
	}
	deadline := time.Now().Add(3 * time.Second)
	for count()[nodeAddr] < 20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := count()[nodeAddr]; got < 20 || got > 20+15 {
		t.Errorf("100 packets with IP options and 20 plain ones delivered %d; want the 20 plain and at most a burst of the others", got)
	}
	t.Logf("echo replies %d of 200; packets delivered %d of 120", replies, count()[nodeAddr])
}
