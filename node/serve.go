//go:build linux

package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/monitor"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/vnet"
	"github.com/plab/plab/vsh"
)

// Node is one running node: the manager, its sync with PLC, the resource
// monitor and the API, wired together.
type Node struct {
	M       *Manager
	Sync    *Syncer
	Monitor *monitor.Monitor
	API     *API
	// SSH is the SSH gateway (nil when ssh_listen is off); SSHHostKey its
	// public key in authorized_keys form.
	SSH        *vsh.Server
	SSHHostKey string
	helper     *os.File
	sshPort    atomic.Int32 // the gateway's bound port, once it serves
	apiPort    atomic.Int32 // the API's bound port, once it serves
	net        *vnet.Net    // nil: no sliver networking
	flows      *vnet.FlowLog
	tls        *tls.Config
	log        *slog.Logger
}

// StartOptions are what Start needs besides the state directory.
type StartOptions struct {
	// Backend runs the slivers; Start does not close it.
	Backend sliver.Backend
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Version is reported in the node's status.
	Version string
	// SyncBackoff is the first wait after a failed poll of PLC (default 1 s).
	SyncBackoff time.Duration
	// Helper is the static plab binary the SSH gateway runs inside slivers
	// for scp and sftp (default: this program, which must then be static).
	Helper string
	// Log receives what the node does (nil: discard).
	Log *slog.Logger
}

// Start opens the enrolled node in dir: identity, configuration, lease
// database (recovered), PLC client and monitor. Serve runs it.
func Start(ctx context.Context, dir string, o StartOptions) (*Node, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	id, err := loadIdentity(dir)
	if err != nil {
		return nil, err
	}
	if err := checkCertificate(id, cfg.Hostname, o.Now()); err != nil {
		return nil, err
	}
	host, err := (&monitor.Sampler{Dir: dir}).Sample()
	if err != nil {
		return nil, err
	}
	n := &Node{log: o.Log}
	var network Network
	if cfg.Uplink != "" {
		if n.net, err = vnet.Open(netConfig(cfg, o.Log)); err != nil {
			return nil, err
		}
		network = n.net
		if n.flows, err = n.net.StartFlowLog(context.WithoutCancel(ctx), filepath.Join(dir, vnet.FlowLogName), cfg.FlowRetention.d()); err != nil {
			n.net.Close()
			return nil, err
		}
	}
	m, err := Open(ctx, cfg, Options{
		Dir: dir, Backend: o.Backend, Net: network, Key: id.key, Trust: id.trust, Now: o.Now,
		CPUs: sliver.MilliCPU(runtime.NumCPU() * 1000), Memory: host.MemoryTotal,
		Changed: func() {
			if n.Monitor != nil {
				n.Monitor.Trigger()
			}
		},
		Log: o.Log.With("subsystem", "manager"),
	})
	if err != nil {
		n.closeNet()
		return nil, err
	}
	n.M = m
	var kp ca.Keypair
	if err := kp.Set(id.cert, id.key); err != nil {
		m.Close()
		return nil, err
	}
	trust, err := ca.NewTrust(o.Now, id.root)
	if err != nil {
		m.Close()
		return nil, err
	}
	plc := &api.Client{BaseURL: cfg.PLC, HTTP: &http.Client{Transport: &http.Transport{
		TLSClientConfig: ca.ClientConfig(trust, kp.Get, ca.RolePLC, cfg.PLCName),
	}}}
	n.Sync = &Syncer{M: m, Client: plc, MinBackoff: o.SyncBackoff}
	n.Monitor, err = monitor.New(monitor.Config{
		Dir: dir, Source: m, Interval: time.Duration(m.cfg.ReportInterval), Now: o.Now,
		Send: func(ctx context.Context, r api.Report) error {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if port := n.sshPort.Load(); port > 0 {
				r.SSHHostKey, r.SSHPort = n.SSHHostKey, int(port)
			}
			r.APIPort = int(n.apiPort.Load())
			return plc.Do(ctx, "POST", "/v1/node/report", r, nil)
		},
		Log: o.Log.With("subsystem", "monitor"),
	})
	if err != nil {
		m.Close()
		return nil, err
	}
	if err := n.startSSH(dir, cfg, o); err != nil {
		m.Close()
		return nil, err
	}
	n.API = &API{M: m, Sync: n.Sync, Metrics: n.Monitor.Handler(), Version: o.Version, Log: o.Log.With("subsystem", "api"),
		LastReport: func() time.Time { _, at, _ := n.Monitor.LastReport(); return at }}
	// The API presents the node's certificate; users check it against
	// PLC's CA and the node's name. Client certificates are optional (users
	// sign requests instead); one that is sent must be PLC's.
	n.tls = ca.ServerConfig(trust, kp.Get, ca.RolePLC)
	verify := n.tls.VerifyConnection
	n.tls.ClientAuth = tls.RequestClientCert
	n.tls.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return verify(cs)
	}
	return n, nil
}

