// Package ca is the testbed's certificate authority and its mutual TLS.
//
// PLC holds the CA: an Ed25519 key and a self-signed root certificate.
// Each node makes its own Ed25519 key and sends a CSR when it enrolls
// (NewCSR); PLC answers with a node certificate (IssueNode). PLC's API
// server gets its certificate from the same CA (IssuePLC). Every leaf
// certificate names its role in a URI SAN, plab:node:<hostname> or
// plab:plc:<name>, so a peer can tell a node from PLC.
//
// Node↔PLC traffic is TLS 1.3 only, with both sides authenticated:
// ServerConfig and ClientConfig verify the peer against a Trust (the
// roots, the revoked serials and the clock) on every handshake, so roots
// can be rotated and certificates revoked while a server runs.
//
// The life of a node certificate:
//
//	          ┌──────── NeedsRenewal: the last third of its life ◀────────┐
//	          ▼                                                           │
//	node: NewCSR ──CSR──▶ PLC: IssueNode ──cert──▶ node: Keypair.Set ──▶ in use
//	                                                                      │
//	            refused from the next handshake on ◀── expired, or ───────┘
//	                                                   Trust.Revoke(serial)
//
// Roots are rotated by adding the new root to every Trust, issuing under
// it, and removing the old root once no certificate under it is in use.
package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
	"unicode"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Skew is how far before "now" a certificate's validity starts, so a peer
// whose clock is slightly behind accepts a certificate issued this minute.
const Skew = time.Minute

// Files in a CA directory.
const (
	certFile = "ca.crt"
	keyFile  = "ca.key"
)

// CA is the testbed certificate authority: its root certificate and key.
// It is immutable and safe for concurrent use.
type CA struct {
	cert *x509.Certificate
	key  *cred.PrivateKey
}

// New makes a root certificate for key, named name, valid from now-Skew for
// validity.
func New(name string, key *cred.PrivateKey, validity time.Duration, now time.Time) (*CA, error) {
	if err := checkCAName(name); err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new CA: validity %v; give a positive duration such as 87600h: %w", validity, errdefs.ErrInvalid)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"plab"}},
		NotBefore:             now.Add(-Skew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // no intermediates: the root signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.CryptoSigner().Public(), key.CryptoSigner())
	if err != nil {
		return nil, fmt.Errorf("new CA: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA: parse root certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// checkCAName accepts 1 to 64 printable characters, the limit of a
// certificate's common name.
func checkCAName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("CA name of %d bytes; give 1 to 64 printable characters: %w", len(name), errdefs.ErrInvalid)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("CA name %q has unprintable characters; give 1 to 64 printable characters: %w", name, errdefs.ErrInvalid)
		}
	}
	return nil
}

// Certificate returns the root certificate, which every Trust in the
// testbed holds.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Save writes the CA to dir: ca.crt (PEM, mode 0644) and ca.key (PKCS#8
// PEM, mode 0600, through cred.WriteKeyFile). It never overwrites either.
func (c *CA) Save(dir string) error {
	certPath, keyPath := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	if _, err := os.Lstat(certPath); err == nil {
		return fmt.Errorf("save CA: %s is already there; a CA is never overwritten, remove it or choose another directory: %w", certPath, errdefs.ErrConflict)
	}
	if err := cred.WriteKeyFile(keyPath, c.key); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := cred.WriteNewFile(certPath, MarshalCertificate(c.cert), 0o644); err != nil {
		os.Remove(keyPath) // nothing half-saved
		return fmt.Errorf("save CA: %w", err)
	}
	return nil
}

// Load reads a CA written by Save. Like cred.ReadKeyFile, it refuses a key
// file that others may read.
func Load(dir string) (*CA, error) {
	key, err := cred.ReadKeyFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	certPath := filepath.Join(dir, certFile)
	data, err := os.ReadFile(certPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load CA: %s: no such file: %w", certPath, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("load CA: %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate: %w", certPath, errdefs.ErrInvalid)
	}
	pub, err := cred.NewPublicKey(cert.PublicKey)
	if err != nil || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("load CA: %s does not belong to %s; restore the pair from the same backup: %w", certPath, keyFile, errdefs.ErrInvalid)
	}
	return &CA{cert: cert, key: key}, nil
}

// IssueNode checks a node's CSR (DER, as NewCSR makes it; untrusted bytes
// from the network) and returns the node's certificate for hostname, the
// name PLC knows the node by. The certificate is valid from now-Skew for
// validity, but never beyond the root.
//
// A malformed CSR, a bad signature or a key other than Ed25519 fail with
// errdefs.ErrInvalid; a CSR naming another host fails with
// errdefs.ErrDenied.
func (c *CA) IssueNode(csrDER []byte, hostname string, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	pub, err := parseNodeCSR(csrDER, hostname)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	cert, err := c.issue(RoleNode, hostname, pub, []string{hostname}, nil, validity, now)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate for %s: %w", hostname, err)
	}
	return cert, nil
}

// IssuePLC returns a certificate for PLC's own key pub, for both its API
// server and its calls to nodes. name is PLC's name in the testbed (what
// nodes expect, see ClientConfig); hosts are the DNS names and IP
// addresses it serves on, for clients that check them.
func (c *CA) IssuePLC(pub cred.PublicKey, name string, hosts []string, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	if err := checkHostname(name); err != nil {
		return nil, fmt.Errorf("issue PLC certificate: name: %w", err)
	}
	if pub.IsZero() {
		return nil, fmt.Errorf("issue PLC certificate: no public key: %w", errdefs.ErrInvalid)
	}
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if err := checkHostname(h); err != nil {
			return nil, fmt.Errorf("issue PLC certificate: host: %w", err)
		}
		dns = append(dns, h)
	}
	cert, err := c.issue(RolePLC, name, pub, dns, ips, validity, now)
	if err != nil {
		return nil, fmt.Errorf("issue PLC certificate for %s: %w", name, err)
	}
	return cert, nil
}

// issue signs a leaf certificate naming role and name.
func (c *CA) issue(role Role, name string, pub cred.PublicKey, dns []string, ips []net.IP, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("validity %v; give a positive duration: %w", validity, errdefs.ErrInvalid)
	}
	if !now.Before(c.cert.NotAfter) {
		return nil, fmt.Errorf("the CA root expired at %s; make a new root and rotate to it: %w", c.cert.NotAfter.UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	notAfter := now.Add(validity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-Skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
		URIs:                  []*url.URL{roleURI(role, name)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub.Ed25519(), c.key.CryptoSigner())
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
