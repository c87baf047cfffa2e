package plc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/store"
)

// TestMain lets the test binary act as a PLC server process for the kill -9
// test: PLAB_TEST_PLC_DIR names its directory.
func TestMain(m *testing.M) {
	if dir := os.Getenv("PLAB_TEST_PLC_DIR"); dir != "" {
		os.Exit(servePLC(dir))
	}
	os.Exit(m.Run())
}

func servePLC(dir string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p, err := Open(context.Background(), Config{Dir: dir, Authorities: []string{ln.Addr().String()}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := p.Serve(context.Background(), ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startPLC runs the PLC in dir as a child process and returns its URL.
func startPLC(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PLAB_TEST_PLC_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.Fatalf("PLC process did not start: %q, %v", line, err)
	}
	return cmd, "https://" + addr
}

// TestKill9DuringTicketBurst kills PLC with SIGKILL while clients ask for
// tickets: after a restart, every ticket any client received is in the
// database.
func TestKill9DuringTicketBurst(t *testing.T) {
	dir := t.TempDir()
	admin := newUser(t, "admin@plab.test")
	if err := Init(ctx, dir, InitOptions{Settings: Settings{Name: "plc.test", Hosts: []string{"127.0.0.1"}},
		AdminEmail: admin.email, AdminName: "Admin", AdminKey: admin.pub}); err != nil {
		t.Fatal(err)
	}
	root, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	trust, _ := ca.NewTrust(nil, root.Certificate())
	client := func(url string) *api.Client {
		return &api.Client{BaseURL: url,
			HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(trust, nil, ca.RolePLC, "plc.test")}, Timeout: 10 * time.Second},
			Sign: func(r *http.Request) error { return httpsig.Sign(r, admin.id, time.Now()) }}
	}
	cmd, url := startPLC(t, dir)
	c := client(url)
	for _, req := range []struct {
		path string
		in   any
	}{
		{"/v1/sites", api.Site{LoginBase: "burst", Name: "Burst", MaxSlices: 10, MaxSlivers: 10, Enabled: true}},
		{"/v1/nodes", api.Node{Hostname: "n1.burst.test", Site: "burst"}},
		{"/v1/slices", api.Slice{Name: "burst_x"}},
	} {
		if err := c.Do(ctx, "POST", req.path, req.in, nil); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var got []string
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var tk api.Tickets
				err := c.Do(ctx, "POST", "/v1/slices/burst_x/tickets", api.TicketRequest{Nodes: []string{"n1.burst.test"}}, &tk)
				if err != nil {
					return // the server died under us
				}
				mu.Lock()
				for _, x := range tk.Tickets {
					got = append(got, x.ID)
				}
				if len(got) >= 150 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
		t.Fatal("clients did not get 150 tickets")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	wg.Wait()
	mu.Lock()
	received := append([]string(nil), got...)
	mu.Unlock()
	t.Logf("clients received %d tickets before the kill", len(received))

	// A new PLC process on the same directory serves, and knows them all.
	_, url = startPLC(t, dir)
	var who api.Whoami
	if err := client(url).Do(ctx, "GET", "/v1/whoami", nil, &who); err != nil {
		t.Fatalf("restarted PLC: %v", err)
	}
	s, err := store.Open(ctx, filepath.Join(dir, "plc.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	missing := 0
	err = s.View(ctx, func(tx *store.Tx) error {
		for _, id := range received {
			if _, err := tx.Ticket(ctx, id); err != nil {
				missing++
				if missing < 5 {
					t.Errorf("ticket %s was handed out but is not in the database: %v", id, err)
				}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if missing > 0 {
		t.Errorf("%d of %d received tickets lost", missing, len(received))
	}
}
