//go:build linux

package vnet

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InNamespace runs fn on an OS thread that has joined the network
// namespace ns: sockets fn opens belong to ns (tests and the testbed reach
// into namespaces they made with it).
func InNamespace(ns netns.NsHandle, fn func() error) error { return inNS(ns, fn) }

// inNS runs fn on an OS thread that has joined the network namespace ns
// (nothing to join when ns is not open); the thread is thrown away
// afterwards if it could not return to where it was. Sysctls under
// /proc/sys/net and programs started from fn see that namespace.
func inNS(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked: the thread dies with the goroutine unless it got
		// back to its own namespace.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter the node's network namespace: %w", err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// sysctl writes value to the sysctl key (net.ipv4.ip_forward) in ns.
func sysctl(ns netns.NsHandle, key, value string) error {
	return inNS(ns, func() error {
		p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// run runs a program in ns with stdin, and returns its error with its
// output.
func run(ns netns.NsHandle, stdin string, name string, args ...string) error {
	return inNS(ns, func() error {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// pidNS opens the network namespace of process pid.
func pidNS(pid int) (netns.NsHandle, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netns.None(), fmt.Errorf("open the network namespace of process %d: %w", pid, err)
	}
	return netns.NsHandle(fd), nil
}
