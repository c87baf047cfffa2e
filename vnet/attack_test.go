//go:build linux

package vnet

// Attacks on sliver networking, as a sliver's root would make them (root
// in its own user and network namespaces: CAP_NET_RAW and CAP_NET_ADMIN
// over its netns, no more) and as an attacker on the internet side would.
// Each test names the attack and the property of DESIGN.md it checks; each
// fails when the property is broken, and shows first that the path it
// checks works, so a silence is the node's doing. Five found holes, since
// closed: forged sliver sources relayed from the uplink (and blamed on a
// slice in the flow log), link-local destinations forwarded, a refused
// Attach deleting another slice's reservation, SCTP and UDP-Lite leaving
// with source ports the sliver does not own, and slivers filling the
// node's neighbour table.
//
// Raw packets are built here and sent from inside a sliver by the test
// binary itself, run there as an "attack-" job (see attackHelper).

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// init runs the attack jobs: PLAB_VNET_HELPER=attack-... (TestMain, in
// helper_test.go, knows only its own jobs; init runs before it).
func init() {
	job := os.Getenv("PLAB_VNET_HELPER")
	if !strings.HasPrefix(job, "attack-") {
		return
	}
	if err := attackHelper(job, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func attackHelper(job string, args []string) error {
	switch job {
	case "attack-ip": // COUNT HEX...: send each IPv4 packet as it is (IP_HDRINCL)
		count, _ := strconv.Atoi(args[0])
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		for range count {
			for _, h := range args[1:] {
				pkt, err := hex.DecodeString(h)
				if err != nil {
					return err
				}
				to := &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
				if err := unix.Sendto(fd, pkt, 0, to); err != nil {
					return fmt.Errorf("send: %w", err)
				}
			}
		}
		return nil
	case "attack-frame": // IFACE COUNT HEX...: send each Ethernet frame as it is
		ifc, err := net.InterfaceByName(args[0])
		if err != nil {
			return err
		}
		count, _ := strconv.Atoi(args[1])
		var frames [][]byte
		for _, h := range args[2:] {
			f, err := hex.DecodeString(h)
			if err != nil {
				return err
			}
			frames = append(frames, f)
		}
		return sendFrames(ifc.Index, count, frames)
	}
	return fmt.Errorf("unknown attack job %q", job)
}

// sendFrames sends Ethernet frames on interface ifindex with a packet
// socket of the calling thread's namespace.
func sendFrames(ifindex, count int, frames [][]byte) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	for range count {
		for _, f := range frames {
			to := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6, Protocol: htons(unix.ETH_P_ALL)}
			copy(to.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
		}
	}
	return nil
}

// atkSend runs an attack job in sliver s.
func atkSend(t *testing.T, s *fakeSliver, job string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := s.helper(ctx, job, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s in %s: %v: %s", job, s.name, err, out)
	}
}

// atkIn runs fn on a thread in sliver s's network namespace: what fn
// opens there stays there (a socket is a socket, whoever opened it).
func atkIn(s *fakeSliver, fn func() error) error {
	ns, err := pidNS(s.pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	return inNS(ns, fn)
}

// atkRun runs a command as the root of sliver s and fails t if it fails.
func atkRun(t *testing.T, s *fakeSliver, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.run(ctx, args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", s.name, strings.Join(args, " "), err, out)
	}
	return out
}

// atkMAC is the MAC address of link name in sliver s.
func atkMAC(t *testing.T, s *fakeSliver, name string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := atkIn(s, func() error {
		ifc, err := net.InterfaceByName(name)
		if err == nil {
			mac = ifc.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// atkUDP sends n datagrams saying payload from src (an address of sliver
// s; unspecified: the kernel's choice) to dst.
func atkUDP(t *testing.T, s *fakeSliver, src, dst, payload string, n int) {
	t.Helper()
	err := atkIn(s, func() error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		raddr, err := net.ResolveUDPAddr("udp", dst)
		if err != nil {
			return err
		}
		c, err := net.DialUDP("udp", laddr, raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			c.Write([]byte(payload)) // refused (ICMP) or not, it was sent
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: udp from %q to %s: %v", s.name, src, dst, err)
	}
}

// atkPayloads is a UDP socket, opened by in (a namespace) at addr, that counts
// the datagrams it gets by payload ("payload from source-address").
func atkPayloads(t *testing.T, in func(func() error) error, addr string) (port int, got func() map[string]int) {
	t.Helper()
	var pc net.PacketConn
	if err := in(func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	seen := map[string]int{}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			seen[string(buf[:n])+" from "+from.(*net.UDPAddr).IP.String()]++
			mu.Unlock()
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		c := map[string]int{}
		for k, v := range seen {
			c[k] = v
		}
		return c
	}
}

// atkWait polls cond for up to 5 seconds.
func atkWait(cond func() bool) bool {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// atkWord connects to addr from inside in (a namespace) and returns what
// the server says ("" for nobody, within a second or two).
func atkWord(in func(func() error) error, network, addr string) string {
	var out string
	in(func() error {
		c, err := net.DialTimeout(network, addr, 1500*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(1500 * time.Millisecond))
		b, _ := io.ReadAll(c)
		out = strings.TrimSpace(string(b))
		return nil
	})
	return out
}

// atkServe answers each TCP connection in namespace in at addr with word.
func atkServe(t *testing.T, in func(func() error) error, addr, word string) {
	t.Helper()
	var ln net.Listener
	if err := in(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, word)
			c.Close()
		}
	}()
}

func (tp *topo) inInet(fn func() error) error { return inNS(tp.inetNS, fn) }
func (tp *topo) inNode(fn func() error) error { return inNS(tp.net.ns, fn) }
func atkSliverNS(s *fakeSliver) func(func() error) error {
	return func(fn func() error) error { return atkIn(s, fn) }
}

// Packet building.

func atkIPv4(src, dst netip.Addr, proto uint8, id, frag uint16, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[6:], frag)
	p[8] = 64
	p[9] = proto
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:], icmpChecksum(p[:20]))
	copy(p[20:], payload)
	return p
}

// atkUDPSeg is a UDP header and payload (checksum zero: none).
func atkUDPSeg(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	return u
}

// atkSCTPInit is an SCTP packet with one INIT chunk.
func atkSCTPInit(sport, dport uint16) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 1                                      // INIT
	binary.BigEndian.PutUint16(b[14:], 20)         // chunk length
	binary.BigEndian.PutUint32(b[16:], 0x1234abcd) // initiate tag
	binary.BigEndian.PutUint32(b[20:], 65536)      // a_rwnd
	binary.BigEndian.PutUint16(b[24:], 1)          // outbound streams
	binary.BigEndian.PutUint16(b[26:], 1)          // inbound streams
	binary.BigEndian.PutUint32(b[28:], 0x01020304) // initial TSN
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// atkUDPLite is a UDP-Lite datagram covering all of itself. Its checksum
// is the one the node's conntrack verifies (and drops the packet as invalid
// otherwise): observed here, it sums UDP-Lite with UDP's protocol number
// (17) in the pseudo-header, not UDP-Lite's (136).
func atkUDPLite(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	// coverage 0: the whole datagram
	copy(u[8:], payload)
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_UDP, byte(len(u)>>8), byte(len(u)))
	sum := icmpChecksum(append(pseudo, u...))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], sum)
	return u
}

