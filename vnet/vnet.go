//go:build linux

// Package vnet is sliver networking: each sliver gets its own network
// namespace (made by the OCI runtime, owned by the sliver's user namespace,
// so its root can open raw and packet sockets there and sees only its own
// traffic), joined to the node by a routed veth and a /32 from the node's
// pool. On the node, one nftables table does the rest: source NAT to the
// node's address, anti-spoofing (only the sliver's own address leaves its
// veth), port reservations (inbound traffic to a reserved port reaches only
// its slice's sliver, on the same port), per-sliver rate limits for ICMP
// echo and IP options, and marks that tc uses to share the uplink.
//
//	sliver netns                    node netns                        uplink
//	eth0 100.64.0.17/32 ──veth── plXXXXXXXX ── route 100.64.0.17/32 ── nft: spoof check, mark, SNAT ── tc htb
//	default via 169.254.0.1 (the host veth's MAC, a permanent neighbour)
//
// The kernel is the state: a host veth carries its sliver's name as its
// alias and routes the sliver's address, so Open finds what a previous
// process made. Cleanup removes every veth, route, nft table and qdisc of
// plab.
package vnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/plab/plab/errdefs"
)

// Config configures sliver networking on a node.
type Config struct {
	// NetNS is the path of the node's network namespace; empty means the
	// calling process's (the testbed runs nodes in namespaces of their own).
	NetNS string
	// Uplink is the interface slivers' traffic leaves by. Required.
	Uplink string
	// Address is the node's address that slivers' traffic leaves with;
	// default: the uplink's first IPv4 address.
	Address netip.Addr
	// Pool holds the slivers' addresses (default 100.64.0.0/16: the first
	// 65,536 of DESIGN.md's 100.64.0.0/10, as many as tc has class ids).
	Pool netip.Prefix
	// Cap is the uplink's capacity in bits per second, shared among the
	// slivers by tc htb; 0 leaves the uplink unshaped.
	Cap int64
	// NATPorts is the port range outbound connections are mapped to
	// (default 49152-65535); no slice may reserve a port in it, so NAT
	// never borrows a reserved port.
	NATPorts [2]uint16
	// EchoRate and OptionsRate bound, per sliver and per second, ICMP echo
	// requests and packets with IP options (defaults 20 and 10).
	EchoRate, OptionsRate int
	// MaxConns bounds a sliver's tracked connections (default 20,000): the
	// conntrack table is the host's, and one sliver must not fill it.
	MaxConns int
	// Resolvers are the DNS servers slivers are told to use.
	Resolvers []string
	// Table names the nftables table (default plab); LinkPrefix starts
	// the host veths' names (default pl).
	Table, LinkPrefix string
	// Log receives what vnet does (nil: discard).
	Log *slog.Logger
}

// Defaults of Config.
var (
	DefaultPool     = netip.MustParsePrefix("100.64.0.0/16")
	DefaultNATPorts = [2]uint16{49152, 65535}
)

// gateway is the address slivers route through: link-local, a permanent
// neighbour entry in the sliver pointing at the host veth.
var gateway = net.IPv4(169, 254, 0, 1)

func (c Config) withDefaults() Config {
	if !c.Pool.IsValid() {
		c.Pool = DefaultPool
	}
	if c.NATPorts == [2]uint16{} {
		c.NATPorts = DefaultNATPorts
	}
	if c.EchoRate == 0 {
		c.EchoRate = 20
	}
	if c.OptionsRate == 0 {
		c.OptionsRate = 10
	}
	if c.MaxConns == 0 {
		c.MaxConns = 20000
	}
	if c.Table == "" {
		c.Table = "plab"
	}
	if c.LinkPrefix == "" {
		c.LinkPrefix = "pl"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("sliver networking: "+format+": %w", append(a, errdefs.ErrInvalid)...)
	}
	switch {
	case c.Uplink == "":
		return bad("no uplink interface; set the node's uplink (plab node enroll --uplink IFACE)")
	case !c.Pool.Addr().Is4() || c.Pool.Bits() < 8 || c.Pool.Bits() > 24:
		return bad("address pool %s: want an IPv4 prefix from /8 to /24", c.Pool)
	case c.NATPorts[0] < 1024 || c.NATPorts[1] < c.NATPorts[0]:
		return bad("NAT port range %d-%d: want a range above 1023", c.NATPorts[0], c.NATPorts[1])
	case c.Cap < 0 || (c.Cap > 0 && c.Cap < 1e6):
		return bad("uplink cap %d bit/s: want 0 (no shaping) or at least 1 Mbit/s", c.Cap)
	case len(c.LinkPrefix) > 6 || c.LinkPrefix == "":
		return bad("link prefix %q: 1 to 6 characters", c.LinkPrefix)
	}
	return nil
}

// Net is sliver networking on one node. Safe for concurrent use.
type Net struct {
	cfg  Config
	ns   netns.NsHandle // the node's; None: the process's own
	h    *netlink.Handle
	up   netlink.Link
	addr netip.Addr
	log  *slog.Logger

	mu      sync.Mutex
	slivers map[string]*attached // by sliver name
	used    map[netip.Addr]string
	next    netip.Addr // where allocate looks first
}

// attached is one sliver's networking.
type attached struct {
	Sliver
	Host string // host veth
	Addr netip.Addr
	ID   uint16 // tc class minor and packet mark
	// added is set once its nftables elements are in: a failed Attach
	// must not delete elements of the same keys that are another's.
	added bool
}

