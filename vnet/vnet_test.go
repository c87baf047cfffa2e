//go:build linux

package vnet

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOutbound: two slivers reach a server in the internet namespace, which
// sees the node's address (acceptance 1).
func TestOutbound(t *testing.T) {
	tp := newTopo(t, Config{})
	addr, seen := tp.server(0)
	host, port, _ := strings.Cut(addr, ":")
	for _, name := range []string{"site_a", "site_b"} {
		s := tp.sliver(name)
		a, err := tp.net.Attach(Sliver{Name: name, Pid: s.pid})
		if err != nil {
			t.Fatalf("Attach %s: %v", name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := s.run(ctx, "busybox", "nc", host, port)
		cancel()
		if err != nil || !strings.Contains(out, "you are "+nodeAddr+":") {
			t.Errorf("sliver %s (%s) to the internet: %q, %v; want the server to see %s", name, a.Addr, out, err, nodeAddr)
		}
		select {
		case ap := <-seen:
			if ap.Addr().String() != nodeAddr {
				t.Errorf("server saw %s, want %s", ap, nodeAddr)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("server saw no connection from %s", name)
		}
	}
	if got := len(tp.net.List()); got != 2 {
		t.Errorf("List = %d attachments, want 2", got)
	}
	for _, a := range tp.net.List() {
		if err := tp.net.Detach(a.Name); err != nil {
			t.Errorf("Detach %s: %v", a.Name, err)
		}
	}
}