// startSSH makes the SSH gateway unless ssh_listen is off: its host key
// (made at the first start), the sliver keys of the moment, forwarding
// into slivers only, and the helper for file transfer.
func (n *Node) startSSH(dir string, cfg Config, o StartOptions) error {
	if cfg.withDefaults().SSHListen == "off" {
		return nil
	}
	key, pub, err := LoadHostKey(dir)
	if err != nil {
		return err
	}
	path := o.Helper
	if path == "" {
		if path, err = os.Executable(); err != nil {
			return fmt.Errorf("ssh gateway: find the plab binary for scp and sftp: %w", err)
		}
	}
	if n.helper, err = os.Open(path); err != nil {
		return fmt.Errorf("ssh gateway: open the helper for scp and sftp: %w", err)
	}
	n.SSH, err = vsh.New(vsh.Config{
		HostKey: key, Keys: n.M.AuthorizedKeys, Slivers: o.Backend, Dial: n.M.DialSliver,
		Helper: n.helper, HelperArgs: []string{"plab", "vsh-helper"},
		IdleTimeout: cfg.SSHIdleTimeout.d(), MaxSessions: cfg.SSHMaxSessions,
		Log: o.Log.With("subsystem", "ssh"),
	})
	if err != nil {
		n.helper.Close()
		return err
	}
	n.SSHHostKey = pub
	return nil
}

// ServeSSH runs the SSH gateway on ln until ctx ends, then closes its
// connections.
func (n *Node) ServeSSH(ctx context.Context, ln net.Listener) error {
	if n.SSH == nil {
		return fmt.Errorf("the SSH gateway is off (ssh_listen); set ssh_listen in config.json: %w", errdefs.ErrInvalid)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	n.log.Info("ssh gateway serving", "addr", ln.Addr().String(), "host_key", n.SSHHostKey)
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		n.sshPort.Store(int32(a.Port))
		n.Monitor.Trigger() // PLC learns the key and port now
	}
	err := n.SSH.Serve(ln)
	if ctx.Err() != nil {
		err = nil
	}
	return err
}

// checkCertificate refuses a node certificate that is not for this node
// or no longer valid, with what to do.
func checkCertificate(id identity, host string, now time.Time) error {
	pub, err := cred.NewPublicKey(id.cert.PublicKey)
	switch {
	case err != nil || !pub.Equal(id.key.Public()):
		return fmt.Errorf("node certificate does not match node.key; enroll the node again: %w", errdefs.ErrInvalid)
	case now.After(id.cert.NotAfter):
		return fmt.Errorf("node certificate expired at %s; enroll the node again with a new token: %w", id.cert.NotAfter.UTC().Format(time.RFC3339), errdefs.ErrExpired)
	case id.cert.VerifyHostname(host) != nil && (len(id.cert.DNSNames) == 0 || id.cert.DNSNames[0] != host):
		return fmt.Errorf("node certificate is not for %s; enroll the node again: %w", host, errdefs.ErrInvalid)
	}
	return nil
}

// Serve answers the node API on ln (TLS) and runs the housekeeping, the
// sync with PLC and the monitor, until ctx ends. The slivers keep running
// after it returns.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: n.API.Handler(), TLSConfig: n.tls,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for _, run := range []func(context.Context) error{n.M.Run, n.Sync.Run, n.Monitor.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		n.apiPort.Store(int32(a.Port))
	}
	n.Monitor.Trigger() // a first report at once
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		srv.Shutdown(sctx)
	}()
	n.log.Info("node serving", "hostname", n.M.cfg.Hostname, "addr", ln.Addr().String(), "slivers", n.M.Count())
	err := srv.ServeTLS(ln, "", "")
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		select {
		case err = <-errc:
		default:
			err = nil
		}
	}
	return err
}

// Close closes the manager. The slivers keep running, and so does their
// networking.
func (n *Node) Close() error {
	if n.SSH != nil {
		n.SSH.Close()
	}
	if n.helper != nil {
		n.helper.Close()
	}
	n.closeNet()
	return n.M.Close()
}

func (n *Node) closeNet() {
	if n.flows != nil {
		n.flows.Close()
	}
	if n.net != nil {
		n.net.Close()
	}
}

// netConfig is sliver networking's configuration from the node's.
func netConfig(cfg Config, log *slog.Logger) vnet.Config {
	c := vnet.Config{NetNS: cfg.NetNS, Uplink: cfg.Uplink, Cap: cfg.BandwidthCap, Resolvers: cfg.Resolvers,
		EchoRate: cfg.EchoRate, OptionsRate: cfg.OptionsRate}
	if a, err := netip.ParseAddr(cfg.Address); err == nil {
		c.Address = a
	}
	if log != nil {
		c.Log = log.With("subsystem", "vnet")
	}
	return c
}

// CleanupNetwork removes the sliver networking of the node in dir (for
// plab node cleanup); a node without a configuration or an uplink has none.
func CleanupNetwork(dir string) error {
	cfg, err := LoadConfig(dir)
	if err != nil || cfg.Uplink == "" {
		return nil
	}
	return vnet.Cleanup(netConfig(cfg, nil))
}

// Usage is every sliver's usage, for the monitor.
func (m *Manager) Usage(ctx context.Context) ([]monitor.SliverUsage, error) {
	m.mu.Lock()
	names := make([]string, 0, len(m.leases))
	for name, r := range m.leases {
		if r.State == stateActive {
			names = append(names, name)
		}
	}
	m.mu.Unlock()
	out := make([]monitor.SliverUsage, 0, len(names))
	for _, name := range names {
		st, err := m.backend.Stats(ctx, name)
		if err != nil {
			continue // destroyed meanwhile
		}
		u := monitor.SliverUsage{Slice: name, Stats: st}
		if m.net != nil {
			if c, err := m.net.Counters(name); err == nil {
				u.TxBytes, u.RxBytes = int64(c.TxBytes), int64(c.RxBytes)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

var _ monitor.Source = (*Manager)(nil)
