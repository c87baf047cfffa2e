//go:build linux

package vnet

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Cleanup removes everything sliver networking made in the node's
// namespace: host veths (their sliver ends go with them), their routes,
// the nftables table and the uplink's qdiscs. It needs no running Net.
func Cleanup(cfg Config) error {
	cfg = cfg.withDefaults()
	ns := netns.None()
	var h *netlink.Handle
	var err error
	if cfg.NetNS != "" {
		if ns, err = netns.GetFromPath(cfg.NetNS); err != nil {
			return fmt.Errorf("sliver networking cleanup: %w", err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("sliver networking cleanup: %w", err)
	}
	defer h.Close()
	var errs []error
	links, err := linkList(h)
	if err != nil {
		return err
	}
	n := &Net{cfg: cfg}
	for _, l := range links {
		a := l.Attrs()
		if strings.HasPrefix(a.Name, cfg.LinkPrefix) && a.Alias != "" && a.Name == n.hostName(a.Alias) {
			// A veth whose sliver just went away vanishes by itself.
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete veth %s: %w", a.Name, err))
			}
		}
	}
	if err := run(ns, "", "nft", "delete", "table", "inet", cfg.Table); err != nil && !strings.Contains(err.Error(), "No such file") {
		errs = append(errs, err)
	}
	if cfg.Uplink != "" {
		if up, err := h.LinkByName(cfg.Uplink); err == nil {
			errs = append(errs, removeQdiscs(h, up))
		}
	}
	return errors.Join(errs...)
}

// removeQdiscs removes the root qdisc plab put on link (leaving the
// kernel's default).
func removeQdiscs(h *netlink.Handle, link netlink.Link) error {
	qs, err := h.QdiscList(link)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT && q.Attrs().Handle == rootHandle {
			if err := h.QdiscDel(q); err != nil {
				return fmt.Errorf("remove qdisc of %s: %w", link.Attrs().Name, err)
			}
		}
	}
	return nil
}
