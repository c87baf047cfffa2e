package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/plab/plab/errdefs"
)

// forge signs tmpl with c's key directly, bypassing the issuing rules, to
// make certificates the CA would never issue.
func forge(t *testing.T, c *CA, tmpl *x509.Certificate, pub any) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		s, err := newSerial()
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = s
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key.CryptoSigner())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// leafTemplate is what the CA issues for role:name, valid at t0.
func leafTemplate(uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "forged.test"},
		NotBefore:   t0.Add(-Skew),
		NotAfter:    t0.Add(nodeValid),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	return tmpl
}

func TestVerify(t *testing.T) {
	b := newBed(t)
	pub := b.n1.key.Public().Ed25519()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A root that expires before the certificates under it.
	shortCA, err := New("short-lived CA", newKey(t), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	underShort := forge(t, shortCA, leafTemplate("plab:node:n9.test"), pub)
	serverOnly := leafTemplate("plab:node:n1.test")
	serverOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	for _, tc := range []struct {
		name  string
		cert  *x509.Certificate
		now   time.Time
		setup func(t *testing.T)
		want  Peer
		err   want
	}{
		{name: "node", cert: b.n1.cert, want: Peer{RoleNode, "n1.test", b.n1.key.Fingerprint()}},
		{name: "PLC", cert: b.plc.cert, want: Peer{RolePLC, plcName, b.plc.key.Fingerprint()}},
		{name: "node at the last second", cert: b.n1.cert, now: t0.Add(nodeValid), want: Peer{RoleNode, "n1.test", b.n1.key.Fingerprint()}},
		{name: "expired", cert: b.n1.cert, now: t0.Add(nodeValid + time.Second), err: want{errdefs.ErrExpired, "expired at 2026-03-02T12:00:00Z"}},
		{name: "not yet valid", cert: b.n1.cert, now: t0.Add(-2 * Skew), err: want{errdefs.ErrExpired, "not valid until 2026-03-01T11:59:00Z"}},
		{name: "another CA", cert: b.stranger.cert, err: want{errdefs.ErrDenied, "not issued by a CA root trusted here"}},
		{name: "the next root, not yet added", cert: b.n2.cert, err: want{errdefs.ErrDenied, "not issued by a CA root trusted here"}},
		{
			name: "revoked", cert: b.n1.cert,
			setup: func(t *testing.T) { b.trust.Revoke(b.n1.cert.SerialNumber) },
			err:   want{errdefs.ErrDenied, "is revoked"},
		},
		{
			name: "root expired", cert: underShort, now: t0.Add(2 * time.Hour),
			setup: func(t *testing.T) { mustAddRoot(t, b.trust, shortCA) },
			err:   want{errdefs.ErrExpired, `its CA root "short-lived CA" expired`},
		},
		{name: "the root itself", cert: b.ca.Certificate(), err: want{errdefs.ErrDenied, "not for both TLS client and server use"}},
		{name: "server use only", cert: forge(t, b.ca, serverOnly, pub), err: want{errdefs.ErrDenied, "not for both TLS client and server use"}},
		{name: "no role", cert: forge(t, b.ca, leafTemplate(), pub), err: want{errdefs.ErrDenied, "carries 0 plab roles"}},
		{name: "two roles", cert: forge(t, b.ca, leafTemplate("plab:node:n1.test", "plab:plc:plc.test"), pub), err: want{errdefs.ErrDenied, "carries 2 plab roles"}},
		{name: "unknown role", cert: forge(t, b.ca, leafTemplate("plab:admin:n1.test"), pub), err: want{errdefs.ErrDenied, `has the role "admin"`}},
		{name: "bad name", cert: forge(t, b.ca, leafTemplate("plab:node:N1"), pub), err: want{errdefs.ErrDenied, "names a node badly"}},
		{name: "ECDSA key", cert: forge(t, b.ca, leafTemplate("plab:node:n1.test"), ecKey.Public()), err: want{errdefs.ErrDenied, "key is not Ed25519"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.clock.Set(t0)
			if !tc.now.IsZero() {
				b.clock.Set(tc.now)
			}
			if tc.setup != nil {
				tc.setup(t)
			}
			got, err := b.trust.Verify(tc.cert)
			if got != tc.want || !tc.err.check(err) {
				t.Errorf("Verify(%q) = %v, %v, want %v, %v", tc.cert.Subject.CommonName, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestTrustRoots(t *testing.T) {
	b := newBed(t)
	if err := b.trust.AddRoot(b.n1.cert); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("AddRoot(leaf) = %v, want %v", err, errdefs.ErrInvalid)
	}
	if _, err := NewTrust(nil, b.n1.cert); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("NewTrust(leaf) = %v, want %v", err, errdefs.ErrInvalid)
	}
	// A CA certificate signed by another CA is not a root.
	sub := forge(t, b.ca, &x509.Certificate{
		Subject: pkix.Name{CommonName: "sub CA"}, NotBefore: t0, NotAfter: t0.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, b.n1.key.Public().Ed25519())
	if err := b.trust.AddRoot(sub); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("AddRoot(subordinate CA) = %v, want %v", err, errdefs.ErrInvalid)
	}
	if err := b.trust.RemoveRoot(b.ca.Certificate()); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("RemoveRoot(only root) = %v, want %v", err, errdefs.ErrConflict)
	}
	if err := b.trust.RemoveRoot(b.ca2.Certificate()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("RemoveRoot(unknown) = %v, want %v", err, errdefs.ErrNotFound)
	}
	mustAddRoot(t, b.trust, b.ca2)
	mustAddRoot(t, b.trust, b.ca2) // again: nothing changes
	if got := b.trust.Roots(); len(got) != 2 || !got[0].Equal(b.ca.Certificate()) || !got[1].Equal(b.ca2.Certificate()) {
		t.Errorf("Roots = %d roots, want ca then ca2", len(got))
	}
	if err := b.trust.RemoveRoot(b.ca.Certificate()); err != nil {
		t.Errorf("RemoveRoot(old root) = %v", err)
	}
	if got := b.trust.Roots(); len(got) != 1 || !got[0].Equal(b.ca2.Certificate()) {
		t.Errorf("Roots after rotation = %d roots, want ca2", len(got))
	}
}
