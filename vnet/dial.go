//go:build linux

package vnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netns"

	"github.com/plab/plab/errdefs"
)

// DialInside connects over TCP to addr ("host:port") from inside the
// network namespace of process pid (a sliver's init), and only to an
// address inside it: loopback, "localhost" or one of the namespace's own
// addresses. It serves the SSH gateway's local forwarding (ssh -L), which
// must reach what the sliver listens on and nothing else.
func DialInside(ctx context.Context, pid int, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("forward to %q: give host:port: %w", addr, errdefs.ErrInvalid)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("forward to %s: only addresses inside the sliver are reached (localhost, 127.0.0.1, ::1 or its own address), and names are not resolved: %w", host, errdefs.ErrInvalid)
	}
	ip = ip.Unmap()
	ns, err := netns.GetFromPath("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("forward into the sliver: its network namespace: %w", err)
	}
	defer ns.Close()
	var conn net.Conn
	err = inNS(ns, func() error {
		if !ip.IsLoopback() {
			inside, err := ownAddress(ip)
			if err != nil {
				return err
			}
			if !inside {
				return fmt.Errorf("forward to %s: not an address of the sliver; only addresses inside it are reached (localhost, 127.0.0.1, ::1 or its own address): %w", ip, errdefs.ErrDenied)
			}
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err != nil {
			return fmt.Errorf("forward to %s inside the sliver: %w", net.JoinHostPort(ip.String(), port), err)
		}
		conn = c
		return nil
	})
	return conn, err
}

// ownAddress says whether ip is assigned to an interface of the current
// thread's network namespace.
func ownAddress(ip netip.Addr) (bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, fmt.Errorf("list the sliver's addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == ip {
				return true, nil
			}
		}
	}
	return false, nil
}
