// Package svcmgr is the researcher's side of plab, PlanetLab's service
// manager with its integrated broker: it keeps the user's configuration and
// per-slice state in a directory (~/.plab), talks to PLC with the user's SSH
// key, picks nodes for a slice, gets tickets and redeems them at every node
// in parallel, and can always resume: a slice's tickets and leases are saved
// as they arrive, so `plab slice sync` finishes what a failure interrupted.
//
//	login ──▶ config.json, plc-ca.pem (CA pinned)
//	create ──▶ ads ─▶ pick nodes ─▶ tickets (saved) ─▶ redeem ×N in parallel ─▶ leases (saved)
//	sync ──▶ for each node without a running sliver: redeem again (a fresh ticket if needed)
package svcmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/atomicfile"
)

// Files of the state directory.
const (
	configFile = "config.json"
	caFile     = "plc-ca.pem"
	slicesDir  = "slices"
)

// DefaultDir is the state directory when neither --config nor PLAB_CONFIG
// names one: ~/.plab.
func DefaultDir() string {
	if d := os.Getenv("PLAB_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".plab"
	}
	return filepath.Join(home, ".plab")
}

// Config is the user's configuration (config.json).
type Config struct {
	// PLC is PLC's base URL.
	PLC string `json:"plc"`
	// PLCName is PLC's name in its certificate.
	PLCName string `json:"plc_name"`
	// CAFingerprint is PLC's CA key, pinned at login.
	CAFingerprint cred.Fingerprint `json:"ca_fingerprint"`
	// Identity is the private key file the user signs with, or "agent"
	// for ssh-agent (the key named by Key).
	Identity string `json:"identity"`
	// Key is the fingerprint of the user's key.
	Key cred.Fingerprint `json:"key"`
}

// LoginOptions are what Login needs.
type LoginOptions struct {
	PLC string
	// Identity is a private key file, or "agent".
	Identity string
	// AgentKey picks the agent's key by fingerprint (default: its first).
	AgentKey cred.Fingerprint
	// CAFingerprint pins PLC's CA; empty trusts the CA PLC presents now
	// (trust on first use) and pins it.
	CAFingerprint cred.Fingerprint
	// Passphrase unlocks an encrypted key file.
	Passphrase func() ([]byte, error)
}

// LoginResult is what Login found.
type LoginResult struct {
	Config Config
	Whoami api.Whoami
	// FirstUse says the CA was pinned without a fingerprint given.
	FirstUse bool
}

// Login checks PLC and the user's identity and writes the configuration to
// dir: PLC's CA is fetched and pinned (checked against opts.CAFingerprint
// when given), then PLC is asked who the key belongs to.
func Login(ctx context.Context, dir string, o LoginOptions) (LoginResult, error) {
	u, err := url.Parse(o.PLC)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return LoginResult{}, fmt.Errorf("PLC URL %q: want https://host[:port]: %w", o.PLC, errdefs.ErrInvalid)
	}
	if o.Identity == "" {
		return LoginResult{}, fmt.Errorf("no identity: give --key FILE (your SSH private key) or --agent: %w", errdefs.ErrInvalid)
	}
	info, err := api.FetchCA(ctx, o.PLC)
	if err != nil {
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	// Without a pin, the CA PLC shows now is pinned (first use).
	_, fp, err := ca.ParseRoot([]byte(info.RootPEM), o.CAFingerprint)
	if err != nil {
		return LoginResult{}, fmt.Errorf("login at %s: %w; check the URL and the fingerprint your operator gave", o.PLC, err)
	}
	res := LoginResult{FirstUse: o.CAFingerprint == ""}
	cfg := Config{PLC: strings.TrimSuffix(o.PLC, "/"), PLCName: info.Name, CAFingerprint: fp, Identity: o.Identity}
	id, closeID, err := loadIdentity(cfg.Identity, o.AgentKey, o.Passphrase)
	if err != nil {
		return LoginResult{}, err
	}
	defer closeID()
	cfg.Key = id.Fingerprint()
	s, err := newSession(dir, cfg, []byte(info.RootPEM), id)
	if err != nil {
		return LoginResult{}, err
	}
	if err := s.PLC.Do(ctx, "GET", "/v1/whoami", nil, &res.Whoami); err != nil {
		return LoginResult{}, fmt.Errorf("login: PLC does not know key %s: %w; ask your PI or PLC's operator to add it to your account", cfg.Key, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return LoginResult{}, err
	}
	if err := atomicfile.Write(filepath.Join(dir, caFile), []byte(info.RootPEM), 0o644); err != nil {
		return LoginResult{}, err
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, configFile), append(data, '\n'), 0o600); err != nil {
		return LoginResult{}, err
	}
	res.Config = cfg
	return res, nil
}

// LoadConfig reads dir's configuration.
func LoadConfig(dir string) (Config, error) {
	data, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("not logged in (no %s); run: plab login --plc https://PLC --key ~/.ssh/id_ed25519: %w", filepath.Join(dir, configFile), errdefs.ErrNotFound)
	}
	if err != nil {
		return Config{}, err
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("%s: %v; fix it or run plab login again: %w", filepath.Join(dir, configFile), err, errdefs.ErrInvalid)
	}
	if cfg.PLC == "" || cfg.Identity == "" || cfg.CAFingerprint == "" {
		return Config{}, fmt.Errorf("%s lacks plc, identity or ca_fingerprint; run plab login again: %w", filepath.Join(dir, configFile), errdefs.ErrInvalid)
	}
	return cfg, nil
}

// loadIdentity opens the user's signing key: a key file, or the agent's
// key fp (its first when fp is empty). The returned function releases it.
func loadIdentity(identity string, fp cred.Fingerprint, passphrase func() ([]byte, error)) (cred.Identity, func(), error) {
	if identity != "agent" {
		id, err := cred.LoadIdentityFile(identity, passphrase)
		if err != nil {
			return nil, nil, fmt.Errorf("identity %s: %w", identity, err)
		}
		return id, func() {}, nil
	}
	a, conn, err := cred.DialAgent()
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent: %w; start one (eval $(ssh-agent); ssh-add) or use --key FILE", err)
	}
	if fp == "" {
		ids, err := cred.AgentIdentities(a)
		if err != nil || len(ids) == 0 {
			conn.Close()
			return nil, nil, fmt.Errorf("ssh-agent holds no usable key; ssh-add one: %w", errdefs.ErrNotFound)
		}
		return ids[0], func() { conn.Close() }, nil
	}
	id, err := cred.AgentIdentity(a, fp)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return id, func() { conn.Close() }, nil
}
