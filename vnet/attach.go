//go:build linux

package vnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/plab/plab/errdefs"
)

// Attachment is a sliver's networking as its sliver sees it.
type Attachment struct {
	Name string
	Addr netip.Addr
	// Host is the node-side veth.
	Host string
}

// Attach joins sliver s to the node: a veth pair (eth0 in the sliver's
// namespace with its /32 and a default route; the host end routes that
// /32 and answers ARP for the gateway), its nftables elements (one
// transaction) and its tc class. Attaching a sliver already attached to
// the same namespace changes nothing; one whose namespace changed (the
// sliver restarted) is attached anew with its address. A failure undoes
// what was done.
func (n *Net) Attach(s Sliver) (Attachment, error) {
	if err := n.checkPorts(s.Ports); err != nil {
		return Attachment{}, err
	}
	sns, err := pidNS(s.Pid)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach %s: %w", s.Name, err)
	}
	defer sns.Close()
	sh, err := netlink.NewHandleAt(sns)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach %s: %w", s.Name, err)
	}
	defer sh.Close()

	n.mu.Lock()
	defer n.mu.Unlock()
	for name, o := range n.slivers {
		if name == s.Name {
			continue
		}
		for _, p := range s.Ports {
			for _, q := range o.Ports {
				if p.Overlaps(q) {
					return Attachment{}, fmt.Errorf("attach %s: port %s is reserved by %s: %w", s.Name, p, name, errdefs.ErrConflict)
				}
			}
		}
	}
	a := n.slivers[s.Name]
	if a != nil && a.inNamespace(sh) {
		a.Sliver = s // adopted ones learn their ports and rates
		if err := n.nft(n.elements("add", a)); err != nil {
			return Attachment{}, err
		}
		a.added = true
		return a.attachment(), n.setClass(a)
	}
	if a != nil {
		n.detach(a) // the sliver restarted: a new namespace
	}
	addr := netip.Addr{}
	if a != nil {
		addr = a.Addr
		n.used[addr] = s.Name
	} else if addr, err = n.allocate(s.Name); err != nil {
		return Attachment{}, err
	}
	a = &attached{Sliver: s, Host: n.hostName(s.Name), Addr: addr, ID: n.classID(addr)}
	if err := n.attach(a, sh); err != nil {
		n.detach(a)
		delete(n.used, addr)
		return Attachment{}, fmt.Errorf("attach %s: %w", s.Name, err)
	}
	n.slivers[s.Name] = a
	n.log.Info("sliver attached", "sliver", s.Name, "addr", addr, "veth", a.Host)
	return a.attachment(), nil
}

func (a *attached) attachment() Attachment {
	return Attachment{Name: a.Name, Addr: a.Addr, Host: a.Host}
}

// inNamespace reports whether a's eth0 with its address is in the
// namespace sh handles.
func (a *attached) inNamespace(sh *netlink.Handle) bool {
	l, err := sh.LinkByName("eth0")
	if err != nil {
		return false
	}
	addrs, err := sh.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP.To4()); ok && ip == a.Addr {
			return true
		}
	}
	return false
}

