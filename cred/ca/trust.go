package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Trust is what one side of a connection trusts: the CA roots (several
// while a root is rotated), the serials of revoked certificates, and the
// clock. It is safe for concurrent use; a change applies from the next
// verification, so a server keeps running while trust changes.
type Trust struct {
	now func() time.Time

	mu      sync.RWMutex
	roots   []*x509.Certificate
	pool    *x509.CertPool // built from roots; never nil, so the system roots are never used
	revoked map[string]bool
}

// NewTrust returns a Trust holding roots; now is the clock (time.Now when
// nil).
func NewTrust(now func() time.Time, roots ...*x509.Certificate) (*Trust, error) {
	if now == nil {
		now = time.Now
	}
	t := &Trust{now: now, pool: x509.NewCertPool(), revoked: make(map[string]bool)}
	for _, r := range roots {
		if err := t.AddRoot(r); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// AddRoot trusts the CA root certificate root. Adding a root that is
// already trusted does nothing.
func (t *Trust) AddRoot(root *x509.Certificate) error {
	if !root.BasicConstraintsValid || !root.IsCA {
		return fmt.Errorf("add root %q: not a CA certificate; give the CA's ca.crt: %w", clip(root.Subject.CommonName), errdefs.ErrInvalid)
	}
	if _, err := cred.NewPublicKey(root.PublicKey); err != nil {
		return fmt.Errorf("add root %q: key is not Ed25519; give the testbed CA's ca.crt: %w", clip(root.Subject.CommonName), errdefs.ErrInvalid)
	}
	if root.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("add root %q: may not sign certificates (no certSign key usage); give the testbed CA's ca.crt: %w", clip(root.Subject.CommonName), errdefs.ErrInvalid)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("add root %q: not self-signed; give the testbed CA's ca.crt: %w", clip(root.Subject.CommonName), errdefs.ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.ContainsFunc(t.roots, root.Equal) {
		return nil
	}
	// A root with a trusted root's key would keep every certificate of
	// that root valid after it is removed: rotation needs a new key.
	for _, r := range t.roots {
		if root.PublicKeyAlgorithm == r.PublicKeyAlgorithm && bytes.Equal(root.RawSubjectPublicKeyInfo, r.RawSubjectPublicKeyInfo) {
			return fmt.Errorf("add root %q: a trusted root already has its key; a new root needs a new key: %w", clip(root.Subject.CommonName), errdefs.ErrConflict)
		}
	}
	t.setRoots(append(slices.Clip(t.roots), root))
	return nil
}

// RemoveRoot stops trusting root: certificates under it are refused from
// the next handshake on. The last root cannot be removed; add its
// successor first.
func (t *Trust) RemoveRoot(root *x509.Certificate) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.roots, root.Equal)
	if i < 0 {
		return fmt.Errorf("remove root %q: not trusted here: %w", clip(root.Subject.CommonName), errdefs.ErrNotFound)
	}
	if len(t.roots) == 1 {
		return fmt.Errorf("remove root %q: it is the only root; add the new root first: %w", clip(root.Subject.CommonName), errdefs.ErrConflict)
	}
	t.setRoots(slices.Delete(slices.Clone(t.roots), i, i+1))
	return nil
}

// setRoots replaces the roots and rebuilds the pool. t.mu must be held.
func (t *Trust) setRoots(roots []*x509.Certificate) {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	t.roots, t.pool = roots, pool
}

// Roots returns the trusted roots, oldest first.
func (t *Trust) Roots() []*x509.Certificate {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.roots)
}

// Revoke refuses the certificate with this serial number from the next
// handshake on, whatever root it is under.
func (t *Trust) Revoke(serial *big.Int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoked[serial.Text(16)] = true
}

// Verify checks that cert was issued by a trusted root, is valid now, is
// not revoked and names a role, and returns who it names. Errors wrap
// errdefs.ErrExpired for a certificate outside its validity and
// errdefs.ErrDenied for every other refusal.
func (t *Trust) Verify(cert *x509.Certificate) (Peer, error) {
	now := t.now()
	t.mu.RLock()
	pool, revoked := t.pool, t.revoked[cert.SerialNumber.Text(16)]
	t.mu.RUnlock()

	name := clip(cert.Subject.CommonName)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // both usages are checked below
	})
	if err != nil {
		return Peer{}, explain(cert, now, err)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Peer{}, fmt.Errorf("certificate %q is not for both TLS client and server use; it was not issued by the testbed CA: %w", name, errdefs.ErrDenied)
	}
	if revoked {
		return Peer{}, fmt.Errorf("certificate %q (serial %x) is revoked; the holder must enroll again: %w", name, cert.SerialNumber, errdefs.ErrDenied)
	}
	return peerOf(cert)
}

// explain turns an x509 verification error into one that says what to do.
func explain(cert *x509.Certificate, now time.Time, err error) error {
	name := clip(cert.Subject.CommonName)
	if inv, ok := errors.AsType[x509.CertificateInvalidError](err); ok && inv.Reason == x509.Expired {
		switch {
		case inv.Cert != nil && inv.Cert != cert:
			return fmt.Errorf("certificate %q: its CA root %q expired at %s; rotate to a new root: %w", name, clip(inv.Cert.Subject.CommonName), stamp(inv.Cert.NotAfter), errdefs.ErrExpired)
		case now.Before(cert.NotBefore):
			return fmt.Errorf("certificate %q is not valid until %s; check both clocks: %w", name, stamp(cert.NotBefore), errdefs.ErrExpired)
		default:
			return fmt.Errorf("certificate %q expired at %s; the holder must renew it (a new CSR), or enroll again: %w", name, stamp(cert.NotAfter), errdefs.ErrExpired)
		}
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return fmt.Errorf("certificate %q was not issued by a CA root trusted here; enroll again, or add its root: %w", name, errdefs.ErrDenied)
	}
	return fmt.Errorf("certificate %q: %v: %w", name, err, errdefs.ErrDenied)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ConnPeer verifies the peer of a TLS connection (an http.Request's TLS
// field) against the current trust, and returns who it is. Checking again
// per request refuses a certificate revoked after the connection opened.
func (t *Trust) ConnPeer(cs *tls.ConnectionState) (Peer, error) {
	if cs == nil {
		return Peer{}, fmt.Errorf("not a TLS connection; nodes and PLC talk over mutual TLS: %w", errdefs.ErrDenied)
	}
	return t.verifyChain(cs.PeerCertificates)
}

// verifyChain verifies the leaf of certs as a peer sent them; the others
// are ignored, since roots sign leaves directly.
func (t *Trust) verifyChain(certs []*x509.Certificate) (Peer, error) {
	if len(certs) == 0 {
		return Peer{}, fmt.Errorf("no certificate; the peer must present its testbed certificate (a node gets one by enrolling with PLC): %w", errdefs.ErrDenied)
	}
	return t.Verify(certs[0])
}