// Sliver is what vnet needs to know of a sliver.
type Sliver struct {
	// Name is the sliver's (and its slice's) name.
	Name string
	// Pid is a process inside the sliver (its init): vnet joins its
	// network namespace.
	Pid int
	// Ports are the slice's port reservations.
	Ports []PortRange
	// MinRate and MaxRate are the sliver's guaranteed rate and ceiling on
	// the uplink, bits per second (0: none; the uplink's cap).
	MinRate, MaxRate int64
}

// Open prepares the node's namespace: forwarding on, conntrack accounting
// on, the nftables table (replaced whole, atomically), and the uplink's
// qdisc when Cap is set. It adopts the slivers a previous process attached.
func Open(cfg Config) (*Net, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Net{cfg: cfg, ns: netns.None(), log: cfg.Log, slivers: map[string]*attached{}, used: map[netip.Addr]string{}}
	var err error
	if cfg.NetNS != "" {
		if n.ns, err = netns.GetFromPath(cfg.NetNS); err != nil {
			return nil, fmt.Errorf("sliver networking: node namespace %s: %w", cfg.NetNS, err)
		}
		n.h, err = netlink.NewHandleAt(n.ns)
	} else {
		n.h, err = netlink.NewHandle()
	}
	if err != nil {
		n.closeNS()
		return nil, fmt.Errorf("sliver networking: netlink: %w", err)
	}
	if err := n.open(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Net) open() error {
	up, err := n.h.LinkByName(n.cfg.Uplink)
	if err != nil {
		return fmt.Errorf("sliver networking: uplink %q: %w; name the node's uplink interface: %w", n.cfg.Uplink, err, errdefs.ErrInvalid)
	}
	n.up = up
	n.addr = n.cfg.Address
	if !n.addr.IsValid() {
		addrs, err := n.h.AddrList(up, netlink.FAMILY_V4)
		if err != nil || len(addrs) == 0 {
			return fmt.Errorf("sliver networking: uplink %s has no IPv4 address; give the node's address: %w", n.cfg.Uplink, errdefs.ErrInvalid)
		}
		n.addr, _ = netip.AddrFromSlice(addrs[0].IP.To4())
	}
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.netfilter.nf_conntrack_acct", "1"}} {
		if err := sysctl(n.ns, kv[0], kv[1]); err != nil {
			return fmt.Errorf("sliver networking: %w", err)
		}
	}
	if err := n.nft(n.baseRuleset()); err != nil {
		return err
	}
	if err := n.setupUplink(); err != nil {
		return err
	}
	if err := n.adopt(); err != nil {
		return err
	}
	return n.pruneClasses()
}

// Close releases the namespace and netlink handles; the slivers' networking
// stays.
func (n *Net) Close() error {
	if n.h != nil {
		n.h.Close()
	}
	n.closeNS()
	return nil
}

func (n *Net) closeNS() {
	if n.ns.IsOpen() {
		n.ns.Close()
	}
}

// Address is the node's address, the one slivers' traffic leaves with.
func (n *Net) Address() netip.Addr { return n.addr }

// hostName is the host veth of sliver name: the prefix and a hash, as
// interface names have at most 15 bytes.
func (n *Net) hostName(name string) string {
	h := sha256.Sum256([]byte(name))
	return n.cfg.LinkPrefix + hex.EncodeToString(h[:4])
}

// adopt finds the slivers a previous process attached: host veths whose
// alias names a sliver, and the address each routes.
func (n *Net) adopt() error {
	links, err := linkList(n.h)
	if err != nil {
		return fmt.Errorf("sliver networking: list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, n.cfg.LinkPrefix) || a.Alias == "" || a.Name != n.hostName(a.Alias) {
			continue
		}
		routes, err := n.h.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			if ones, _ := r.Dst.Mask.Size(); ones != 32 {
				continue
			}
			addr, _ := netip.AddrFromSlice(r.Dst.IP.To4())
			if !n.cfg.Pool.Contains(addr) {
				continue
			}
			n.slivers[a.Alias] = &attached{Sliver: Sliver{Name: a.Alias}, Host: a.Name, Addr: addr, ID: n.classID(addr)}
			n.used[addr] = a.Alias
		}
	}
	return nil
}

// classID is the tc class minor and mark of the sliver at addr.
func (n *Net) classID(addr netip.Addr) uint16 {
	base := n.cfg.Pool.Addr().As4()
	a := addr.As4()
	off := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) - (uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3]))
	return uint16(off)
}

// allocate picks a free address of the pool, going round from the last one
// given, so an address just freed is the last to be given again (a late
// conntrack event of the slice before cannot be taken for the next one's).
// Ids 0-15 and from 0xfff0 are kept for tc's own classes.
func (n *Net) allocate(name string) (netip.Addr, error) {
	first := n.cfg.Pool.Addr()
	for range 16 {
		first = first.Next()
	}
	a := n.next
	if !a.IsValid() || !n.cfg.Pool.Contains(a) || n.classID(a) < 16 {
		a = first
	}
	for range 0xfff0 - 16 {
		if !n.cfg.Pool.Contains(a) || n.classID(a) >= 0xfff0 {
			a = first
		}
		if _, taken := n.used[a]; !taken {
			n.used[a] = name
			n.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("sliver networking: the address pool %s is used up: %w", n.cfg.Pool, errdefs.ErrNoCapacity)
}

// linkList lists links, again when the dump was interrupted (slivers'
// namespaces, and their veths, go away at any moment).
func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	for i := 0; ; i++ {
		links, err := h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == 4 {
			return links, err
		}
	}
}