func (n *Net) attach(a *attached, sh *netlink.Handle) error {
	// The sliver's end is made in the sliver's namespace, as eth0: moving
	// a link between namespaces waits for the kernel's RCU grace periods
	// (10-30 ms here), making it there does not.
	nsfd, err := pidNS(a.Pid)
	if err != nil {
		return err
	}
	defer nsfd.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.Host, MTU: n.up.Attrs().MTU, TxQLen: 1000, Alias: a.Name},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(nsfd), PeerMTU: uint32(n.up.Attrs().MTU)}
	if err := n.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("make veth %s: %w", a.Host, err)
	}
	host, err := n.h.LinkByName(a.Host)
	if err != nil {
		return err
	}
	if host.Attrs().Alias != a.Name {
		if err := n.h.LinkSetAlias(host, a.Name); err != nil {
			return err
		}
	}
	// Inside the sliver.
	pl, err := sh.LinkByName("eth0")
	if err != nil {
		return err
	}
	ip := net.IP(a.Addr.AsSlice())
	if err := sh.AddrAdd(pl, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}); err != nil {
		return fmt.Errorf("address %s: %w", a.Addr, err)
	}
	if err := sh.LinkSetUp(pl); err != nil {
		return err
	}
	if lo, err := sh.LinkByName("lo"); err == nil {
		_ = sh.LinkSetUp(lo)
	}
	if err := sh.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Dst: &net.IPNet{IP: gateway, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to the gateway: %w", err)
	}
	// The gateway is the host veth: a permanent neighbour entry, so the
	// node needs neither an address on it nor proxy ARP.
	if err := sh.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: gateway, HardwareAddr: host.Attrs().HardwareAddr}); err != nil {
		return fmt.Errorf("gateway neighbour: %w", err)
	}
	if err := sh.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gateway}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	// On the node. The host veth answers no ARP for the node's other
	// addresses and so learns no neighbours from a sliver's requests (the
	// kernel's neighbour table is shared by every namespace).
	if err := sysctl(n.ns, "net.ipv4.conf."+a.Host+".arp_ignore", "8"); err != nil {
		return err
	}
	if err := n.h.LinkSetUp(host); err != nil {
		return err
	}
	if err := n.h.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to %s: %w", a.Addr, err)
	}
	if err := n.nft(n.elements("add", a)); err != nil {
		return err
	}
	a.added = true
	return n.setClass(a)
}

// Detach removes sliver name's networking: its nftables elements, its tc
// class and its veth (the sliver's end goes with it). Detaching a sliver
// that is not attached does nothing.
func (n *Net) Detach(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.slivers[name]
	if a == nil {
		return nil
	}
	err := n.detach(a)
	delete(n.used, a.Addr)
	n.log.Info("sliver detached", "sliver", name)
	return err
}

// detach removes what attach made of a, as far as it got.
func (n *Net) detach(a *attached) error {
	var errs []error
	// The add was one transaction: its elements are all in, or none. An
	// adopted sliver's may be partly gone: then one element at a time.
	if a.added || a.Pid == 0 {
		if script := n.elements("delete", a); n.nft(script) != nil && !a.added {
			for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
				_ = n.nft(line)
			}
		}
	}
	if err := n.delClass(a); err != nil {
		errs = append(errs, err)
	}
	if err := n.forgetFlows(a.Addr); err != nil {
		n.log.Warn("forget the sliver's connections", "sliver", a.Name, "err", err)
	}
	if l, err := n.h.LinkByName(a.Host); err == nil {
		if err := n.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", a.Host, err))
		}
	}
	delete(n.slivers, a.Name)
	return errors.Join(errs...)
}

// Lookup returns sliver name's attachment.
func (n *Net) Lookup(name string) (Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.slivers[name]
	if a == nil {
		return Attachment{}, fmt.Errorf("sliver %s has no network: %w", name, errdefs.ErrNotFound)
	}
	return a.attachment(), nil
}

// List returns every attachment, sorted by name.
func (n *Net) List() []Attachment {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Attachment, 0, len(n.slivers))
	for _, a := range n.slivers {
		out = append(out, a.attachment())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Counters are a sliver's traffic, seen from the sliver.
type Counters struct {
	TxBytes, TxPackets, RxBytes, RxPackets uint64
}

// Counters reads sliver name's traffic from its host veth (what the host
// end receives, the sliver sent).
func (n *Net) Counters(name string) (Counters, error) {
	n.mu.Lock()
	a := n.slivers[name]
	n.mu.Unlock()
	if a == nil {
		return Counters{}, fmt.Errorf("sliver %s has no network: %w", name, errdefs.ErrNotFound)
	}
	l, err := n.h.LinkByName(a.Host)
	if err != nil {
		return Counters{}, err
	}
	st := l.Attrs().Statistics
	if st == nil {
		return Counters{}, nil
	}
	return Counters{TxBytes: st.RxBytes, TxPackets: st.RxPackets, RxBytes: st.TxBytes, RxPackets: st.TxPackets}, nil
}
