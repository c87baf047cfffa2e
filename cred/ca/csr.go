package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// MaxCSRBytes bounds a CSR; an Ed25519 CSR from NewCSR is about 250 bytes.
const MaxCSRBytes = 8 << 10

// NewCSR returns a DER certificate signing request for a node's key and
// hostname, for PLC's IssueNode.
func NewCSR(key *cred.PrivateKey, hostname string) ([]byte, error) {
	if err := checkHostname(hostname); err != nil {
		return nil, fmt.Errorf("new CSR: %w", err)
	}
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: hostname},
		DNSNames: []string{hostname},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key.CryptoSigner())
	if err != nil {
		return nil, fmt.Errorf("new CSR: %w", err)
	}
	return der, nil
}

// parseNodeCSR checks untrusted CSR bytes strictly and returns the key they
// ask a certificate for. The CSR's subject and DNS names must be exactly
// hostname, and it may ask for nothing else.
func parseNodeCSR(der []byte, hostname string) (cred.PublicKey, error) {
	if err := checkHostname(hostname); err != nil {
		return cred.PublicKey{}, err
	}
	if len(der) > MaxCSRBytes {
		return cred.PublicKey{}, fmt.Errorf("CSR of %d bytes, more than %d; send the output of ca.NewCSR: %w", len(der), MaxCSRBytes, errdefs.ErrInvalid)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return cred.PublicKey{}, fmt.Errorf("not a DER certificate request; send the output of ca.NewCSR: %w", errdefs.ErrInvalid)
	}
	if csr.PublicKeyAlgorithm != x509.Ed25519 {
		return cred.PublicKey{}, fmt.Errorf("CSR key is %s, want Ed25519; make the node key with cred.GenerateKey: %w", csr.PublicKeyAlgorithm, errdefs.ErrInvalid)
	}
	pub, err := cred.NewPublicKey(csr.PublicKey)
	if err != nil {
		return cred.PublicKey{}, fmt.Errorf("CSR key: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return cred.PublicKey{}, fmt.Errorf("CSR signature does not verify; sign it with the node's own key: %w", errdefs.ErrInvalid)
	}
	if cn := csr.Subject.CommonName; cn != hostname {
		return cred.PublicKey{}, fmt.Errorf("CSR names %q, but this node is %s; make the CSR for %s: %w", clip(cn), hostname, hostname, errdefs.ErrDenied)
	}
	for _, n := range csr.DNSNames {
		if n != hostname {
			return cred.PublicKey{}, fmt.Errorf("CSR asks for the DNS name %q, but this node is %s; make the CSR for %s: %w", clip(n), hostname, hostname, errdefs.ErrDenied)
		}
	}
	if len(csr.IPAddresses) != 0 || len(csr.EmailAddresses) != 0 || len(csr.URIs) != 0 {
		return cred.PublicKey{}, fmt.Errorf("CSR asks for IP, email or URI names; a node's CSR names its hostname only: %w", errdefs.ErrDenied)
	}
	return pub, nil
}

// checkHostname accepts a DNS name in lowercase: labels of 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen,
// joined by dots; at most 253 bytes; not an IP address.
func checkHostname(h string) error {
	const hint = "want a DNS name in lowercase (letters, digits, hyphens; labels of 1 to 63 characters joined by dots)"
	if h == "" || len(h) > 253 {
		return fmt.Errorf("hostname of %d bytes; %s: %w", len(h), hint, errdefs.ErrInvalid)
	}
	if net.ParseIP(h) != nil {
		return fmt.Errorf("hostname %q is an IP address; %s: %w", h, hint, errdefs.ErrInvalid)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("hostname %q: %s: %w", clip(h), hint, errdefs.ErrInvalid)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("hostname %q: %s: %w", clip(h), hint, errdefs.ErrInvalid)
			}
		}
	}
	return nil
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
