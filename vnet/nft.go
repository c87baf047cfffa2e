//go:build linux

package vnet

import (
	"fmt"
	"strings"

	"github.com/plab/plab/errdefs"
)

// nft applies script with nft -f: one transaction, all or nothing.
func (n *Net) nft(script string) error {
	if err := run(n.ns, script, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("sliver networking: nftables: %w", err)
	}
	return nil
}

// baseRuleset is the node's table, replaced whole: a table that exists is
// flushed and deleted in the same transaction. Per-sliver state lives in
// its sets and maps, which Attach and Detach fill and empty.
func (n *Net) baseRuleset() string {
	c := n.cfg
	r := strings.NewReplacer(
		"TABLE", c.Table, "UPLINK", c.Uplink, "ADDR", n.addr.String(), "POOL", c.Pool.String(),
		"PFX", c.LinkPrefix, "NATLO", fmt.Sprint(c.NATPorts[0]), "NATHI", fmt.Sprint(c.NATPorts[1]),
		"ECHO", fmt.Sprint(c.EchoRate), "OPTS", fmt.Sprint(c.OptionsRate), "CONNS", fmt.Sprint(c.MaxConns),
	)
	return r.Replace(`table inet TABLE
delete table inet TABLE
table inet TABLE {
	# (host veth, address) pairs that may send: anti-spoofing
	set slivers { type ifname . ipv4_addr; }
	# (address, protocol, port) a sliver reserved: outbound NAT keeps the port
	set own { type ipv4_addr . inet_proto . inet_service; flags interval; }
	# reserved ports, by protocol, to the sliver that holds them
	map tcp_ports { type inet_service : ipv4_addr; flags interval; }
	map udp_ports { type inet_service : ipv4_addr; flags interval; }
	# host veth to packet mark (tc class)
	map marks { type ifname : mark; }
	set echo { type ifname; flags dynamic, timeout; timeout 1m; }
	set conns { type ifname; flags dynamic; }
	set opts { type ifname; flags dynamic, timeout; timeout 1m; }

	chain raw {
		type filter hook prerouting priority raw; policy accept;
		iifname "UPLINK" ip saddr POOL counter drop comment "slivers' addresses never come from outside"
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "UPLINK" ip daddr ADDR dnat ip to tcp dport map @tcp_ports
		iifname "UPLINK" ip daddr ADDR dnat ip to udp dport map @udp_ports
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "PFX*" meta nfproto ipv6 drop
		oifname "PFX*" meta nfproto ipv6 drop
		ct state invalid drop
		iifname "UPLINK" oifname "UPLINK" counter drop comment "no relaying for others"
		iifname "PFX*" iifname . ip saddr != @slivers counter drop comment "spoofed"
		iifname "PFX*" oifname != "UPLINK" counter drop comment "slivers leave by the uplink only"
		iifname "PFX*" ip daddr { 169.254.0.0/16, 127.0.0.0/8 } counter drop comment "link-local and loopback are not forwarded"
		iifname "PFX*" ct state new add @conns { iifname ct count over CONNS } counter drop comment "connections per sliver"
		iifname "PFX*" icmp type echo-request update @echo { iifname limit rate over ECHO/second burst ECHO packets } counter drop comment "echo flood"
		iifname "PFX*" ip hdrlength > 5 update @opts { iifname limit rate over OPTS/second burst OPTS packets } counter drop comment "IP options"
		iifname "PFX*" meta mark set iifname map @marks
		oifname "PFX*" ct state established,related accept
		oifname "PFX*" ct status dnat accept
		oifname "PFX*" counter drop comment "unsolicited inbound"
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "PFX*" counter drop comment "slivers never reach the node itself"
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "UPLINK" ip saddr POOL ip saddr . meta l4proto . th sport @own snat ip to ADDR
		oifname "UPLINK" ip saddr POOL meta l4proto { tcp, udp, udplite, sctp, dccp } snat ip to ADDR:NATLO-NATHI
		oifname "UPLINK" ip saddr POOL snat ip to ADDR
	}
}
`)
}

// elements is the nft script that adds (verb "add") or deletes ("delete")
// sliver a's elements.
func (n *Net) elements(verb string, a *attached) string {
	t := "inet " + n.cfg.Table
	var b strings.Builder
	fmt.Fprintf(&b, "%s element %s slivers { %q . %s }\n", verb, t, a.Host, a.Addr)
	fmt.Fprintf(&b, "%s element %s marks { %q : 0x%x }\n", verb, t, a.Host, mark(a.ID))
	for _, p := range a.Ports {
		fmt.Fprintf(&b, "%s element %s %s_ports { %s : %s }\n", verb, t, p.Proto, p.nftRange(), a.Addr)
		fmt.Fprintf(&b, "%s element %s own { %s . %s . %s }\n", verb, t, a.Addr, p.Proto, p.nftRange())
	}
	return b.String()
}

// mark is the packet mark of class id.
func mark(id uint16) uint32 { return 0x70000 | uint32(id) }

// checkPorts refuses reservations NAT may use.
func (n *Net) checkPorts(ports []PortRange) error {
	nat := PortRange{Lo: n.cfg.NATPorts[0], High: n.cfg.NATPorts[1]}
	for _, p := range ports {
		nat.Proto = p.Proto
		if p.Overlaps(nat) {
			return fmt.Errorf("port reservation %s is in the range outbound NAT uses (%d-%d); reserve a port below %d: %w",
				p, nat.Lo, nat.High, nat.Lo, errdefs.ErrInvalid)
		}
	}
	return nil
}