func atkEther(dst, src net.HardwareAddr, etype uint16, payload []byte) []byte {
	f := append(append(append([]byte{}, dst...), src...), byte(etype>>8), byte(etype))
	return append(f, payload...)
}

// atkARP is an ARP packet (op 1 request, 2 reply) for IPv4 over Ethernet.
func atkARP(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	s, d := spa.As4(), tpa.As4()
	b = append(append(b, sha...), s[:]...)
	return append(append(b, tha...), d[:]...)
}

var atkBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func hexes(pkts ...[]byte) []string {
	var out []string
	for _, p := range pkts {
		out = append(out, hex.EncodeToString(p))
	}
	return out
}

// TestAttackAddressTakeover: a sliver's root gives its eth0 another
// sliver's address, the node's, an unallocated pool address and an
// outside one, and sends from each with ordinary sockets. Property:
// nothing from an address it does not hold leaves the node, and the
// other sliver keeps its inbound reserved port.
func TestAttackAddressTakeover(t *testing.T) {
	tp := newTopo(t, Config{})
	a, aa := attach(t, tp, "site_a")
	b, ba := attach(t, tp, "site_b", "tcp/8080")
	listen(t, b, 8080, "B")
	port, got := atkPayloads(t, tp.inInet, inetAddr+":0")
	sink := fmt.Sprintf("%s:%d", inetAddr, port)
	stolen := []string{ba.Addr.String(), nodeAddr, "100.64.0.200", "198.18.0.99"}
	for _, src := range stolen {
		atkRun(t, a, "ip", "addr", "add", src+"/32", "dev", "eth0")
	}
	for _, src := range stolen {
		atkUDP(t, a, src, sink, "stolen "+src, 5)
	}
	atkUDP(t, a, aa.Addr.String(), sink, "own", 5)
	if !atkWait(func() bool { return got()["own from "+nodeAddr] == 5 }) {
		t.Fatalf("the sliver's own datagrams did not all arrive (the path): %v", got())
	}
	for k, n := range got() {
		if k != "own from "+nodeAddr {
			t.Errorf("%d datagrams %q arrived; a sliver sent them from an address it does not hold", n, k)
		}
	}
	if w := ask(t, tp, 8080); w != "B" {
		t.Errorf("node:8080 (B's) answered %q while A claimed B's address, want B", w)
	}
}

