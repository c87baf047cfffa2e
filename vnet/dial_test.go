//go:build linux

package vnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
)

// TestDialInside: forwarding reaches what listens inside a sliver's
// namespace (loopback, localhost, its own address) and nothing outside it,
// neither the host's loopback nor another address.
func TestDialInside(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "ip", "sleep")
	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := child.Process.Pid
	ns, err := netns.GetFromPath("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var lo, own net.Listener
	err = InNamespace(ns, func() error {
		for _, args := range [][]string{{"link", "set", "lo", "up"}, {"link", "add", "d0", "type", "veth", "peer", "name", "d1"},
			{"addr", "add", "100.64.9.9/32", "dev", "d0"}, {"link", "set", "d0", "up"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return errors.New(string(out))
			}
		}
		var err error
		if lo, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		own, err = net.Listen("tcp", "100.64.9.9:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	defer own.Close()
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hostHit := make(chan struct{}, 1)
	go func() {
		if c, err := host.Accept(); err == nil {
			c.Close()
			hostHit <- struct{}{}
		}
	}()
	serve := func(ln net.Listener, word string) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(word))
			c.Close()
		}
	}
	go serve(lo, "lo")
	go serve(own, "own")
	port := func(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for addr, want := range map[string]string{
		"127.0.0.1:" + port(lo):   "lo",
		"localhost:" + port(lo):   "lo",
		"100.64.9.9:" + port(own): "own",
	} {
		c, err := DialInside(ctx, pid, addr)
		if err != nil {
			t.Errorf("DialInside(%s): %v", addr, err)
			continue
		}
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != want {
			t.Errorf("DialInside(%s) reached %q, want %q", addr, got, want)
		}
	}
	for addr, want := range map[string]error{
		"127.0.0.1:" + port(host): nil, // the host's port, not listened on inside
		"198.18.0.1:80":           errdefs.ErrDenied,
		"10.0.0.1:22":             errdefs.ErrDenied,
		"example.com:80":          errdefs.ErrInvalid,
		"no-port":                 errdefs.ErrInvalid,
	} {
		c, err := DialInside(ctx, pid, addr)
		if err == nil {
			c.Close()
			t.Errorf("DialInside(%s) connected; want refused", addr)
			continue
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("DialInside(%s) = %v, want %v", addr, err, want)
		}
	}
	select {
	case <-hostHit:
		t.Error("a forward inside the sliver reached the host's loopback")
	case <-time.After(100 * time.Millisecond):
	}
}
