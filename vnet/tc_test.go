//go:build linux

package vnet

import (
	"context"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Bandwidth tests: slivers flood TCP at once through a node whose uplink
// is capped; a sink in the internet namespace counts what each sliver's
// connection delivers over a window after a warm-up.

const (
	warmUp = time.Second
	window = 3 * time.Second
)

// TestTCRates: a sliver's class rates from its MinRate, MaxRate and the cap.
func TestTCRates(t *testing.T) {
	for _, c := range []struct {
		capacity, min, max int64
		rate, ceil         int64
	}{
		{100e6, 0, 0, 3051, 100e6},
		{100e6, 30e6, 0, 30e6, 100e6},
		{100e6, 0, 20e6, 3051, 20e6},
		{100e6, 30e6, 20e6, 20e6, 20e6}, // a guarantee above the ceiling is cut to it
		{100e6, 0, 200e6, 3051, 100e6},  // a ceiling above the cap is the cap
		{100e6, 0, 10, 3051, 3051},      // the floor is the least ceiling
		{1e9, 0, 0, 8000, 1e9},          // the floor is at most 8 kbit/s
		{1e6, 0, 0, 1000, 1e6},          // and at least 1 kbit/s
	} {
		rate, ceil := classRates(c.capacity, c.min, c.max)
		if rate != c.rate || ceil != c.ceil {
			t.Errorf("classRates(%d, %d, %d) = %d, %d; want %d, %d", c.capacity, c.min, c.max, rate, ceil, c.rate, c.ceil)
		}
	}
	// 4,096 slivers' floors fit in an eighth of any cap from 33 Mbit/s up.
	for _, capacity := range []int64{33e6, 100e6, 1e9, 10e9, 100e9} {
		if sum := 4096 * floor(capacity); sum > capacity/8 {
			t.Errorf("4096 floors at cap %d = %d, more than an eighth", capacity, sum)
		}
	}
}

// TestBandwidth is the acceptance of uplink sharing at a 100 Mbit/s cap.
func TestBandwidth(t *testing.T) {
	const capacity = 100e6
	for _, n := range []int{2, 4, 10} {
		t.Run(fmt.Sprintf("fair/%d", n), func(t *testing.T) {
			tp := newTopo(t, Config{Cap: capacity})
			var sinks []*sink
			for i := range n {
				sinks = append(sinks, tp.flood(tp.attach(Sliver{Name: fmt.Sprintf("site_s%d", i)})))
			}
			rates := measure(t, sinks)
			total, fair := sum(rates), sum(rates)/float64(n)
			t.Logf("%d slivers: %s Mbit/s, total %.1f, Jain %.4f", n, mbits(rates), total/1e6, jain(rates))
			for i, r := range rates {
				if math.Abs(r-fair) > 0.1*fair {
					t.Errorf("sliver %d: %.2f Mbit/s, want %.2f ±10%%", i, r/1e6, fair/1e6)
				}
			}
			if j := jain(rates); j < 0.98 {
				t.Errorf("Jain's index %.4f, want ≥ 0.98", j)
			}
			// What arrives is TCP payload: about 96% of what the cap counts.
			if total > capacity || total < 0.85*capacity {
				t.Errorf("total %.1f Mbit/s, want 85 to 100", total/1e6)
			}
		})
	}
	t.Run("guaranteed", func(t *testing.T) {
		tp := newTopo(t, Config{Cap: capacity})
		g := tp.flood(tp.attach(Sliver{Name: "site_g", MinRate: 30e6}))
		sinks := []*sink{g}
		for i := range 4 {
			sinks = append(sinks, tp.flood(tp.attach(Sliver{Name: fmt.Sprintf("site_b%d", i)})))
		}
		rates := measure(t, sinks)
		t.Logf("guaranteed 30 Mbit/s: %.2f Mbit/s; best effort: %s Mbit/s", rates[0]/1e6, mbits(rates[1:]))
		if rates[0] < 30e6 {
			t.Errorf("guaranteed sliver got %.2f Mbit/s, want ≥ 30", rates[0]/1e6)
		}
	})
	// The capped sliver's rate is checked each half second in frames as
	// its class counts them (4.7% more than payload), and in payload at
	// the sink over the window.
	t.Run("capped", func(t *testing.T) {
		tp := newTopo(t, Config{Cap: capacity})
		c := tp.flood(tp.attach(Sliver{Name: "site_c", MaxRate: 20e6}))
		o := tp.flood(tp.attach(Sliver{Name: "site_o"}))
		waitAll(t, []<-chan struct{}{c.first, o.first})
		s := sample([]func() int64{c.received, tp.classBytes("site_c"), o.received}, warmUp, window, 6)
		r := rates(s)
		t.Logf("capped at 20 Mbit/s: %.2f Mbit/s (each half second: %s; frames %s); beside it: %.2f Mbit/s",
			r[0]/1e6, mbits(s[0]), mbits(s[1]), r[2]/1e6)
		// Each half second by the class's own count (what the shaper let
		// through); the sink's payload over the whole window, as its
		// half-second samples jitter with the receiver's timing.
		for i := range s[1] {
			if s[1][i] > 1.05*20e6 {
				t.Errorf("capped sliver sent %.2f Mbit/s of frames in half a second, want ≤ 21", s[1][i]/1e6)
			}
		}
		if r[0] > 1.05*20e6 {
			t.Errorf("capped sliver delivered %.2f Mbit/s, want ≤ 21", r[0]/1e6)
		}
		if r[1] < 0.95*20e6 {
			t.Errorf("capped sliver sent %.2f Mbit/s of frames, want its ceiling, 20", r[1]/1e6)
		}
		if r[2] < 0.7*capacity {
			t.Errorf("the sliver beside it got %.2f Mbit/s, want the rest of the cap", r[2]/1e6)
		}
	})
	// What the node forwards to a capped sliver is limited at its host veth.
	t.Run("inbound", func(t *testing.T) {
		tp := newTopo(t, Config{Cap: capacity})
		s, _ := tp.attach(Sliver{Name: "site_c", MaxRate: 20e6})
		src := tp.source()
		tp.start(s, "busybox nc "+inetAddr+" "+src.port+" >/dev/null")
		waitAll(t, []<-chan struct{}{src.first})
		r := sample([]func() int64{tp.received("site_c")}, warmUp, window, 6)
		t.Logf("inbound capped at 20 Mbit/s: %.2f Mbit/s into the sliver (each half second: %s)", rates(r)[0]/1e6, mbits(r[0]))
		for _, x := range r[0] {
			if x > 1.05*20e6 {
				t.Errorf("capped sliver received %.2f Mbit/s in half a second, want ≤ 21", x/1e6)
			}
		}
		if x := rates(r)[0]; x < 0.8*20e6 {
			t.Errorf("capped sliver received %.2f Mbit/s, want about 20", x/1e6)
		}
	})
}

// attach starts a fake sliver and attaches it with s's name and rates.
func (tp *topo) attach(s Sliver) (*fakeSliver, Attachment) {
	tp.t.Helper()
	fs := tp.sliver(s.Name)
	s.Pid = fs.pid
	a, err := tp.net.Attach(s)
	if err != nil {
		tp.t.Fatalf("Attach %s: %v", s.Name, err)
	}
	return fs, a
}

// flood makes sliver s send zeros to a sink of its own as fast as it may.
func (tp *topo) flood(s *fakeSliver, _ Attachment) *sink {
	k := newSink(tp.t, tp.inetNS, false)
	tp.start(s, "busybox cat /dev/zero | busybox nc "+inetAddr+" "+k.port)
	return k
}

// start runs script with sh in sliver s, in a process group of its own
// killed at the end of the test.
func (tp *topo) start(s *fakeSliver, script string) {
	tp.t.Helper()
	startIn(tp.t, s.pid, script)
}

func startIn(tb testing.TB, pid int, script string) {
	tb.Helper()
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "-U", "--preserve-credentials", "--", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
}

// source is a server in the internet namespace that sends zeros to whoever
// connects.
func (tp *topo) source() *sink { return newSink(tp.t, tp.inetNS, true) }

// received counts the bytes the node forwarded into sliver name: IP
// packets (GSO ones count their headers once).
func (tp *topo) received(name string) func() int64 {
	return func() int64 {
		c, err := tp.net.Counters(name)
		if err != nil {
			tp.t.Error(err)
		}
		return int64(c.RxBytes)
	}
}

// classBytes counts the bytes sliver name's class sent: frames, HTB's
// count (GSO packets count the headers of each segment).
func (tp *topo) classBytes(name string) func() int64 {
	a, err := tp.net.Lookup(name)
	if err != nil {
		tp.t.Fatal(err)
	}
	return classBytes(tp.t, tp.net, tp.net.classID(a.Addr))
}

func classBytes(tb testing.TB, n *Net, id uint16) func() int64 {
	h := netlink.MakeHandle(1, id)
	return func() int64 {
		cs, err := n.h.ClassList(n.up, 0)
		if err != nil {
			tb.Error(err)
		}
		for _, c := range cs {
			if st := c.Attrs().Statistics; c.Attrs().Handle == h && st != nil && st.Basic != nil {
				return int64(st.Basic.Bytes)
			}
		}
		tb.Errorf("no class %s", netlink.HandleStr(h))
		return 0
	}
}

// sink is a TCP server in the internet namespace, one per sliver (behind
// the NAT they all share the node's address), that reads and counts what
// it receives, or when send is set, sends zeros.
type sink struct {
	port  string
	first chan struct{} // closed at the first byte (or connection)
	once  sync.Once
	mu    sync.Mutex
	conns []*net.TCPConn
}

func newSink(tb testing.TB, ns netns.NsHandle, send bool) *sink {
	tb.Helper()
	var ln *net.TCPListener
	err := inNS(ns, func() error {
		l, err := net.Listen("tcp", inetAddr+":0")
		if err == nil {
			ln = l.(*net.TCPListener)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	k := &sink{port: port, first: make(chan struct{})}
	tb.Cleanup(func() {
		ln.Close()
		k.mu.Lock()
		for _, c := range k.conns {
			c.Close()
		}
		k.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			k.mu.Lock()
			k.conns = append(k.conns, c)
			k.mu.Unlock()
			go k.serve(c, send)
		}
	}()
	return k
}

func (k *sink) serve(c net.Conn, send bool) {
	buf := make([]byte, 64<<10)
	if send {
		k.once.Do(func() { close(k.first) })
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			k.once.Do(func() { close(k.first) })
		}
		if err != nil {
			return // EOF, or a reset when the sender is killed
		}
	}
}

// received is the bytes the sink's kernel received in order (TCP_INFO),
// whether or not the sink has read them yet: a sink slow to read under
// load would move bytes from one window into the next.
func (k *sink) received() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n int64
	for _, c := range k.conns {
		rc, err := c.SyscallConn()
		if err != nil {
			continue
		}
		rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				n += int64(info.Bytes_received)
			}
		})
	}
	return n
}

