package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// FuzzIssueNode feeds IssueNode untrusted CSR bytes. A refusal must be
// ErrInvalid or ErrDenied with a short message; an issued certificate must
// verify and name the node and the key the CSR holds. The seed corpus is
// in testdata/fuzz/FuzzIssueNode.
func FuzzIssueNode(f *testing.F) {
	const host = "n1.test"
	c := newCA(f, "plab fuzz CA")
	trust, err := NewTrust(func() time.Time { return t0 }, c.Certificate())
	if err != nil {
		f.Fatal(err)
	}
	csr, err := NewCSR(newKey(f), host)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csr)

	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := c.IssueNode(der, host, nodeValid, t0)
		if err != nil {
			if cert != nil {
				t.Fatalf("IssueNode = %v and a certificate", err)
			}
			if !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrDenied) {
				t.Fatalf("IssueNode = %v, want %v or %v", err, errdefs.ErrInvalid, errdefs.ErrDenied)
			}
			if n := len(err.Error()); n > 400 {
				t.Fatalf("IssueNode error of %d bytes: untrusted text is not clipped: %v", n, err)
			}
			return
		}
		p, err := trust.Verify(cert)
		if err != nil {
			t.Fatalf("Verify(issued certificate) = %v", err)
		}
		req, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("issued a certificate for bytes that do not parse: %v", err)
		}
		pub, err := cred.NewPublicKey(req.PublicKey)
		if err != nil {
			t.Fatalf("issued a certificate for a non-Ed25519 key: %v", err)
		}
		if want := (Peer{Role: RoleNode, Name: host, Key: pub.Fingerprint()}); p != want {
			t.Fatalf("Verify(issued certificate) = %v, want %v", p, want)
		}
		if !bytes.Equal(cert.RawSubjectPublicKeyInfo, req.RawSubjectPublicKeyInfo) {
			t.Fatalf("certificate key differs from the CSR's")
		}
	})
}