// TestAttackARPHijack: a sliver sends gratuitous ARP (requests and
// replies) claiming another sliver's address, the gateway's and the
// node's. Property: traffic to the other sliver still reaches it and
// never the attacker.
func TestAttackARPHijack(t *testing.T) {
	tp := newTopo(t, Config{})
	a, _ := attach(t, tp, "site_a")
	b, ba := attach(t, tp, "site_b", "tcp/8080")
	listen(t, b, 8080, "B")
	if w := ask(t, tp, 8080); w != "B" {
		t.Fatalf("node:8080 answered %q, want B (the path)", w)
	}
	mac := atkMAC(t, a, "eth0")
	var frames [][]byte
	for _, ip := range []string{ba.Addr.String(), "169.254.0.1", nodeAddr, inetAddr} {
		claim := netip.MustParseAddr(ip)
		frames = append(frames,
			atkEther(atkBroadcast, mac, unix.ETH_P_ARP, atkARP(2, mac, claim, atkBroadcast, claim)),
			atkEther(atkBroadcast, mac, unix.ETH_P_ARP, atkARP(1, mac, claim, make(net.HardwareAddr, 6), claim)))
	}
	atkSend(t, a, "attack-frame", append([]string{"eth0", "3"}, hexes(frames...)...)...)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	capture := a.helper(ctx, "capture", "2500")
	var out strings.Builder
	capture.Stdout = &out
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if w := ask(t, tp, 8080); w != "B" {
			t.Errorf("after A's ARP claims node:8080 answered %q, want B", w)
		}
	}
	if err := capture.Wait(); err != nil || !strings.HasPrefix(out.String(), "capturing") {
		t.Fatalf("capture: %v: %s", err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, ba.Addr.String()) {
			t.Errorf("sliver A saw a packet of B's after claiming B's address by ARP: %s", line)
		}
	}
}

// TestAttackARPNeighbours: a sliver sends ARP requests for the node's
// address from many made-up sender addresses. Property: the sliver cannot
// write the node's neighbour table (the kernel's ARP table is one for all
// namespaces, gc_thresh3 entries in all: a sliver that fills it breaks
// ARP for the whole machine); the node keeps no entry on a sliver's veth
// but the sliver's own address.
func TestAttackARPNeighbours(t *testing.T) {
	tp := newTopo(t, Config{})
	a, aa := attach(t, tp, "site_a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The path: the node has resolved the sliver's own address.
	if out, err := a.run(ctx, "busybox", "ping", "-c", "1", "-W", "2", inetAddr); err != nil {
		t.Fatalf("ping from the sliver: %v: %s", err, out)
	}
	mac := atkMAC(t, a, "eth0")
	var frames [][]byte
	for i := range 40 {
		spa := netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)})
		frames = append(frames, atkEther(atkBroadcast, mac, unix.ETH_P_ARP,
			atkARP(1, mac, spa, make(net.HardwareAddr, 6), netip.MustParseAddr(nodeAddr))))
	}
	atkSend(t, a, "attack-frame", append([]string{"eth0", "1"}, hexes(frames...)...)...)
	time.Sleep(200 * time.Millisecond) // the kernel handles ARP asynchronously (backlog)
	var foreign []string
	for _, line := range lines(t, "ip", "-n", tp.node, "-4", "neigh", "show", "dev", aa.Host) {
		if f := strings.Fields(line); len(f) > 0 && f[0] != aa.Addr.String() {
			foreign = append(foreign, line)
		}
	}
	if len(foreign) > 0 {
		t.Errorf("sliver A planted %d neighbour entries on its host veth %s (want 0), e.g. %q", len(foreign), aa.Host, foreign[0])
	}
}