// waitAll waits for every channel to close, at most 10 seconds.
func waitAll(tb testing.TB, chans []<-chan struct{}) {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for i, c := range chans {
		select {
		case <-c:
		case <-timeout:
			tb.Fatalf("flow %d did not start", i)
		}
	}
}

// measure returns each sink's rate, bits per second, over window after
// every sink received its first byte and warm-up passed.
func measure(tb testing.TB, sinks []*sink) []float64 {
	tb.Helper()
	var firsts []<-chan struct{}
	var counts []func() int64
	for _, k := range sinks {
		firsts = append(firsts, k.first)
		counts = append(counts, k.received)
	}
	waitAll(tb, firsts)
	return rates(sample(counts, warmUp, window, 1))
}

// sample reads each counter (of bytes) after warm, then steps times
// every win/steps, and returns each counter's rates, bits per second,
// over each step. Its sleeps are the measuring windows.
func sample(counts []func() int64, warm, win time.Duration, steps int) [][]float64 {
	time.Sleep(warm)
	last := make([]int64, len(counts))
	for i, c := range counts {
		last[i] = c()
	}
	out := make([][]float64, len(counts))
	t0 := time.Now()
	for range steps {
		time.Sleep(win / time.Duration(steps))
		secs := time.Since(t0).Seconds()
		t0 = time.Now()
		for i, c := range counts {
			v := c()
			out[i] = append(out[i], float64(v-last[i])*8/secs)
			last[i] = v
		}
	}
	return out
}

