package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

const pemCertificate = "CERTIFICATE"

// MarshalCertificate encodes cert as a PEM block, the form openssl and
// most tools read.
func MarshalCertificate(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})
}

// ParseCertificate decodes one PEM certificate block. It checks the form
// only: trust comes from Trust.Verify.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	// pem.Decode skips text before the block and allows headers; a
	// certificate file has neither.
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("want one PEM block of type %q and nothing before it: %w", pemCertificate, errdefs.ErrInvalid)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != pemCertificate || len(block.Headers) != 0 {
		return nil, fmt.Errorf("want one PEM block of type %q, without headers: %w", pemCertificate, errdefs.ErrInvalid)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("data after the PEM certificate: %w", errdefs.ErrInvalid)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not an X.509 certificate: %w", errdefs.ErrInvalid)
	}
	return cert, nil
}

// RenewAt returns when cert should be renewed: once two thirds of its
// lifetime have passed.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life - life/3)
}

// NeedsRenewal reports whether cert is in the last third of its life, or
// past it, at now. A node then sends a new CSR.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(RenewAt(cert))
}

// Keypair holds a certificate with its private key, replaced whole when
// the certificate is renewed. Its Get method is the getter ServerConfig
// and ClientConfig take, so the next handshake uses the new certificate
// without a restart. The zero Keypair holds nothing; it is safe for
// concurrent use.
type Keypair struct {
	p atomic.Pointer[tls.Certificate]
}

// Set replaces the held certificate with cert and its key.
func (k *Keypair) Set(cert *x509.Certificate, key *cred.PrivateKey) error {
	pub, err := cred.NewPublicKey(cert.PublicKey)
	if err != nil {
		return fmt.Errorf("set certificate: %w", err)
	}
	if !pub.Equal(key.Public()) {
		return fmt.Errorf("set certificate: it certifies %s, not the key %s; issue one for this key: %w", pub.Fingerprint(), key.Fingerprint(), errdefs.ErrInvalid)
	}
	k.p.Store(&tls.Certificate{
		Certificate: [][]byte{cert.Raw},
		PrivateKey:  key.CryptoSigner(),
		Leaf:        cert,
	})
	return nil
}

// Get returns the held certificate.
func (k *Keypair) Get() (*tls.Certificate, error) {
	c := k.p.Load()
	if c == nil {
		return nil, fmt.Errorf("no certificate yet; enroll with PLC first: %w", errdefs.ErrUnavailable)
	}
	return c, nil
}

// ParseRoot parses a CA root certificate (PEM) and returns it with its pin,
// its key's fingerprint. With pin given, a root of another key is refused
// (errdefs.ErrDenied): that is how an enrolling node or a logging-in user
// trusts a CA fetched over an unverified connection.
func ParseRoot(pemData []byte, pin cred.Fingerprint) (*x509.Certificate, cred.Fingerprint, error) {
	root, err := ParseCertificate(pemData)
	if err != nil {
		return nil, "", fmt.Errorf("CA root: %w", err)
	}
	pub, err := cred.NewPublicKey(root.PublicKey)
	if err != nil {
		return nil, "", fmt.Errorf("CA root: %w", err)
	}
	if fp := pub.Fingerprint(); pin != "" && fp != pin {
		return nil, "", fmt.Errorf("the CA key is %s, not the pinned %s: %w", fp, pin, errdefs.ErrDenied)
	}
	return root, pub.Fingerprint(), nil
}
