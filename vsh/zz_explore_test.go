//go:build linux

package vsh

import (
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/sliver/oci"
)

func TestZZExplore(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"},
		config: func(c *Config, b *oci.Backend) { c.Dial = withDial(b); c.MaxSessions = 4 }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	if _, e, c := g.ssh(t, key, "site_a", "mkdir -p /www && httpd -p 127.0.0.1:8080 -h /www"); c != 0 {
		t.Fatal(e)
	}
	data, _ := os.ReadFile(key)
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{User: "site_a", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	before := fds()
	start := time.Now()
	var n int
	for i := 0; i < 2000; i++ {
		c, err := cl.Dial("tcp", "127.0.0.1:8080")
		if err != nil {
			t.Logf("dial %d: %v", i, err)
			break
		}
		defer c.Close()
		n++
	}
	t.Logf("opened %d forwards in %v; gateway fds %d -> %d", n, time.Since(start), before, fds())
}
