//go:build linux

// Package nodetest runs real nodes for tests: each one enrolled with a
// test PLC, with its own runc backend, its node API and SSH gateway on
// loopback, and PLC's record pointing at them. Everything a node made is
// removed, and checked gone, when the test ends.
package nodetest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/node"
	"github.com/plab/plab/plc/plctest"
	"github.com/plab/plab/sliver/oci"
)

// Options shape a test node.
type Options struct {
	// MaxSlivers bounds the node's slivers (default 8).
	MaxSlivers int
	// Helper is the static plab binary for scp and sftp (default: none;
	// the gateway then opens this test binary, which only exec needs not).
	Helper string
	// Log receives the node's log (default: warnings to the test log).
	Log *slog.Logger
}

// Node is a running test node.
type Node struct {
	Host    string
	Dir     string
	APIAddr string
	SSHAddr string
	N       *node.Node

	t       testing.TB
	o       Options
	bcfg    oci.Config
	backend *oci.Backend
	cancel  context.CancelFunc
	done    chan struct{}
}

var seq atomic.Uint32

// Start registers host at site with p, enrolls a node for it and serves
// it. PLC's record of the node gets the loopback address.
func Start(t testing.TB, p *plctest.PLC, host, site string, o Options) *Node {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "runc", "mkfs.btrfs", "busybox")
	if o.MaxSlivers == 0 {
		o.MaxSlivers = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tok := p.Node(host, site)
	dir := t.TempDir()
	for d := dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o711) // slivers must reach their root filesystems
	}
	api0, ssh0 := freeAddr(t), freeAddr(t)
	cfg := node.Config{Hostname: host, PLC: p.URL, Listen: api0, Authorities: []string{api0, host}, SSHListen: ssh0,
		ReportInterval: node.Duration(time.Second), MaxSlivers: o.MaxSlivers}
	state := filepath.Join(dir, "state")
	if err := node.Enroll(context.Background(), node.EnrollOptions{Dir: state, Config: cfg, Token: tok, CAFingerprint: p.CAFingerprint}); err != nil {
		t.Fatalf("enroll %s: %v", host, err)
	}
	n := seq.Add(1)
	bcfg := oci.Config{
		StateDir:       state,
		RunDir:         filepath.Join(dir, "run"),
		CgroupParent:   fmt.Sprintf("plabnodes-%d-%d", os.Getpid(), n),
		UIDBase:        0x20000000 + (uint32(os.Getpid())%4)*0x4000000 + (n%128)*0x80000,
		MaxSlivers:     o.MaxSlivers,
		LayerImageSize: 1 << 30,
	}
	tn := &Node{Host: host, Dir: state, APIAddr: api0, SSHAddr: ssh0, t: t, o: o, bcfg: bcfg}
	t.Cleanup(func() {
		tn.Stop()
		if err := oci.Cleanup(context.Background(), bcfg); err != nil {
			t.Errorf("node %s: cleanup: %v", host, err)
		}
		if left, _ := oci.HostObjects(bcfg); len(left) > 0 {
			t.Errorf("node %s: after cleanup the host still holds:\n%s", host, strings.Join(left, "\n"))
		}
	})
	p.Do(p.Admin, "PATCH", "/v1/nodes/"+host, api.NodeUpdate{Addresses: []string{"127.0.0.1"}}, nil)
	tn.Start()
	// Users find the node through PLC: wait for its first report.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var rec api.Node
		p.Do(p.Admin, "GET", "/v1/nodes/"+host, nil, &rec)
		if rec.APIPort != 0 && rec.SSHHostKey != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s never reported its API and SSH ports to PLC", host)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return tn
}

// Start serves the node (again, after Stop).
func (n *Node) Start() {
	t := n.t
	t.Helper()
	if n.cancel != nil {
		return
	}
	ctx := context.Background()
	b, err := oci.New(ctx, n.bcfg)
	if err != nil {
		t.Fatalf("node %s: backend: %v", n.Host, err)
	}
	if _, err := b.Images().EnsureDefault(ctx); err != nil {
		b.Close()
		t.Fatal(err)
	}
	nd, err := node.Start(ctx, n.Dir, node.StartOptions{Backend: b, Helper: n.o.Helper, SyncBackoff: 100 * time.Millisecond, Log: n.o.Log})
	if err != nil {
		b.Close()
		t.Fatalf("node %s: start: %v", n.Host, err)
	}
	apiLn, sshLn := listen(t, n.APIAddr), listen(t, n.SSHAddr)
	sctx, cancel := context.WithCancel(ctx)
	n.backend, n.N, n.cancel, n.done = b, nd, cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		sshDone := make(chan struct{})
		go func() { defer close(sshDone); _ = nd.ServeSSH(sctx, sshLn) }()
		if err := nd.Serve(sctx, apiLn); err != nil {
			t.Errorf("node %s: serve: %v", n.Host, err)
		}
		<-sshDone
	}()
}

// Stop stops serving and closes the node; its slivers keep running, as
// when plab node serve stops.
func (n *Node) Stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.N.Close()
	n.backend.Close()
	n.cancel = nil
}

// listen listens on addr, waiting for a previous server's socket to go.
func listen(t testing.TB, addr string) net.Listener {
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Slivers names the slivers the node's backend holds (running or not).
func (n *Node) Slivers() []string {
	n.t.Helper()
	infos, err := n.backend.List(context.Background())
	if err != nil {
		n.t.Fatalf("node %s: list slivers: %v", n.Host, err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}
