//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/plc/plctest"
	"github.com/plab/plab/sliver/oci"
)

var ctx = context.Background()

var backendSeq atomic.Uint32

// backendConfig is a sliver backend private to one test; everything it
// made is removed, and checked gone, when the test ends.
func backendConfig(t testing.TB, dir string, max int) oci.Config {
	t.Helper()

	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "runc", "mkfs.btrfs", "busybox")
	for d := dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o711) // slivers must reach their root filesystems
	}
	n := backendSeq.Add(1)
	cfg := oci.Config{
		StateDir:       dir,
		RunDir:         filepath.Join(t.TempDir(), "run"),
		CgroupParent:   fmt.Sprintf("plabnodetest-%d-%d", os.Getpid(), n),
		UIDBase:        0x80000000 + ((uint32(os.Getpid())%4)*16+n%16)*0x1000000, // 256 slivers each, clear of other packages' tests
		MaxSlivers:     max,
		LayerImageSize: 4 << 30,
	}
	if max > 256 { // benchmarks, which run alone
		cfg.UIDBase = 0x40000000
	}
	t.Cleanup(func() {
		if err := oci.Cleanup(context.Background(), cfg); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		if left, _ := oci.HostObjects(cfg); len(left) > 0 {
			t.Errorf("after Cleanup the host still holds:\n%s", strings.Join(left, "\n"))
		}
	})
	return cfg
}

// clock is a test clock that starts at the real time.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// world is a PLC, a site with a user, and one node serving on loopback.
type world struct {
	t     testing.TB
	plc   *plctest.PLC
	alice *plctest.User
	clock *clock
	node  *testNode
}

// testNode is an enrolled node running in the test process.
type testNode struct {
	host    string
	dir     string
	addr    string
	url     string
	cfg     Config
	bcfg    oci.Config
	quiet   bool
	backend *oci.Backend
	n       *Node
	cancel  context.CancelFunc
	done    chan error
}

type worldOpts struct {
	cfg        Config // node settings: hostname and PLC are filled in
	maxSlivers int
	quiet      bool // log warnings only (benchmarks)
	enrollOnly bool // leave the node to the test to start
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	testenv.RequireRoot(t)
	w := &world{t: t, plc: plctest.Start(t), alice: plctest.NewUser(t, "alice@ucb.test"), clock: &clock{}}
	w.plc.Site("ucb")
	w.plc.Person(w.alice, "ucb", "user", "pi")
	w.node = w.enroll("n1.ucb.test", o)
	if !o.enrollOnly {
		w.node.start(t, w.clock)
	}
	return w
}

// enroll registers host at PLC and enrolls a node for it.
func (w *world) enroll(host string, o worldOpts) *testNode {
	t := w.t
	t.Helper()
	tok := w.plc.Node(host, "ucb")
	dir := filepath.Join(t.TempDir(), "state")
	if o.maxSlivers == 0 {
		o.maxSlivers = 32
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := o.cfg
	cfg.Hostname, cfg.PLC, cfg.Listen, cfg.Authorities = host, w.plc.URL, addr, []string{addr}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = Duration(time.Second)
	}
	if err := Enroll(ctx, EnrollOptions{Dir: dir, Config: cfg, Token: tok, CAFingerprint: w.plc.CAFingerprint}); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	cfg, err = LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{host: host, dir: dir, addr: addr, url: "https://" + addr, cfg: cfg, bcfg: backendConfig(t, dir, o.maxSlivers), quiet: o.quiet}
}

// start opens the backend and the node and serves it until stop.
func (n *testNode) start(t testing.TB, c *clock) {
	t.Helper()
	level := slog.LevelInfo
	if n.quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	bcfg := n.bcfg
	bcfg.Log = log.With("subsystem", "backend")
	b, err := oci.New(ctx, bcfg)
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	if _, err := b.Images().EnsureDefault(ctx); err != nil { // as plab node serve does
		t.Fatal(err)
	}
	nd, err := Start(ctx, n.dir, StartOptions{Backend: b, Now: c.Now, SyncBackoff: 50 * time.Millisecond, Log: log})
	if err != nil {
		b.Close()
		t.Fatalf("Start: %v", err)
	}
	var ln net.Listener
	for range 50 {
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // the previous server's socket is closing
	}
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	n.backend, n.n, n.cancel, n.done = b, nd, cancel, make(chan error, 1)
	go func() { n.done <- nd.Serve(sctx, ln) }()
	t.Cleanup(func() { n.stop(t) })
}

// stop stops serving and closes the node and its backend; the slivers
// keep running.
func (n *testNode) stop(t testing.TB) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	n.n.Close()
	n.backend.Close()
	n.cancel = nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is a user's client of a node API.
func (w *world) client(u *plctest.User, n *testNode) *api.Client {
	return &api.Client{
		BaseURL: n.url,
		HTTP:    &http.Client{Transport: &http.Transport{TLSClientConfig: w.plc.TLSConfigFor(n.host)}},
		Sign: func(r *http.Request) error {
			r.Header.Set(api.KeyHeader, u.Pub)
			return httpsig.Sign(r, u.ID, w.clock.Now())
		},
	}
}

// redeem presents a ticket at the node as u.
func (w *world) redeem(u *plctest.User, n *testNode, tk string) (api.Lease, error) {
	var l api.Lease
	err := w.client(u, n).Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk}, &l)
	return l, err
}

// ticket gets one ticket of slice on n as u.
func (w *world) ticket(u *plctest.User, slice string, n *testNode, res api.Resources) string {
	w.t.Helper()
	return w.plc.Tickets(u, slice, res, n.host)[0].Ticket
}

// mustErr checks err has kind want.
func mustErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

// sliverState is the backend's state of name ("" when it does not exist).
func (n *testNode) sliverState(name string) string {
	info, err := n.backend.State(ctx, name)
	if err != nil {
		return ""
	}
	return string(info.State)
}

// signOnly signs r as u without sending u's key.
func signOnly(r *http.Request, u *plctest.User, w *world) error {
	return httpsig.Sign(r, u.ID, w.clock.Now())
}