// rates averages each counter's steps.
func rates(samples [][]float64) []float64 {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = sum(s) / float64(len(s))
	}
	return out
}

// jain is Jain's fairness index of xs: 1 when all are equal, 1/n when
// one takes all.
func jain(xs []float64) float64 {
	var s, s2 float64
	for _, x := range xs {
		s += x
		s2 += x * x
	}
	if s2 == 0 {
		return 0
	}
	return s * s / (float64(len(xs)) * s2)
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

func mbits(xs []float64) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.2f", x/1e6)
	}
	return b.String()
}

// TestTCLifecycle follows the uplink's classes through Attach, a change
// of rates, a restart, Detach and Cleanup, and checks that nothing of
// tc is left.
func TestTCLifecycle(t *testing.T) {
	tp := newTopo(t, Config{Cap: 1e9})
	tp.wantClasses(map[string]string{"1:1": "rate 1Gbit ceil 1Gbit", "1:ffff": "rate 10Mbit ceil 1Gbit"})
	if got := tp.filters(); len(got) != 1 {
		t.Errorf("filters on up0: %q, want the one classifier", got)
	}

	sa, a := tp.attach(Sliver{Name: "site_a", MinRate: 10e6})
	sb, b := tp.attach(Sliver{Name: "site_b", MaxRate: 5e6})
	ida, idb := tp.classOf(a), tp.classOf(b)
	tp.wantClasses(map[string]string{"1:1": "", "1:ffff": "", ida: "rate 10Mbit ceil 1Gbit", idb: "ceil 5Mbit"})
	tp.wantLeaf(a, "limit 1Mb")
	tp.wantLeaf(b, "limit 256Kb")
	if q := sh(t, "tc", "-n", tp.node, "qdisc", "show", "dev", b.Host); !strings.Contains(q, "tbf 1: root") || !strings.Contains(q, "rate 5Mbit") {
		t.Errorf("qdisc of %s = %q, want a tbf at 5Mbit", b.Host, q)
	}

	// The classifier sends each sliver's packets to its class.
	addr, _ := tp.server(0)
	host, port, _ := strings.Cut(addr, ":")
	for _, s := range []*fakeSliver{sa, sb} {
		before := tp.classBytes(s.name)()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := s.run(ctx, "busybox", "nc", host, port)
		cancel()
		if err != nil || !strings.Contains(out, "you are") {
			t.Fatalf("sliver %s to the server: %q, %v", s.name, out, err)
		}
		if after := tp.classBytes(s.name)(); after <= before {
			t.Errorf("class of %s sent %d bytes, then %d: its packets went elsewhere", s.name, before, after)
		}
	}

	// New rates replace the old; a sliver without a ceiling loses its tbf.
	if _, err := tp.net.Attach(Sliver{Name: "site_b", Pid: sb.pid, MinRate: 2e6}); err != nil {
		t.Fatalf("Attach site_b again: %v", err)
	}
	tp.wantClasses(map[string]string{"1:1": "", "1:ffff": "", ida: "rate 10Mbit", idb: "rate 2Mbit ceil 1Gbit"})
	tp.wantLeaf(b, "limit 1Mb")
	if q := sh(t, "tc", "-n", tp.node, "qdisc", "show", "dev", b.Host); strings.Contains(q, "tbf") {
		t.Errorf("qdisc of %s = %q, want no tbf", b.Host, q)
	}

	// A restart keeps the classes of the slivers it adopts.
	tp.net.Close()
	var err error
	if tp.net, err = Open(tp.cfg); err != nil {
		t.Fatalf("Open again: %v", err)
	}
	tp.wantClasses(map[string]string{"1:1": "", "1:ffff": "", ida: "rate 10Mbit", idb: "rate 2Mbit"})
	if _, err := tp.net.Attach(Sliver{Name: "site_a", Pid: sa.pid, MinRate: 20e6}); err != nil {
		t.Fatalf("Attach adopted site_a: %v", err)
	}
	tp.wantClasses(map[string]string{"1:1": "", "1:ffff": "", ida: "rate 20Mbit", idb: "rate 2Mbit"})

	for _, name := range []string{"site_a", "site_b", "site_a"} {
		if err := tp.net.Detach(name); err != nil {
			t.Errorf("Detach %s: %v", name, err)
		}
	}
	tp.wantClasses(map[string]string{"1:1": "", "1:ffff": ""})

	// Cleanup removes the tree with slivers still attached.
	tp.attach(Sliver{Name: "site_c", MaxRate: 1e6})
	if err := Cleanup(tp.cfg); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	tp.wantClasses(map[string]string{})
	if got := tp.filters(); len(got) != 0 {
		t.Errorf("filters on up0 after Cleanup: %q", got)
	}
}