// TestAttackNodeServices: a sliver tries the node's own services: on the
// node's address, on the gateway 169.254.0.1, by broadcast and multicast,
// and over IPv6 to the host veth's link-local address. Property: a sliver
// never reaches the node (the same services answer the internet side).
func TestAttackNodeServices(t *testing.T) {
	tp := newTopo(t, Config{})
	a, _ := attach(t, tp, "site_a")
	atkServe(t, tp.inNode, ":7777", "NODE") // every address, IPv4 and IPv6
	_, got := atkPayloads(t, tp.inNode, ":7778")

	// The paths: the internet reaches both over IPv4, TCP over IPv6.
	if w := atkWord(tp.inInet, "tcp", nodeAddr+":7777"); w != "NODE" {
		t.Fatalf("the internet to node:7777 got %q, want NODE (the path)", w)
	}
	if err := tp.inInet(func() error {
		c, err := net.Dial("udp", nodeAddr+":7778")
		if err == nil {
			c.Write([]byte("inet"))
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !atkWait(func() bool { return got()["inet from "+inetAddr] == 1 }) {
		t.Fatalf("the node's UDP service got %v, want the internet's datagram (the path)", got())
	}
	upLL := atkLinkLocal(t, tp.net.h, "up0")
	inetH, err := netlink.NewHandleAt(tp.inetNS)
	if err != nil {
		t.Fatal(err)
	}
	atkLinkLocal(t, inetH, "wan0") // the client's own is usable
	inetH.Close()
	if w := atkWord(tp.inInet, "tcp", "["+upLL.String()+"%wan0]:7777"); w != "NODE" {
		t.Fatalf("the internet to [%s]:7777 got %q, want NODE (the IPv6 path)", upLL, w)
	}

	// IPv4.
	as := atkSliverNS(a)
	for _, target := range []string{nodeAddr, "169.254.0.1", "198.18.0.255"} {
		if w := atkWord(as, "tcp", target+":7777"); w != "" {
			t.Errorf("sliver A reached the node's TCP service at %s: %q", target, w)
		}
	}
	atkRun(t, a, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
	for _, target := range []string{nodeAddr, "169.254.0.1", "255.255.255.255", "198.18.0.255", "224.0.0.1"} {
		err := atkIn(a, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			to := &unix.SockaddrInet4{Port: 7778, Addr: netip.MustParseAddr(target).As4()}
			return unix.Sendto(fd, []byte("sliver "+target), 0, to)
		})
		if err != nil {
			t.Errorf("sliver A: send to %s: %v", target, err)
		}
	}
	// IPv6: the host veth's link-local address and all nodes.
	hostLL := atkLinkLocal(t, tp.net.h, tp.net.List()[0].Host)
	atkLinkLocalIn(t, a, "eth0") // the sliver's own is usable
	if w := atkWord(as, "tcp", "["+hostLL.String()+"%eth0]:7777"); w != "" {
		t.Errorf("sliver A reached the node's TCP service at [%s]: %q", hostLL, w)
	}
	for _, target := range []string{"[" + hostLL.String() + "%eth0]:7778", "[ff02::1%eth0]:7778"} {
		err := atkIn(a, func() error {
			c, err := net.Dial("udp6", target)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("sliver6"))
			return err
		})
		if err != nil {
			t.Errorf("sliver A: send to %s: %v", target, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for k, n := range got() {
		if strings.HasPrefix(k, "sliver") {
			t.Errorf("the node's UDP service got %d datagrams %q from sliver A", n, k)
		}
	}
}

// atkLinkLocal is the IPv6 link-local address of link name in the
// namespace h handles, once it is usable (not tentative).
func atkLinkLocal(t *testing.T, h *netlink.Handle, name string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	ok := atkWait(func() bool {
		l, err := h.LinkByName(name)
		if err != nil {
			return false
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V6)
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
				ll, _ = netip.AddrFromSlice(a.IP)
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("link %s has no usable IPv6 link-local address", name)
	}
	return ll
}

// atkLinkLocalIn waits for the link-local address of link name in sliver s.
func atkLinkLocalIn(t *testing.T, s *fakeSliver, name string) netip.Addr {
	t.Helper()
	ns, err := pidNS(s.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	return atkLinkLocal(t, h, name)
}

// TestAttackSliverToSliver: a sliver sends UDP to another sliver by its
// address, by the node's address on the other's reserved port (hairpin),
// by broadcast (limited, the pool's), multicast and IPv6 all-nodes.
// Property: a sliver never reaches another sliver; the other gets only
// what the internet sends to its reserved port.
func TestAttackSliverToSliver(t *testing.T) {
	tp := newTopo(t, Config{})
	a, _ := attach(t, tp, "site_a")
	b, ba := attach(t, tp, "site_b", "udp/9999")
	_, got := atkPayloads(t, atkSliverNS(b), ":9999")
	if err := tp.inInet(func() error {
		c, err := net.Dial("udp", nodeAddr+":9999")
		if err == nil {
			c.Write([]byte("inet"))
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !atkWait(func() bool { return got()["inet from "+inetAddr] == 1 }) {
		t.Fatalf("B got %v, want the internet's datagram on its reserved port (the path)", got())
	}
	atkRun(t, a, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
	for _, target := range []string{ba.Addr.String(), nodeAddr, "255.255.255.255", "100.64.255.255", "224.0.0.1"} {
		err := atkIn(a, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			return unix.Sendto(fd, []byte("A"), 0, &unix.SockaddrInet4{Port: 9999, Addr: netip.MustParseAddr(target).As4()})
		})
		if err != nil {
			t.Errorf("sliver A: send to %s: %v", target, err)
		}
	}
	atkLinkLocalIn(t, a, "eth0")
	atkIn(a, func() error {
		c, err := net.Dial("udp6", "[ff02::1%eth0]:9999")
		if err == nil {
			c.Write([]byte("A6"))
			c.Close()
		}
		return err
	})
	time.Sleep(300 * time.Millisecond)
	for k, n := range got() {
		if k != "inet from "+inetAddr {
			t.Errorf("sliver B got %d datagrams %q from sliver A", n, k)
		}
	}
}

// TestAttackOutsideToPool: an attacker on the uplink routes the slivers'
// pool through the node and connects to a sliver's address directly, on
// its reserved port and on another; and sends UDP to a port reserved only
// for TCP. Property: from outside, a sliver is reachable only through the
// node's address on a port it reserved, for the protocol it reserved.
func TestAttackOutsideToPool(t *testing.T) {
	tp := newTopo(t, Config{})
	b, ba := attach(t, tp, "site_b", "tcp/8080")
	listen(t, b, 8080, "B")
	listen(t, b, 8081, "B8081")
	_, got := atkPayloads(t, atkSliverNS(b), ":8080")
	sh(t, "ip", "-n", tp.inet, "route", "add", "100.64.0.0/10", "via", nodeAddr)
	if w := ask(t, tp, 8080); w != "B" {
		t.Fatalf("node:8080 answered %q, want B (the path)", w)
	}
	for _, target := range []string{ba.Addr.String() + ":8080", ba.Addr.String() + ":8081", nodeAddr + ":8081"} {
		if w := atkWord(tp.inInet, "tcp", target); w != "" {
			t.Errorf("the internet reached %s: %q", target, w)
		}
	}
	for _, target := range []string{nodeAddr + ":8080", ba.Addr.String() + ":8080"} {
		tp.inInet(func() error {
			c, err := net.Dial("udp", target)
			if err == nil {
				c.Write([]byte("udp to " + target))
				c.Close()
			}
			return err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	tp.inInet(func() error {
		out, _ = atkExec(ctx, "busybox", "ping", "-c", "1", "-W", "1", ba.Addr.String())
		return nil
	})
	if strings.Contains(string(out), "1 packets received") {
		t.Errorf("the internet pinged sliver B at %s: %s", ba.Addr, out)
	}
	time.Sleep(300 * time.Millisecond)
	for k, n := range got() {
		t.Errorf("sliver B's UDP 8080 (it reserved TCP only) got %d datagrams %q", n, k)
	}
}

// atkExec runs a program in the calling thread's namespace.
func atkExec(ctx context.Context, name string, args ...string) ([]byte, error) {
	return osexec.CommandContext(ctx, name, args...).CombinedOutput()
}

// TestAttackOutsideSpoofsSliver: an attacker on the uplink's link sends
// packets whose source is a sliver's address: to the node's address on
// another slice's reserved port, and to a third party through the node
// (the node forwards, NATs and sends them on from its own address).
// Property: the node drops packets from the uplink with a source in the
// pool (it is no relay), and the flow log never attributes to a slice a
// flow it did not send (DESIGN.md: every flow can be traced back to the
// slice that sent it; so must no flow be traced to one that did not).
func TestAttackOutsideSpoofsSliver(t *testing.T) {
	tp := newTopo(t, Config{})
	_, path := tp.flowLog()
	a, _ := attach(t, tp, "site_a", "udp/5353")
	b, ba := attach(t, tp, "site_b") // the innocent
	_, aGot := atkPayloads(t, atkSliverNS(a), ":5353")
	port, got := atkPayloads(t, tp.inInet, inetAddr+":0")

	up, err := tp.net.h.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	var wan *net.Interface
	tp.inInet(func() (err error) { wan, err = net.InterfaceByName("wan0"); return err })
	src, node, inet := ba.Addr, netip.MustParseAddr(nodeAddr), netip.MustParseAddr(inetAddr)
	toNode := atkEther(up.Attrs().HardwareAddr, wan.HardwareAddr, unix.ETH_P_IP,
		atkIPv4(src, node, unix.IPPROTO_UDP, 1, 0, atkUDPSeg(4444, 5353, []byte("forged to A"))))
	relay := atkEther(up.Attrs().HardwareAddr, wan.HardwareAddr, unix.ETH_P_IP,
		atkIPv4(src, inet, unix.IPPROTO_UDP, 2, 0, atkUDPSeg(4445, uint16(port), []byte("relayed"))))
	if err := tp.inInet(func() error { return sendFrames(wan.Index, 5, [][]byte{toNode, relay}) }); err != nil {
		t.Fatal(err)
	}
	// The path and the log at work: B's own datagram arrives, in B's name.
	atkUDP(t, b, "", fmt.Sprintf("%s:%d", inetAddr, port), "own", 1)
	if !atkWait(func() bool { return got()["own from "+nodeAddr] == 1 }) {
		t.Fatalf("B's own datagram did not arrive (the path): %v", got())
	}
	var flows []Flow
	flowsEventually(t, "B's own flow in the log", func() error {
		flows, err = QueryFlows(t.Context(), path, FlowQuery{Dst: inet})
		for _, f := range flows {
			if f.Slice == "site_b" && f.Remote.Port() == uint16(port) && f.Sliver.Port() != 4445 {
				return nil
			}
		}
		return fmt.Errorf("not yet: %v", flows)
	})
	if n := got()["relayed from "+nodeAddr]; n > 0 {
		t.Errorf("the node relayed %d forged datagrams from its uplink to %s, sent on from its own address", n, inetAddr)
	}
	t.Logf("sliver A got %v from the forged source", aGot())
	toNodeFlows, err := QueryFlows(t.Context(), path, FlowQuery{Dst: node})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(flows, toNodeFlows...) {
		if f.Slice == "site_b" && (f.Sliver.Port() == 4444 || f.Sliver.Port() == 4445) {
			t.Errorf("the flow log blames slice site_b for a flow the internet forged: %s %s -> %s (inbound %v)", f.Proto, f.Sliver, f.Remote, f.Inbound)
		}
	}
}

// TestAttackForeignSourcePorts: a sliver sends from a port another slice
// reserved (TCP, UDP), and SCTP and UDP-Lite from port 22, which no slice
// owns. Property: traffic leaves the node only from ports the sliver owns
// (a reserved one, or one NAT gave it: 49152-65535).
func TestAttackForeignSourcePorts(t *testing.T) {
	tp := newTopo(t, Config{})
	tcpSrv, udpSrv := tp.greetServer(), tp.greetUDPServer()
	owner := tp.flowSliver("site_a", []PortRange{{Proto: "tcp", Lo: 8080, High: 8080}, {Proto: "udp", Lo: 5353, High: 5353}})
	thief := tp.flowSliver("site_b", nil)
	nat := func(p uint16) bool { return p >= DefaultNATPorts[0] && p <= DefaultNATPorts[1] }
	// The owner keeps its port (the path).
	if seen := converse(t, owner.mustDial(t, "tcp", 8080, tcpSrv)); seen.Port() != 8080 {
		t.Errorf("the owner of tcp/8080 left from port %d, want 8080", seen.Port())
	}
	if seen := converse(t, owner.mustDial(t, "udp", 5353, udpSrv)); seen.Port() != 5353 {
		t.Errorf("the owner of udp/5353 left from port %d, want 5353", seen.Port())
	}
	if seen := converse(t, thief.mustDial(t, "tcp", 8080, tcpSrv)); !nat(seen.Port()) {
		t.Errorf("sliver B, from A's tcp/8080, left from port %d; want a NAT port", seen.Port())
	}
	if seen := converse(t, thief.mustDial(t, "udp", 5353, udpSrv)); !nat(seen.Port()) {
		t.Errorf("sliver B, from A's udp/5353, left from port %d; want a NAT port", seen.Port())
	}

	inet := netip.MustParseAddr(inetAddr)
	for _, tc := range []struct {
		name  string
		proto int
		pkt   func(sport uint16) []byte
	}{
		{"sctp", unix.IPPROTO_SCTP, func(sport uint16) []byte {
			return atkIPv4(thief.addr, inet, unix.IPPROTO_SCTP, 0, 0, atkSCTPInit(sport, 7070))
		}},
		{"udplite", unix.IPPROTO_UDPLITE, func(sport uint16) []byte {
			return atkIPv4(thief.addr, inet, unix.IPPROTO_UDPLITE, 0, 0, atkUDPLite(thief.addr, inet, sport, 7070, []byte("lite")))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := tp.atkRawSink(tc.proto, 7070)
			// A port in the NAT range: anybody's, so the path.
			atkSend(t, thief.fakeSliver, "attack-ip", append([]string{"1"}, hexes(tc.pkt(50000))...)...)
			if !atkWait(func() bool { return len(seen()) > 0 }) {
				t.Fatalf("%s from the sliver never arrived (the path)", tc.name)
			}
			n := len(seen())
			atkSend(t, thief.fakeSliver, "attack-ip", append([]string{"1"}, hexes(tc.pkt(22))...)...)
			atkWait(func() bool { return len(seen()) > n })
			for _, p := range seen()[n:] {
				if !nat(p) {
					t.Errorf("%s from sliver B left the node from port %d, a port it does not own", tc.name, p)
				}
			}
		})
	}
}

// atkRawSink records, in the internet namespace, the source ports of
// protocol proto's packets to port dport.
func (tp *topo) atkRawSink(proto int, dport uint16) func() []uint16 {
	t := tp.t
	var fd int
	if err := tp.inInet(func() (err error) { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, proto); return err }); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var mu sync.Mutex
	var ports []uint16
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	go func() {
		defer close(stopped)
		buf := make([]byte, 2048)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 20 {
				continue
			}
			ihl := int(buf[0]&0xf) * 4
			if n < ihl+4 || binary.BigEndian.Uint16(buf[ihl+2:]) != dport {
				continue
			}
			mu.Lock()
			ports = append(ports, binary.BigEndian.Uint16(buf[ihl:]))
			mu.Unlock()
		}
	}()
	return func() []uint16 {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint16(nil), ports...)
	}
}

// TestAttackFragmentedSpoof: a sliver splits UDP datagrams with forged
// sources into fragments, hoping the spoof check looks at one fragment
// only. Property: spoofed sources are dropped, fragmented or not.
func TestAttackFragmentedSpoof(t *testing.T) {
	tp := newTopo(t, Config{})
	a, aa := attach(t, tp, "site_a")
	_, ba := attach(t, tp, "site_b")
	port, got := atkPayloads(t, tp.inInet, inetAddr+":0")
	inet := netip.MustParseAddr(inetAddr)
	var pkts [][]byte
	for i, src := range []string{ba.Addr.String(), nodeAddr, "10.1.2.3", aa.Addr.String()} {
		s := netip.MustParseAddr(src)
		msg := fmt.Sprintf("fragments from %-40s", src) // 55 bytes
		u := atkUDPSeg(40000, uint16(port), []byte(msg))
		id := uint16(0x4200 + i)
		pkts = append(pkts,
			atkIPv4(s, inet, unix.IPPROTO_UDP, id, 0x2000, u[:24]), // MF, offset 0
			atkIPv4(s, inet, unix.IPPROTO_UDP, id, 3, u[24:]))      // offset 24
	}
	atkSend(t, a, "attack-ip", append([]string{"3"}, hexes(pkts...)...)...)
	own := fmt.Sprintf("fragments from %-40s from %s", aa.Addr, nodeAddr)
	if !atkWait(func() bool { return got()[own] == 3 }) {
		t.Fatalf("the sliver's own fragmented datagrams did not arrive (the path): %v", got())
	}
	for k, n := range got() {
		if k != own {
			t.Errorf("%d fragmented datagrams with a forged source arrived: %q", n, k)
		}
	}
}

// TestAttackReservationConflict: a second slice is attached with a port
// another slice holds (exactly, and overlapping). Property: inbound
// traffic on a reserved port reaches only its slice: the second attach
// fails, and the first slice keeps its port.
func TestAttackReservationConflict(t *testing.T) {
	for _, spec := range []string{"tcp/8080", "tcp/8000-8100"} {
		t.Run(spec, func(t *testing.T) {
			tp := newTopo(t, Config{})
			a, _ := attach(t, tp, "site_a", "tcp/8080")
			listen(t, a, 8080, "A")
			if w := ask(t, tp, 8080); w != "A" {
				t.Fatalf("node:8080 answered %q, want A (the path)", w)
			}
			c := tp.sliver("site_c")
			listen(t, c, 8080, "C")
			pr, _ := ParsePorts([]string{spec})
			_, err := tp.net.Attach(Sliver{Name: "site_c", Pid: c.pid, Ports: pr})
			if err == nil {
				t.Errorf("Attach site_c with %s, held by site_a, succeeded; want a conflict", spec)
			}
			if w := ask(t, tp, 8080); w != "A" {
				t.Errorf("after attaching site_c with %s (%v), node:8080 answered %q, want A; the node's map:\n%s", spec, err, w,
					sh(t, "ip", "netns", "exec", tp.node, "nft", "list", "map", "inet", "plab", "tcp_ports"))
			}
		})
	}
}

// TestAttackLinkLocalForwarded: a sliver sends to link-local addresses
// (a cloud's metadata service at 169.254.169.254; the gateway address
// 169.254.0.1) on a node with a default route. Property: a sliver reaches
// nothing on the node's side but the internet: link-local destinations
// are never forwarded (RFC 3927), so no service on the node's link that
// answers only its own link (a metadata service: the node's credentials)
// hears a sliver.
func TestAttackLinkLocalForwarded(t *testing.T) {
	tp := newTopo(t, Config{})
	a, _ := attach(t, tp, "site_a")
	sh(t, "ip", "-n", tp.node, "route", "add", "default", "via", inetAddr)
	t.Cleanup(func() { sh(t, "ip", "-n", tp.node, "route", "del", "default") })
	for _, ll := range []string{"169.254.169.254", "169.254.0.1"} {
		sh(t, "ip", "-n", tp.inet, "addr", "add", ll+"/32", "dev", "lo")
	}
	atkServe(t, tp.inInet, ":80", "METADATA")
	as := atkSliverNS(a)
	if w := atkWord(as, "tcp", inetAddr+":80"); w != "METADATA" {
		t.Fatalf("sliver A to the internet got %q (the path)", w)
	}
	for _, target := range []string{"169.254.169.254:80", "169.254.0.1:80"} {
		if w := atkWord(as, "tcp", target); w != "" {
			t.Errorf("sliver A reached %s through the node's uplink: %q", target, w)
		}
	}
}

// TestAttackFlowLogEvasion: a sliver sends UDP (also from another's
// address), ICMP echo and a protocol without ports (253). Property: every
// flow it sends is in the log, in its slice's name, and none in another's.
func TestAttackFlowLogEvasion(t *testing.T) {
	tp := newTopo(t, Config{})
	_, path := tp.flowLog()
	a, aa := attach(t, tp, "site_a")
	_, ba := attach(t, tp, "site_b")
	port, _ := atkPayloads(t, tp.inInet, inetAddr+":0")
	inet := netip.MustParseAddr(inetAddr)
	atkSend(t, a, "attack-ip", append([]string{"3"},
		hexes(atkIPv4(ba.Addr, inet, unix.IPPROTO_UDP, 0, 0, atkUDPSeg(41000, uint16(port), []byte("as B"))),
			atkIPv4(aa.Addr, inet, unix.IPPROTO_UDP, 0, 0, atkUDPSeg(41001, uint16(port), []byte("own"))),
			atkIPv4(aa.Addr, inet, 253, 0, 0, []byte("experimental")))...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.run(ctx, "busybox", "ping", "-c", "1", "-W", "2", inetAddr)
	want := map[string]bool{"udp": false, "253": false, "icmp": false}
	flowsEventually(t, "A's udp, icmp and 253 flows in the log", func() error {
		flows, err := QueryFlows(t.Context(), path, FlowQuery{Dst: inet})
		if err != nil {
			return err
		}
		for _, f := range flows {
			if f.Slice == "site_b" {
				t.Fatalf("the log blames site_b for %s %s -> %s, which A forged and the node dropped", f.Proto, f.Sliver, f.Remote)
			}
			if f.Slice == "site_a" && f.Sliver.Addr() == aa.Addr {
				want[f.Proto] = true
			}
		}
		for p, ok := range want {
			if !ok {
				return fmt.Errorf("no %s flow of site_a yet", p)
			}
		}
		return nil
	})
}

// TestAttackLinkTinkering: a sliver's root renames its eth0, makes a
// bridge and a veth pair of its own, then deletes eth0 (and with it the
// host veth). Property: nothing of this reaches the node or another
// sliver (whose reserved port keeps working), and the node can attach the
// sliver again.
func TestAttackLinkTinkering(t *testing.T) {
	tp := newTopo(t, Config{})
	a, aa := attach(t, tp, "site_a")
	b, _ := attach(t, tp, "site_b", "tcp/8080")
	listen(t, b, 8080, "B")
	for _, cmd := range [][]string{
		{"ip", "link", "set", "eth0", "down"},
		{"ip", "link", "set", "eth0", "name", "x0"},
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"ip", "link", "set", "x0", "master", "br0"},
		{"ip", "link", "set", "br0", "up"},
		{"ip", "link", "set", "x0", "up"},
	} {
		atkRun(t, a, cmd...)
	}
	if w := ask(t, tp, 8080); w != "B" {
		t.Errorf("node:8080 answered %q while A tinkered, want B", w)
	}
	atkRun(t, a, "ip", "link", "del", "x0")
	for _, line := range lines(t, "ip", "-n", tp.node, "-o", "link") {
		for _, bad := range []string{"br0", "v0", "v1", "x0"} {
			if strings.Contains(line, " "+bad+":") || strings.Contains(line, " "+bad+"@") {
				t.Errorf("the node's namespace holds the sliver's link: %s", line)
			}
		}
	}
	if w := ask(t, tp, 8080); w != "B" {
		t.Errorf("node:8080 answered %q after A deleted its eth0, want B", w)
	}
	again, err := tp.net.Attach(Sliver{Name: "site_a", Pid: a.pid})
	if err != nil {
		t.Fatalf("attach site_a again: %v", err)
	}
	if again.Addr != aa.Addr {
		t.Errorf("site_a came back with %s, want its address %s", again.Addr, aa.Addr)
	}
	addr, _ := tp.server(0)
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := a.run(ctx, "busybox", "nc", host, port); err != nil || !strings.Contains(out, "you are "+nodeAddr) {
		t.Errorf("site_a attached again to the internet: %q, %v", out, err)
	}
}
