// Package plc is PlanetLab Central: the registry of sites, people, keys,
// nodes and slices; the authority that decides who may do what and issues
// tickets; and the place nodes enroll, report and learn their delegated
// slices. It serves HTTPS+JSON under /v1 (wire types in package api) over
// a store (SQLite or PostgreSQL).
//
// A PLC's directory holds its identity:
//
//	plc.json   name and defaults
//	ca.crt     testbed CA root (public)      ca.key      its key (0600)
//	tls.crt    PLC's server certificate      tls.key     its key (0600)
//	ticket.key the key tickets are signed with (0600)
//	plc.db     the SQLite store, unless a PostgreSQL DSN is given
package plc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// Settings are PLC's policy knobs, kept in plc.json.
type Settings struct {
	// Name is PLC's name: the issuer of its tickets and the name in its
	// certificate.
	Name string `json:"name"`
	// Hosts are the names and addresses clients reach PLC by.
	Hosts []string `json:"hosts"`
	// SiteLoginBase is PLC's own site; its slices are administrative.
	SiteLoginBase string `json:"site"`
	// SliceLifetime is how long a new slice lives (default 2 weeks).
	SliceLifetime Duration `json:"slice_lifetime"`
	// MaxRenewal is how far ahead non-admins may renew (default 8 weeks).
	MaxRenewal Duration `json:"max_renewal"`
	// MaxNodesPerSlice is a new slice's node limit (default 1000).
	MaxNodesPerSlice int `json:"max_nodes_per_slice"`
}

// Duration is a time.Duration written as "336h" in JSON.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (s *Settings) defaults() {
	if s.SliceLifetime == 0 {
		s.SliceLifetime = Duration(14 * 24 * time.Hour)
	}
	if s.MaxRenewal == 0 {
		s.MaxRenewal = Duration(8 * 7 * 24 * time.Hour)
	}
	if s.MaxNodesPerSlice == 0 {
		s.MaxNodesPerSlice = 1000
	}
	if s.SiteLoginBase == "" {
		s.SiteLoginBase = "pl"
	}
}

// Config opens a PLC.
type Config struct {
	// Dir is the PLC directory made by Init.
	Dir string
	// DSN is the store; Dir/plc.db when empty.
	DSN string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Log receives PLC's log; discarded when nil.
	Log *slog.Logger
	// Authorities are the host[:port] names clients sign requests for, in
	// addition to the Hosts in plc.json.
	Authorities []string
	// Port, when set, is the port PLC serves on: clients may also sign for
	// each host of plc.json followed by it.
	Port string
}

// PLC is a running PLC: its identity, store and policy.
type PLC struct {
	settings  Settings
	store     *store.Store
	ca        *ca.CA
	trust     *ca.Trust
	tickets   *ticket.Trust
	ticketKey *cred.PrivateKey
	tlsCert   *ca.Keypair
	verifier  *httpsig.Verifier
	now       func() time.Time
	log       *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change nodes sync on
}

// Open opens the PLC in cfg.Dir.
func Open(ctx context.Context, cfg Config) (*PLC, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var st Settings
	raw, err := os.ReadFile(filepath.Join(cfg.Dir, "plc.json"))
	if err != nil {
		return nil, fmt.Errorf("open PLC in %s: %w (run plab plc init --dir %s first)", cfg.Dir, err, cfg.Dir)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("open PLC: %s/plc.json: %w: %w", cfg.Dir, err, errdefs.ErrInvalid)
	}
	st.defaults()
	root, err := ca.Load(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open PLC: %w", err)
	}
	trust, err := ca.NewTrust(cfg.Now, root.Certificate())
	if err != nil {
		return nil, fmt.Errorf("open PLC: %w", err)
	}
	tkey, err := cred.ReadKeyFile(filepath.Join(cfg.Dir, "ticket.key"))
	if err != nil {
		return nil, fmt.Errorf("open PLC: %w", err)
	}
	tlsKey, err := cred.ReadKeyFile(filepath.Join(cfg.Dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("open PLC: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(cfg.Dir, "tls.crt"))
	if err != nil {
		return nil, fmt.Errorf("open PLC: %w", err)
	}
	cert, err := ca.ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("open PLC: tls.crt: %w", err)
	}
	var kp ca.Keypair
	if err := kp.Set(cert, tlsKey); err != nil {
		return nil, fmt.Errorf("open PLC: %w", err)
	}
	tickets, err := ticket.NewTrust(ticket.Issuer{Role: ticket.RolePLC, Name: st.Name, Key: tkey.Public()})
	if err != nil {
		return nil, err
	}
	dsn := cfg.DSN
	if dsn == "" {
		dsn = filepath.Join(cfg.Dir, "plc.db")
	}
	s, err := store.Open(ctx, dsn, cfg.Log)
	if err != nil {
		return nil, err
	}
	p := &PLC{
		settings: st, store: s, ca: root, trust: trust, tickets: tickets, ticketKey: tkey, tlsCert: &kp,
		now: cfg.Now, log: cfg.Log, changed: make(chan struct{}),
	}
	p.verifier = &httpsig.Verifier{
		Key:         p.userKey,
		Once:        cred.NewMemoryOnce(cfg.Now),
		Authorities: authorities(st.Hosts, cfg),
		Now:         cfg.Now,
		Log:         cfg.Log,
		// Above MaxBody, so that decode, not the signature check, refuses
		// an oversized body, with a clearer message.
		MaxBody: 4 * MaxBody,
	}
	return p, nil
}

// Close closes the store.
func (p *PLC) Close() error { return p.store.Close() }

// Store returns the PLC's store (for tests and benchmarks).
func (p *PLC) Store() *store.Store { return p.store }

// Settings returns the PLC's settings.
func (p *PLC) Settings() Settings { return p.settings }

// TLSConfig is PLC's server TLS configuration: TLS 1.3, its certificate,
// and client certificates optional (users sign requests instead) but
// verified against the testbed CA when given.
func (p *PLC) TLSConfig() *tls.Config {
	cfg := ca.ServerConfig(p.trust, p.tlsCert.Get, ca.RoleNode)
	verify := cfg.VerifyConnection
	cfg.ClientAuth = tls.RequestClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return verify(cs)
	}
	return cfg
}

// notify wakes nodes waiting in a sync.
func (p *PLC) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *PLC) changes() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Handler returns PLC's HTTP handler.
func (p *PLC) Handler() http.Handler { return p.routes() }

func authorities(hosts []string, cfg Config) []string {
	out := append(append([]string{}, hosts...), cfg.Authorities...)
	if cfg.Port != "" {
		for _, h := range hosts {
			out = append(out, net.JoinHostPort(h, cfg.Port))
		}
	}
	return out
}