// TestTCUplink: Open replaces a root qdisc that is not plab's, and a node
// opened without a cap loses the tree a capped run left, and its slivers
// their inbound limits when attached again.
func TestTCUplink(t *testing.T) {
	tp := newTopo(t, Config{})
	sh(t, "tc", "-n", tp.node, "qdisc", "add", "dev", "up0", "root", "handle", "5:", "tbf", "rate", "1mbit", "burst", "10kb", "latency", "50ms")
	capped := tp.cfg
	capped.Cap = 1e9
	n, err := Open(capped)
	if err != nil {
		t.Fatalf("Open with a cap: %v", err)
	}
	if q := sh(t, "tc", "-n", tp.node, "qdisc", "show", "dev", "up0"); !strings.HasPrefix(q, "qdisc htb 1: root") || strings.Contains(q, "tbf") {
		t.Errorf("qdiscs of up0 = %q, want plab's htb alone", q)
	}
	tp.wantClasses(map[string]string{"1:1": "rate 1Gbit ceil 1Gbit", "1:ffff": "rate 10Mbit ceil 1Gbit"})
	s := tp.sliver("site_a")
	a, err := n.Attach(Sliver{Name: "site_a", Pid: s.pid, MaxRate: 5e6})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if q := sh(t, "tc", "-n", tp.node, "qdisc", "show", "dev", a.Host); !strings.Contains(q, "tbf") {
		t.Errorf("qdisc of %s = %q, want a tbf", a.Host, q)
	}
	n.Close()

	if n, err = Open(tp.cfg); err != nil {
		t.Fatalf("Open without a cap: %v", err)
	}
	defer n.Close()
	tp.wantClasses(map[string]string{})
	if q := sh(t, "tc", "-n", tp.node, "qdisc", "show", "dev", "up0"); strings.Contains(q, "htb") {
		t.Errorf("qdiscs of up0 = %q, want no htb", q)
	}
	if _, err := n.Attach(Sliver{Name: "site_a", Pid: s.pid, MaxRate: 5e6}); err != nil {
		t.Fatalf("Attach without a cap: %v", err)
	}
	if q := sh(t, "tc", "-n", tp.node, "qdisc", "show", "dev", a.Host); strings.Contains(q, "tbf") {
		t.Errorf("qdisc of %s = %q, want no tbf without a cap", a.Host, q)
	}
}

