//go:build linux

package vnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ti-mo/conntrack"

	"github.com/plab/plab/errdefs"
)

// TestFlowClassify: the attribution rule, without privileges.
func TestFlowClassify(t *testing.T) {
	sliverAddr, nodeA, remote := netip.MustParseAddr("100.64.0.17"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	sliverAt := func(a netip.Addr) string {
		if a == sliverAddr {
			return "site_web"
		}
		return ""
	}
	ct := func(osrc, odst netip.Addr, osp, odp uint16, rsrc, rdst netip.Addr, rsp, rdp uint16) *conntrack.Flow {
		f := conntrack.NewFlow(6, 0, osrc, odst, osp, odp, 0, 0)
		f.TupleReply.IP.SourceAddress, f.TupleReply.IP.DestinationAddress = rsrc, rdst
		f.TupleReply.Proto.SourcePort, f.TupleReply.Proto.DestinationPort = rsp, rdp
		f.CountersOrig = conntrack.Counter{Packets: 3, Bytes: 300}
		f.CountersReply = conntrack.Counter{Direction: true, Packets: 2, Bytes: 2000}
		return &f
	}
	ap := netip.AddrPortFrom
	for _, tc := range []struct {
		name string
		f    *conntrack.Flow
		want *Flow
	}{
		{"outbound, source NAT", ct(sliverAddr, remote, 40000, 80, remote, nodeA, 80, 50001),
			&Flow{Slice: "site_web", Proto: "tcp", Sliver: ap(sliverAddr, 40000), Node: ap(nodeA, 50001), Remote: ap(remote, 80),
				BytesOut: 300, PacketsOut: 3, BytesIn: 2000, PacketsIn: 2}},
		{"inbound, DNAT to a reserved port", ct(remote, nodeA, 5555, 8080, sliverAddr, remote, 8080, 5555),
			&Flow{Slice: "site_web", Proto: "tcp", Inbound: true, Sliver: ap(sliverAddr, 8080), Node: ap(nodeA, 8080), Remote: ap(remote, 5555),
				BytesOut: 2000, PacketsOut: 2, BytesIn: 300, PacketsIn: 3}},
		{"the node's own", ct(nodeA, remote, 40000, 80, remote, nodeA, 80, 40000), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, ok := classify(tc.f, sliverAt)
			if tc.want == nil {
				if ok {
					t.Fatalf("classify = %+v, want no slice", rec.Flow)
				}
				return
			}
			if !ok {
				t.Fatal("classify found no slice")
			}
			if diff := cmp.Diff(*tc.want, rec.Flow, cmpAddrs); diff != "" {
				t.Errorf("classify (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQueryFlowsErrors: a missing log and a missing address say so.
func TestQueryFlowsErrors(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FlowLogName)
	if _, err := QueryFlows(ctx, path, FlowQuery{Dst: netip.MustParseAddr("192.0.2.1")}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("QueryFlows(no log) = %v, want ErrNotFound", err)
	}
	if _, err := QueryFlows(ctx, path, FlowQuery{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("QueryFlows(no Dst) = %v, want ErrInvalid", err)
	}
}

// TestFlowAudit (acceptance): the flow audit names the right slice for
// each of 100 flows from four slivers: TCP and UDP, answered, refused
// and unanswered. Each flow has its own source port, so its slice is
// known; answered ones also tell which node port the server saw.
func TestFlowAudit(t *testing.T) {
	tp := newTopo(t, Config{})
	fl, path := tp.flowLog()
	tcpSrv := tp.greetServer()
	udpSrv := tp.greetUDPServer()
	const closedTCP, closedUDP = inetAddr + ":9", inetAddr + ":10"

	type key struct {
		proto  string
		sliver netip.AddrPort
	}
	type want struct {
		slice    string
		remote   string
		seen     netip.AddrPort // the node's end as the server saw it; zero: no answer
		answered bool
	}
	var slivers []*flowSliver
	for _, name := range []string{"audit_a", "audit_b", "audit_c", "audit_d"} {
		slivers = append(slivers, tp.flowSliver(name, nil))
	}
	wants := map[key]want{}
	begin := time.Now()
	for i := range 100 {
		s := slivers[i%len(slivers)]
		port := uint16(20000 + i)
		proto, remote := "tcp", tcpSrv
		switch i % 5 {
		case 2:
			proto, remote = "udp", udpSrv
		case 3:
			remote = closedTCP
		case 4:
			proto, remote = "udp", closedUDP
		}
		w := want{slice: s.name, remote: remote}
		c, err := s.dial(proto, port, remote)
		switch {
		case remote == closedTCP:
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("flow %d: dial %s = %v, want connection refused", i, remote, err)
			}
		case err != nil:
			t.Fatalf("flow %d: dial %s %s: %v", i, proto, remote, err)
		case remote == closedUDP:
			if _, err := c.Write([]byte("anyone?\n")); err != nil {
				t.Fatal(err)
			}
			c.Close()
		default:
			w.seen, w.answered = converse(t, c), true
		}
		wants[key{proto, netip.AddrPortFrom(s.addr, port)}] = w
	}

	dst := netip.MustParseAddr(inetAddr)
	var flows []Flow
	flowsEventually(t, "100 flows in the log", func() error {
		var err error
		flows, err = QueryFlows(t.Context(), path, FlowQuery{Dst: dst})
		if err == nil && len(flows) < 100 {
			err = fmt.Errorf("%d flows", len(flows))
		}
		return err
	})
	check := func(flows []Flow, ended bool) {
		t.Helper()
		got := map[key]bool{}
		for _, f := range flows {
			k := key{f.Proto, f.Sliver}
			w, ok := wants[k]
			switch {
			case !ok:
				t.Errorf("flow %+v: no test flow made it", f)
				continue
			case got[k]:
				t.Errorf("flow %s %s recorded twice", k.proto, k.sliver)
			case f.Slice != w.slice:
				t.Errorf("flow %s %s → %s: slice %q, want %q", k.proto, k.sliver, f.Remote, f.Slice, w.slice)
			case f.Remote.String() != w.remote || f.Inbound:
				t.Errorf("flow %s %s: remote %s (inbound %v), want %s outbound", k.proto, k.sliver, f.Remote, f.Inbound, w.remote)
			case f.Node.Addr().String() != nodeAddr || w.answered && f.Node != w.seen:
				t.Errorf("flow %s %s: node end %s, but the server saw %s", k.proto, k.sliver, f.Node, w.seen)
			case f.Start.Before(begin.Add(-time.Second)) || f.Start.After(time.Now()):
				t.Errorf("flow %s %s: start %s, want after %s", k.proto, k.sliver, f.Start, begin)
			case ended && (f.End.Before(f.Start) || f.Missed || f.PacketsOut == 0):
				t.Errorf("flow %s %s: ended %s (missed %v) after start %s with %d packets out", k.proto, k.sliver, f.End, f.Missed, f.Start, f.PacketsOut)
			case ended && w.answered && (f.BytesIn == 0 || f.BytesOut == 0):
				t.Errorf("flow %s %s: %d bytes out, %d in; want both", k.proto, k.sliver, f.BytesOut, f.BytesIn)
			}
			got[k] = true
		}
		if len(got) != len(wants) {
			t.Errorf("the log has %d of the %d test flows", len(got), len(wants))
		}
	}
	check(flows, false)

	// The port narrows the search: the 20 refused SYNs.
	refused, err := QueryFlows(t.Context(), path, FlowQuery{Dst: dst, Port: 9})
	if err != nil || len(refused) != 20 {
		t.Errorf("QueryFlows(port 9) = %d flows, %v; want the 20 refused", len(refused), err)
	}

	// Ending the flows records their ends and counters.
	tp.conntrack(func(c *conntrack.Conn) error { return c.Flush() })
	flowsEventually(t, "every flow ended", func() error {
		flows, err = QueryFlows(t.Context(), path, FlowQuery{Dst: dst})
		for _, f := range flows {
			if f.End.IsZero() && err == nil {
				err = fmt.Errorf("%s %s → %s still open", f.Proto, f.Sliver, f.Remote)
			}
		}
		return err
	})
	check(flows, true)
	if later, err := QueryFlows(t.Context(), path, FlowQuery{Dst: dst, Since: time.Now().Add(time.Second)}); err != nil || len(later) != 0 {
		t.Errorf("QueryFlows(since after the end) = %d flows, %v; want none", len(later), err)
	}
	if other, err := QueryFlows(t.Context(), path, FlowQuery{Dst: netip.MustParseAddr("192.0.2.1")}); err != nil || len(other) != 0 {
		t.Errorf("QueryFlows(another address) = %d flows, %v; want none", len(other), err)
	}
	if n := fl.Overflows(); n != 0 {
		t.Errorf("Overflows = %d, want 0", n)
	}
}

// TestFlowInbound: traffic to a reserved port is the reserving slice's.
func TestFlowInbound(t *testing.T) {
	tp := newTopo(t, Config{})
	_, path := tp.flowLog()
	tp.flowSliver("in_bystander", nil)
	s := tp.flowSliver("in_web", []PortRange{{Proto: "tcp", Lo: 8080, High: 8080}, {Proto: "udp", Lo: 8081, High: 8081}})
	s.serve(t)

	var remotes []netip.AddrPort
	for _, network := range []string{"tcp", "udp"} {
		port := map[string]int{"tcp": 8080, "udp": 8081}[network]
		var c net.Conn
		err := inNS(tp.inetNS, func() (err error) {
			c, err = net.DialTimeout(network, fmt.Sprintf("%s:%d", nodeAddr, port), 5*time.Second)
			return err
		})
		if err != nil {
			t.Fatalf("dial the reserved port %s/%d: %v", network, port, err)
		}
		remotes = append(remotes, netip.MustParseAddrPort(c.LocalAddr().String()))
		if seen := converse(t, c); seen.Addr().String() != inetAddr {
			t.Errorf("the sliver saw %s, want the remote %s", seen, inetAddr)
		}
	}
	for i, r := range remotes {
		proto, port := []string{"tcp", "udp"}[i], uint16(8080+i)
		var flows []Flow
		flowsEventually(t, "the inbound "+proto+" flow in the log", func() error {
			var err error
			flows, err = QueryFlows(t.Context(), path, FlowQuery{Dst: r.Addr(), Port: r.Port()})
			if err == nil && len(flows) == 0 {
				err = errors.New("none yet")
			}
			return err
		})
		want := []Flow{{Slice: "in_web", Proto: proto, Inbound: true, Sliver: netip.AddrPortFrom(s.addr, port),
			Node: netip.MustParseAddrPort(fmt.Sprintf("%s:%d", nodeAddr, port)), Remote: r}}
		if diff := cmp.Diff(want, flows, cmpFlowIdentity, cmpAddrs); diff != "" {
			t.Errorf("QueryFlows(%s) (-want +got):\n%s", r, diff)
		}
	}
}

// TestFlowForget: forgetting a sliver's address ends its flows, both
// ways, and no other sliver's.
func TestFlowForget(t *testing.T) {
	tp := newTopo(t, Config{})
	_, path := tp.flowLog()
	srv := tp.greetServer()
	gone := tp.flowSliver("fg_gone", []PortRange{{Proto: "tcp", Lo: 8080, High: 8080}})
	gone.serve(t)
	stays := tp.flowSliver("fg_stays", nil)
	greeted(t, gone.mustDial(t, "tcp", 23000, srv))
	greeted(t, stays.mustDial(t, "tcp", 23001, srv))
	var in net.Conn
	if err := inNS(tp.inetNS, func() (err error) { in, err = net.Dial("tcp", nodeAddr+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	greeted(t, in)

	dst := netip.MustParseAddr(inetAddr)
	open := func() (map[string]int, error) {
		flows, err := QueryFlows(t.Context(), path, FlowQuery{Dst: dst})
		m := map[string]int{}
		for _, f := range flows {
			if f.End.IsZero() {
				m[f.Slice]++
			}
		}
		return m, err
	}
	flowsEventually(t, "three open flows", func() error {
		m, err := open()
		if err == nil && (m["fg_gone"] != 2 || m["fg_stays"] != 1) {
			err = fmt.Errorf("open flows by slice: %v", m)
		}
		return err
	})
	if err := tp.net.forgetFlows(gone.addr); err != nil {
		t.Fatalf("forgetFlows: %v", err)
	}
	flowsEventually(t, "the forgotten flows ended", func() error {
		m, err := open()
		if err == nil && (m["fg_gone"] != 0 || m["fg_stays"] != 1) {
			err = fmt.Errorf("open flows by slice: %v", m)
		}
		return err
	})
}

// TestFlowRetention: flows that ended longer ago than the retention go;
// open ones stay, however old.
func TestFlowRetention(t *testing.T) {
	tp := newTopo(t, Config{})
	path := filepath.Join(t.TempDir(), FlowLogName)
	fl, err := tp.net.StartFlowLog(t.Context(), path, time.Second)
	if err != nil {
		t.Fatalf("StartFlowLog: %v", err)
	}
	t.Cleanup(func() { fl.Close() })
	tcpSrv := tp.greetServer()
	udpSrv := tp.greetUDPServer()
	s := tp.flowSliver("ret_a", nil)
	open := s.mustDial(t, "tcp", 21000, tcpSrv) // stays open
	greeted(t, open)
	short := s.mustDial(t, "udp", 21001, udpSrv)
	converse(t, short)

	dst := netip.MustParseAddr(inetAddr)
	ports := func() (map[uint16]Flow, error) {
		flows, err := QueryFlows(t.Context(), path, FlowQuery{Dst: dst})
		m := map[uint16]Flow{}
		for _, f := range flows {
			m[f.Sliver.Port()] = f
		}
		return m, err
	}
	flowsEventually(t, "both flows in the log", func() error {
		m, err := ports()
		if err == nil && len(m) != 2 {
			err = fmt.Errorf("%d flows", len(m))
		}
		return err
	})
	tp.ctDelete(func(f conntrack.Flow) bool { return f.TupleOrig.Proto.SourcePort == 21001 })
	flowsEventually(t, "the ended flow expired", func() error {
		m, err := ports()
		if _, ok := m[21001]; ok && err == nil {
			err = fmt.Errorf("still there: %+v", m[21001])
		}
		return err
	})
	m, err := ports()
	if f, ok := m[21000]; err != nil || !ok || !f.End.IsZero() {
		t.Errorf("the open flow: %+v, %v; want it kept, open", f, err)
	}
}

// TestFlowRestart: a new FlowLog on the same file keeps the records, and
// catches up: flows that ended meanwhile are closed as missed, flows
// begun meanwhile are added.
func TestFlowRestart(t *testing.T) {
	tp := newTopo(t, Config{})
	path := filepath.Join(t.TempDir(), FlowLogName)
	fl, err := tp.net.StartFlowLog(t.Context(), path, 0)
	if err != nil {
		t.Fatalf("StartFlowLog: %v", err)
	}
	tcpSrv := tp.greetServer()
	udpSrv := tp.greetUDPServer()
	a, b := tp.flowSliver("rs_a", nil), tp.flowSliver("rs_b", nil)
	converse(t, a.mustDial(t, "udp", 22000, udpSrv))
	greeted(t, a.mustDial(t, "tcp", 22001, tcpSrv)) // open throughout
	greeted(t, b.mustDial(t, "tcp", 22002, tcpSrv)) // ends while the log is down

	dst := netip.MustParseAddr(inetAddr)
	byPort := func() map[uint16]Flow {
		t.Helper()
		flows, err := QueryFlows(t.Context(), path, FlowQuery{Dst: dst})
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint16]Flow{}
		for _, f := range flows {
			if _, dup := m[f.Sliver.Port()]; dup {
				t.Errorf("flow from port %d recorded twice", f.Sliver.Port())
			}
			m[f.Sliver.Port()] = f
		}
		return m
	}
	flowsEventually(t, "three flows in the log", func() error {
		if n := len(byPort()); n != 3 {
			return fmt.Errorf("%d flows", n)
		}
		return nil
	})
	fl.Close()
	if n := len(byPort()); n != 3 {
		t.Errorf("the stopped log shows %d flows, want 3", n)
	}

	tp.ctDelete(func(f conntrack.Flow) bool { return f.TupleOrig.Proto.SourcePort == 22002 })
	greeted(t, b.mustDial(t, "tcp", 22003, tcpSrv)) // begins while the log is down

	fl, err = tp.net.StartFlowLog(t.Context(), path, 0)
	if err != nil {
		t.Fatalf("StartFlowLog again: %v", err)
	}
	t.Cleanup(func() { fl.Close() })
	m := byPort()
	for _, c := range []struct {
		port   uint16
		slice  string
		open   bool
		missed bool
	}{{22000, "rs_a", true, false}, {22001, "rs_a", true, false}, {22002, "rs_b", false, true}, {22003, "rs_b", true, false}} {
		f, ok := m[c.port]
		if !ok {
			t.Errorf("flow from port %d: not in the log after the restart", c.port)
			continue
		}
		if f.Slice != c.slice || f.End.IsZero() != c.open || f.Missed != c.missed {
			t.Errorf("flow from port %d: slice %s, end %s, missed %v; want slice %s, open %v, missed %v",
				c.port, f.Slice, f.End, f.Missed, c.slice, c.open, c.missed)
		}
	}
	if len(m) != 4 {
		t.Errorf("after the restart the log has %d flows, want 4", len(m))
	}
}

// TestFlowOverflow: when the event socket overflows, the log counts it,
// carries on, and finds the flows it missed in the conntrack table.
func TestFlowOverflow(t *testing.T) {
	tp := newTopo(t, Config{})
	path := filepath.Join(t.TempDir(), FlowLogName)
	// A tiny socket buffer and queue; the test holds the writer up.
	fl, err := tp.net.startFlowLog(t.Context(), flowLogOptions{path: path, retention: time.Hour, rcvbuf: 1, queue: 4})
	if err != nil {
		t.Fatalf("startFlowLog: %v", err)
	}
	t.Cleanup(func() { fl.Close() })
	s := tp.flowSliver("ovf_a", nil)
	const n = 500
	tp.net.mu.Lock() // attribution waits: so does the writer
	tp.conntrack(func(c *conntrack.Conn) error {
		for i := range n {
			if err := c.Create(conntrack.NewFlow(17, 0, s.addr, netip.MustParseAddr(inetAddr), uint16(30000+i), 53, 120, 0)); err != nil {
				return err
			}
		}
		return nil
	})
	tp.net.mu.Unlock()
	flowsEventually(t, "all flows in the log", func() error {
		flows, err := QueryFlows(t.Context(), path, FlowQuery{Dst: netip.MustParseAddr(inetAddr), Port: 53})
		seen := map[uint16]bool{}
		for _, f := range flows {
			if f.Slice != s.name || seen[f.Sliver.Port()] {
				return fmt.Errorf("flow %+v: wrong slice or twice", f)
			}
			seen[f.Sliver.Port()] = true
		}
		if err == nil && len(seen) != n {
			err = fmt.Errorf("%d of %d flows", len(seen), n)
		}
		return err
	})
	if fl.Overflows() == 0 {
		t.Error("Overflows = 0; the event socket should have overflowed")
	}
}

// cmpAddrs lets cmp compare addresses.
var cmpAddrs = cmpopts.EquateComparable(netip.AddrPort{})

// cmpFlowIdentity compares flows by who, what and where, not when or how much.
var cmpFlowIdentity = cmp.Transformer("identity", func(f Flow) Flow {
	return Flow{Slice: f.Slice, Proto: f.Proto, Inbound: f.Inbound, Sliver: f.Sliver, Node: f.Node, Remote: f.Remote}
})

// flowsEventually polls cond until it returns nil, failing t after a deadline.
func flowsEventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// flowSliver is an attached fake sliver that tests open sockets in.
type flowSliver struct {
	*fakeSliver
	t    *testing.T
	addr netip.Addr
}

func (tp *topo) flowSliver(name string, ports []PortRange) *flowSliver {
	t := tp.t
	t.Helper()
	s := tp.sliver(name)
	a, err := tp.net.Attach(Sliver{Name: name, Pid: s.pid, Ports: ports})
	if err != nil {
		t.Fatalf("Attach %s: %v", name, err)
	}
	return &flowSliver{fakeSliver: s, t: t, addr: a.Addr}
}

// in runs fn in the sliver's network namespace: sockets it opens stay there.
func (s *flowSliver) in(fn func() error) error {
	ns, err := pidNS(s.pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	return inNS(ns, fn)
}

// dial connects from the sliver's port to remote.
func (s *flowSliver) dial(network string, port uint16, remote string) (net.Conn, error) {
	var c net.Conn
	err := s.in(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		if network == "tcp" {
			d.LocalAddr = &net.TCPAddr{Port: int(port)}
		} else {
			d.LocalAddr = &net.UDPAddr{Port: int(port)}
		}
		c, err = d.Dial(network, remote)
		return err
	})
	if err == nil {
		s.t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (s *flowSliver) mustDial(t *testing.T, network string, port uint16, remote string) net.Conn {
	t.Helper()
	c, err := s.dial(network, port, remote)
	if err != nil {
		t.Fatalf("sliver %s: dial %s %s: %v", s.name, network, remote, err)
	}
	return c
}

// serve answers, in the sliver, TCP on 8080 and UDP on 8081 with the
// address each client came from.
func (s *flowSliver) serve(t *testing.T) {
	var ln net.Listener
	var pc net.PacketConn
	err := s.in(func() (err error) {
		if ln, err = net.Listen("tcp", ":8080"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", ":8081")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go greetLoop(ln)
	go greetPackets(pc)
}

// greetServer greets each connection, in the internet namespace, with the
// address it came from, and keeps it until the client says goodbye.
func (tp *topo) greetServer() string {
	var ln net.Listener
	err := inNS(tp.inetNS, func() (err error) {
		ln, err = net.Listen("tcp", inetAddr+":0")
		return err
	})
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { ln.Close() })
	go greetLoop(ln)
	return ln.Addr().String()
}

// greetUDPServer answers each datagram, in the internet namespace, with the
// address it came from.
func (tp *topo) greetUDPServer() string {
	var pc net.PacketConn
	err := inNS(tp.inetNS, func() (err error) {
		pc, err = net.ListenPacket("udp", inetAddr+":0")
		return err
	})
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { pc.Close() })
	go greetPackets(pc)
	return pc.LocalAddr().String()
}

func greetLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			fmt.Fprintf(c, "you are %s\n", c.RemoteAddr())
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		}()
	}
}

func greetPackets(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte("you are "+from.String()+"\n"), from)
	}
}

// greeted reads the server's greeting on c (the address it saw) and
// leaves c open.
func greeted(t *testing.T, c net.Conn) netip.AddrPort {
	t.Helper()
	if _, ok := c.(*net.UDPConn); ok {
		if _, err := c.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	seen, perr := netip.ParseAddrPort(strings.TrimSpace(strings.TrimPrefix(line, "you are ")))
	if err != nil || perr != nil {
		t.Fatalf("%s → %s: read %q, %v", c.LocalAddr(), c.RemoteAddr(), line, err)
	}
	return seen
}

// converse reads the greeting, says goodbye and closes c.
func converse(t *testing.T, c net.Conn) netip.AddrPort {
	t.Helper()
	seen := greeted(t, c)
	if _, ok := c.(*net.TCPConn); ok {
		fmt.Fprintln(c, "bye")
	}
	c.Close()
	return seen
}

// conntrack runs fn with a conntrack socket in the node's namespace.
func (tp *topo) conntrack(fn func(*conntrack.Conn) error) {
	tp.t.Helper()
	err := inNS(tp.net.ns, func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(c)
	})
	if err != nil {
		tp.t.Fatalf("conntrack: %v", err)
	}
}

// ctDelete deletes the node's conntrack entries that match.
func (tp *topo) ctDelete(match func(conntrack.Flow) bool) {
	tp.t.Helper()
	tp.conntrack(func(c *conntrack.Conn) error {
		flows, err := c.Dump(nil)
		if err != nil {
			return err
		}
		n := 0
		for _, f := range flows {
			if match(f) {
				if err := c.Delete(f); err != nil {
					return err
				}
				n++
			}
		}
		if n == 0 {
			return errors.New("no entry matched")
		}
		return nil
	})
}

// flowLog starts a flow log on the test node, closed when the test ends.
func (tp *topo) flowLog() (*FlowLog, string) {
	tp.t.Helper()
	path := filepath.Join(tp.t.TempDir(), FlowLogName)
	fl, err := tp.net.StartFlowLog(tp.t.Context(), path, 0)
	if err != nil {
		tp.t.Fatalf("StartFlowLog: %v", err)
	}
	tp.t.Cleanup(func() { fl.Close() })
	return fl, path
}
