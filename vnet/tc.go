//go:build linux

package vnet

import "github.com/vishvananda/netlink"

// rootHandle is the handle of the htb qdisc plab puts on the uplink (1:).
var rootHandle = netlink.MakeHandle(1, 0)

// setupUplink, setClass and delClass are filled in by the bandwidth work.
func (n *Net) setupUplink() error         { return nil }
func (n *Net) setClass(a *attached) error { return nil }
func (n *Net) delClass(a *attached) error { return nil }