// wantLeaf checks that a's class queues in a bfifo with text in its line.
func (tp *topo) wantLeaf(a Attachment, text string) {
	tp.t.Helper()
	id := tp.classOf(a)
	for _, line := range lines(tp.t, "tc", "-n", tp.node, "qdisc", "show", "dev", "up0") {
		if strings.Contains(line, "parent "+id+" ") {
			if !strings.HasPrefix(line, "qdisc bfifo ") || !strings.Contains(line, text) {
				tp.t.Errorf("queue of class %s = %q, want a bfifo with %q", id, line, text)
			}
			return
		}
	}
	tp.t.Errorf("class %s has no queue of its own", id)
}

// classOf is the class of attachment a, as tc shows it.
func (tp *topo) classOf(a Attachment) string {
	return netlink.HandleStr(netlink.MakeHandle(1, tp.net.classID(a.Addr)))
}

// wantClasses checks that up0 has exactly the classes in want, each line
// containing its text.
func (tp *topo) wantClasses(want map[string]string) {
	tp.t.Helper()
	got := map[string]string{}
	for _, line := range lines(tp.t, "tc", "-n", tp.node, "class", "show", "dev", "up0") {
		if f := strings.Fields(line); len(f) > 2 {
			got[f[2]] = line
		}
	}
	for id, text := range want {
		if line, ok := got[id]; !ok {
			tp.t.Errorf("no class %s on up0", id)
		} else if !strings.Contains(line, text) {
			tp.t.Errorf("class %s = %q, want %q in it", id, line, text)
		}
	}
	for id, line := range got {
		if _, ok := want[id]; !ok {
			tp.t.Errorf("class %s left on up0: %q", id, line)
		}
	}
}

// filters lists the filters on up0's root.
func (tp *topo) filters() []string {
	var out []string
	for _, line := range lines(tp.t, "tc", "-n", tp.node, "filter", "show", "dev", "up0") {
		if strings.Contains(line, "handle") {
			out = append(out, line)
		}
	}
	return out
}
