//go:build linux

package vsh

// Attacks on the gateway, each written so that it fails if the attack
// works: logins that must be refused, the helper's descriptors seen from
// inside the sliver, paths that try to leave the sliver, forwarding to the
// host, requests the gateway must not serve, limits, environment and
// scp look-alike commands. The real OpenSSH client is used where it can
// make the request; golang.org/x/crypto/ssh where only the protocol can.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/sliver/oci"
)

// TestAttackLimits: a slice's sessions and forwarded connections are
// bounded across all its logins, channel types other than session and
// direct-tcpip are refused, and floods of refused opens leave nothing
// behind.
func TestAttackLimits(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{config: func(c *Config, b *oci.Backend) { c.MaxSessions = 3; c.Dial = withDial(b) }})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	g.setKeys("site_b", pub)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	isShortage := func(err error) bool {
		var oce *ssh.OpenChannelError
		return errors.As(err, &oce) && oce.Reason == ssh.ResourceShortage
	}

	t.Run("sessions", func(t *testing.T) {
		c1, c2, cb := g.client(t, "site_a", key), g.client(t, "user+site_a", key), g.client(t, "site_b", key)
		var held []*ssh.Session
		for _, c := range []*ssh.Client{c1, c1, c2} {
			s, err := c.NewSession()
			if err != nil {
				t.Fatalf("session %d of site_a: %v", len(held)+1, err)
			}
			held = append(held, s)
		}
		for i, c := range []*ssh.Client{c1, c2, g.client(t, "site_a", key)} {
			if s, err := c.NewSession(); err == nil {
				s.Close()
				t.Errorf("session 4 of site_a on login %d opened; want refused (3 at most across logins)", i)
			} else if !isShortage(err) {
				t.Errorf("session 4 of site_a: %v; want resource shortage", err)
			}
		}
		host, _, _ := net.SplitHostPort(g.addr)
		if _, errOut, code := g.run(t, "ssh", append(verbose(g.sshOpts(key, "-p")), "site_a@"+host, "true")...); code != 255 || !strings.Contains(errOut, "sessions open") {
			t.Errorf("ssh into a full site_a = %q %d; want refused", errOut, code)
		}
		for range 3 {
			s, err := cb.NewSession()
			if err != nil {
				t.Fatalf("site_b while site_a is full: %v", err)
			}
			defer s.Close()
		}
		held[0].Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := c2.NewSession()
			if err == nil {
				s.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a closed session never freed its slot: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, s := range held[1:] {
			s.Close()
		}
	})

	t.Run("channel types", func(t *testing.T) {
		c := g.client(t, "site_a", key)
		for _, typ := range []string{"x11", "forwarded-tcpip", "auth-agent@openssh.com", "direct-streamlocal@openssh.com",
			"forwarded-streamlocal@openssh.com", "tun@openssh.com", "Session", "session ", "session\x00", "direct-tcpip\x00", ""} {
			ch, _, err := c.OpenChannel(typ, nil)
			var oce *ssh.OpenChannelError
			if err == nil {
				ch.Close()
				t.Errorf("channel %q opened; want refused", typ)
			} else if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType {
				t.Errorf("channel %q: %v; want unknown channel type", typ, err)
			}
		}
	})

	t.Run("floods", func(t *testing.T) {
		c := g.client(t, "site_a", key)
		base := fds()
		var wg sync.WaitGroup
		var opened atomic.Int32
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					var err error
					var ch ssh.Channel
					switch (w + i) % 3 {
					case 0:
						ch, _, err = c.OpenChannel("x11", nil)
					case 1:
						ch, _, err = c.OpenChannel("direct-tcpip", []byte("malformed"))
					case 2:
						ch, err = forwardTo(c, "198.18.0.1", 80)
					}
					if err == nil {
						opened.Add(1)
						ch.Close()
					}
				}
			}()
		}
		wg.Wait()
		if n := opened.Load(); n != 0 {
			t.Errorf("%d refused channels opened", n)
		}
		if out, _, code, err := runGo(c, "echo alive", ""); err != nil || code != 0 || out != "alive\n" {
			t.Errorf("a session after 3200 refused opens = %q %d %v", out, code, err)
		}
		for deadline := time.Now().Add(5 * time.Second); fds() > base+8; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("the gateway holds %d descriptors after the flood, %d before", fds(), base)
				break
			}
		}
	})

	t.Run("forwards", func(t *testing.T) {
		// Each forwarded connection holds a socket of the node's daemon;
		// the sliver's httpd holds the other end open.
		if _, errOut, code := g.ssh(t, key, "site_a", "mkdir -p /www && echo SLIVER > /www/index.html && httpd -p 127.0.0.1:8090 -h /www"); code != 0 {
			t.Fatalf("httpd in the sliver: %q", errOut)
		}
		base := fds()
		var held []ssh.Channel
		defer func() {
			for _, ch := range held {
				ch.Close()
			}
		}()
		// Fill from several logins of the slice at once.
		logins := []*ssh.Client{g.client(t, "site_a", key), g.client(t, "site_a", key), g.client(t, "user+site_a", key)}
		var mu sync.Mutex
		var wg sync.WaitGroup
		refused := 0
		for _, c := range logins {
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 48 {
						ch, err := forwardTo(c, "127.0.0.1", 8090)
						mu.Lock()
						if err == nil {
							held = append(held, ch)
						} else if isShortage(err) {
							refused++
						} else {
							t.Errorf("forward: %v", err)
						}
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		if len(held) > maxForwards {
			t.Errorf("site_a holds %d forwarded connections across 3 logins; want at most %d", len(held), maxForwards)
		}
		if refused == 0 {
			t.Error("no forward refused")
		}
		if n := fds(); n > base+maxForwards+16 {
			t.Errorf("the gateway holds %d descriptors with site_a's forwards open, %d before: more than %d", n, base, maxForwards)
		}
		// Another slice is not held up; closing frees the slice's slots.
		if out, _, code := g.ssh(t, key, "site_b", "echo b"); code != 0 || out != "b\n" {
			t.Errorf("site_b while site_a's forwards are full = %q %d", out, code)
		}
		mu.Lock()
		for _, ch := range held[:10] {
			ch.Close()
		}
		held = held[10:]
		mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ch, err := forwardTo(logins[2], "127.0.0.1", 8090)
			if err == nil {
				if body := httpVia(ch); !strings.Contains(body, "SLIVER") {
					t.Errorf("a freed forward read %q", body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("closed forwards never freed their slots: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestAttackEnv: only LANG, LC_* and TERM reach the process; what a
// client sends beyond them (SetEnv/SendEnv, env requests after the
// command started, names with tricks in them) does not.
func TestAttackEnv(t *testing.T) {
	g := newGatewayWith(t, gatewayOpts{slivers: []string{"site_a"}})
	key, pub := keyFile(t)
	g.setKeys("site_a", pub)
	host, _, _ := net.SplitHostPort(g.addr)
	if _, errOut, code := g.ssh(t, key, "site_a", "echo 'echo ENV-RAN' > /tmp/evil && chmod +x /tmp/evil"); code != 0 {
		t.Fatal(errOut)
	}
	const show = `for v in LD_PRELOAD LD_LIBRARY_PATH BASH_ENV ENV SHELL LANGUAGE LC_X LC_PLAB LANG TERM HOME PATH USER; do eval "x=\${$v-unset}"; printf 'ENV:%s=%s\n' $v "$(printf %s "$x" | tr '\n' '~')"; done`
	refused := map[string]string{"LD_PRELOAD": "/tmp/evil.so", "LD_LIBRARY_PATH": "/tmp", "BASH_ENV": "/tmp/evil", "ENV": "/tmp/evil",
		"SHELL": "/tmp/evil", "LANGUAGE": "xx", "PATH": "/tmp:/bin", "HOME": "/tmp", "USER": "evil"}
	check := func(name, out string, extra map[string]string) {
		t.Helper()
		want := map[string]string{"LD_PRELOAD": "unset", "LD_LIBRARY_PATH": "unset", "BASH_ENV": "unset", "ENV": "unset",
			"SHELL": "unset", "LANGUAGE": "unset", "HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		for k, v := range extra {
			want[k] = v
		}
		got := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if _, kv, ok := strings.Cut(l, "ENV:"); ok && !strings.Contains(l, "printf") {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = strings.TrimRight(v, "\r")
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s=%q; want %q", name, k, got[k], v)
			}
		}
		if strings.Contains(out, "ENV-RAN") {
			t.Errorf("%s: the client's ENV ran", name)
		}
	}
	// OpenSSH's SetEnv.
	var setenv []string
	for k, v := range refused {
		setenv = append(setenv, k+"="+v)
	}
	setenv = append(setenv, "LANG=C.UTF-8", "LC_PLAB=ok", "TERM=dumb")
	out, errOut, code := g.run(t, "ssh", append(g.sshOpts(key, "-p"), "-o", "SetEnv="+strings.Join(setenv, " "), "site_a@"+host, show)...)
	if code != 0 {
		t.Fatalf("ssh with SetEnv: %q %d", errOut, code)
	}
	check("ssh -o SetEnv", out, map[string]string{"LANG": "C.UTF-8", "LC_PLAB": "ok", "TERM": "dumb", "USER": "root"})

	// The protocol: each refused name is refused, names with tricks too.
	c := g.client(t, "site_a", key)
	for _, pty := range []bool{false, true} {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range refused {
			if err := s.Setenv(k, v); err == nil {
				t.Errorf("env %s accepted", k)
			}
		}
		for _, kv := range [][2]string{{"LANG\x00LD_PRELOAD", "/tmp/evil.so"}, {"LD_PRELOAD\x00LANG", "/tmp/evil.so"}, {"LANGX", "x"}, {"lang", "x"}, {" LANG", "x"}, {"TERM2", "x"}} {
			if err := s.Setenv(kv[0], kv[1]); err == nil {
				t.Errorf("env %q accepted", kv[0])
			}
		}
		for _, kv := range [][2]string{{"LC_X", "1=2 LD_PRELOAD=/tmp/evil.so"}, {"LANG", "C.UTF-8"}} {
			if err := s.Setenv(kv[0], kv[1]); err != nil {
				t.Errorf("env %s: %v", kv[0], err)
			}
		}
		var b bytes.Buffer
		s.Stdout = &b
		if pty {
			if err := s.RequestPty("xterm\nLD_PRELOAD=/tmp/evil.so", 24, 80, ssh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
			in, _ := s.StdinPipe()
			if err := s.Shell(); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.SendRequest("env", true, ssh.Marshal(struct{ K, V string }{"LD_PRELOAD", "/tmp/evil.so"})); ok {
				t.Error("env after the shell started accepted")
			}
			io.WriteString(in, show+"; exit\n")
			s.Wait()
			check("a pty shell", b.String(), map[string]string{"LC_X": "1=2 LD_PRELOAD=/tmp/evil.so", "LANG": "C.UTF-8", "TERM": "xterm~LD_PRELOAD=/tmp/evil.so"})
		} else {
			if err := s.Start(show); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.SendRequest("env", true, ssh.Marshal(struct{ K, V string }{"LC_LATE", "x"})); ok {
				t.Error("env after the command started accepted")
			}
			s.Wait()
			check("exec", b.String(), map[string]string{"LC_X": "1=2 LD_PRELOAD=/tmp/evil.so", "LANG": "C.UTF-8", "TERM": "unset"})
		}
		s.Close()
	}
}
