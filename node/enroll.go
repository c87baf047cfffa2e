package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
)

// EnrollOptions are what a node needs to enroll with PLC.
type EnrollOptions struct {
	// Dir is the node's state directory.
	Dir string
	// Config carries the hostname, PLC's URL and the node's settings.
	Config Config
	// Token is the one-time token an operator made at PLC
	// (POST /v1/nodes/HOST/token).
	Token string
	// CAFingerprint pins PLC's CA: the SHA256: fingerprint of its root key,
	// as plab plc init printed it. Enrollment refuses any other CA.
	CAFingerprint cred.Fingerprint
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Enroll makes the node's key, gets it certified by PLC with the token,
// and writes the node's files: node.key, node.crt, plc-ca.pem,
// tickets.trust and, last, config.json. A failed enrollment leaves none of
// them behind.
func Enroll(ctx context.Context, o EnrollOptions) (err error) {
	cfg := o.Config
	if cfg.PLCName == "" {
		cfg.PLCName = "pending" // learnt from PLC below
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if o.Token == "" {
		return fmt.Errorf("no enrollment token; an operator makes one with POST /v1/nodes/%s/token at PLC: %w", cfg.Hostname, errdefs.ErrInvalid)
	}
	if _, err := cred.ParseFingerprint(string(o.CAFingerprint)); err != nil {
		return fmt.Errorf("PLC's CA fingerprint (--ca-fingerprint, printed by plab plc init): %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, err := os.Stat(filepath.Join(o.Dir, configFile)); err == nil {
		return fmt.Errorf("%s holds an enrolled node already; use another --state-dir or remove it first: %w", o.Dir, errdefs.ErrConflict)
	}
	if err := os.MkdirAll(o.Dir, 0o711); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	var written []string
	defer func() {
		if err != nil {
			for _, f := range written {
				os.Remove(f)
			}
		}
	}()
	write := func(name string, data []byte, mode os.FileMode) error {
		p := filepath.Join(o.Dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := cred.WriteNewFile(p, data, mode); err != nil {
			return fmt.Errorf("enroll: write %s: %w", p, err)
		}
		written = append(written, p)
		return nil
	}

	// PLC's CA comes over an unauthenticated connection and is trusted
	// only when its key matches the pin; the token then travels only over
	// a connection verified against that CA.
	info, err := api.FetchCA(ctx, cfg.PLC)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	root, _, err := ca.ParseRoot([]byte(info.RootPEM), o.CAFingerprint)
	if err != nil {
		return fmt.Errorf("enroll at %s: %w; check the URL and the fingerprint plab plc init printed", cfg.PLC, err)
	}
	if _, err := ticket.ParseTrust([]byte(strings.Join(info.TicketKeys, "\n"))); err != nil {
		return fmt.Errorf("enroll: PLC's ticket keys: %w", err)
	}
	cfg.PLCName = info.Name
	trust, err := ca.NewTrust(o.Now, root)
	if err != nil {
		return err
	}
	plc := &api.Client{BaseURL: cfg.PLC, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: ca.ClientConfig(trust, nil, ca.RolePLC, info.Name)}}}

	key, err := cred.GenerateKey()
	if err != nil {
		return err
	}
	csr, err := ca.NewCSR(key, cfg.Hostname)
	if err != nil {
		return err
	}
	var enr api.Enrollment
	if err := plc.Do(ctx, "POST", "/v1/enroll", api.EnrollRequest{Hostname: cfg.Hostname, Token: o.Token, CSR: csr}, &enr); err != nil {
		return fmt.Errorf("enroll %s at %s: %w", cfg.Hostname, cfg.PLC, err)
	}
	if _, err := ca.ParseCertificate([]byte(enr.CertificatePEM)); err != nil {
		return fmt.Errorf("enroll: the certificate PLC sent: %w", err)
	}
	if err := write(keyFile, cred.MarshalPrivateKey(key), 0o600); err != nil {
		return err
	}
	if err := write(certFile, []byte(enr.CertificatePEM), 0o644); err != nil {
		return err
	}
	if err := write(caFile, []byte(info.RootPEM), 0o644); err != nil {
		return err
	}
	if err := write(trustFile, []byte(strings.Join(info.TicketKeys, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := SaveConfig(o.Dir, cfg); err != nil {
		return err
	}
	return nil
}

// identity is what an enrolled node holds: its key and certificate, PLC's
// CA root and PLC's ticket keys.
type identity struct {
	key   *cred.PrivateKey
	cert  *x509.Certificate
	root  *x509.Certificate
	trust *ticket.Trust
}

func loadIdentity(dir string) (identity, error) {
	var id identity
	var err error
	if id.key, err = cred.ReadKeyFile(filepath.Join(dir, keyFile)); err != nil {
		return id, fmt.Errorf("node key: %w", err)
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%w; enroll the node again (plab node enroll)", err)
		}
		return b, nil
	}
	b, err := read(certFile)
	if err != nil {
		return id, err
	}
	if id.cert, err = ca.ParseCertificate(b); err != nil {
		return id, fmt.Errorf("node certificate: %w", err)
	}
	if b, err = read(caFile); err != nil {
		return id, err
	}
	if id.root, err = ca.ParseCertificate(b); err != nil {
		return id, fmt.Errorf("PLC's CA: %w", err)
	}
	if b, err = read(trustFile); err != nil {
		return id, err
	}
	if id.trust, err = ticket.ParseTrust(b); err != nil {
		return id, fmt.Errorf("PLC's ticket keys: %w", err)
	}
	return id, nil
}
