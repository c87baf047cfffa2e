package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

func TestNew(t *testing.T) {
	key := newKey(t)
	c, err := New("plab test CA", key, caValid, t0)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	root := c.Certificate()
	if !root.IsCA || !root.BasicConstraintsValid || root.MaxPathLen != 0 || !root.MaxPathLenZero {
		t.Errorf("root IsCA=%v BasicConstraintsValid=%v MaxPathLen=%d MaxPathLenZero=%v, want a CA that signs leaves only",
			root.IsCA, root.BasicConstraintsValid, root.MaxPathLen, root.MaxPathLenZero)
	}
	if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root KeyUsage = %v, want CertSign|CRLSign", root.KeyUsage)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if !root.NotBefore.Equal(t0.Add(-Skew)) || !root.NotAfter.Equal(t0.Add(caValid)) {
		t.Errorf("root valid %v to %v, want %v to %v", root.NotBefore, root.NotAfter, t0.Add(-Skew), t0.Add(caValid))
	}
	if pub, err := cred.NewPublicKey(root.PublicKey); err != nil || !pub.Equal(key.Public()) {
		t.Errorf("root key = %v, %v, want %v", pub, err, key.Public())
	}

	for _, tc := range []struct {
		name     string
		validity time.Duration
	}{
		{"", caValid},
		{strings.Repeat("x", 65), caValid},
		{"bad\x00name", caValid},
		{"plab test CA", 0},
		{"plab test CA", -time.Hour},
	} {
		if _, err := New(tc.name, key, tc.validity, t0); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("New(%q, %v) = %v, want %v", tc.name, tc.validity, err, errdefs.ErrInvalid)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	c := newCA(t, "plab test CA")
	dir := filepath.Join(t.TempDir(), "ca")
	if err := c.Save(dir); err != nil {
		t.Fatalf("Save = %v", err)
	}
	for file, mode := range map[string]os.FileMode{"ca.key": 0o600, "ca.crt": 0o644} {
		st, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode = %04o, want %04o", file, st.Mode().Perm(), mode)
		}
	}
	if err := c.Save(dir); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Save again = %v, want %v", err, errdefs.ErrConflict)
	}

	loaded, err := Load(dir)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if !loaded.Certificate().Equal(c.Certificate()) {
		t.Errorf("Load: root differs from the one saved")
	}
	// The loaded CA issues certificates the original root verifies.
	n := issueNode(t, loaded, "n1.test")
	tr, err := NewTrust(func() time.Time { return t0 }, c.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Verify(n.cert); err != nil {
		t.Errorf("Verify(certificate from the loaded CA) = %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	other := newCA(t, "someone else's CA")
	node := issueNode(t, other, "n1.test")
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  want
	}{
		{
			name: "key file others may read",
			spoil: func(t *testing.T, dir string) {
				if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: want{errdefs.ErrDenied, "lets others read it; run chmod 600"},
		},
		{
			name:  "empty directory",
			spoil: func(t *testing.T, dir string) { removeAll(t, dir, "ca.key", "ca.crt") },
			want:  want{errdefs.ErrNotFound, "ca.key: no such file"},
		},
		{
			name:  "certificate missing",
			spoil: func(t *testing.T, dir string) { removeAll(t, dir, "ca.crt") },
			want:  want{errdefs.ErrNotFound, "ca.crt: no such file"},
		},
		{
			name:  "another CA's certificate",
			spoil: func(t *testing.T, dir string) { replace(t, dir, "ca.crt", MarshalCertificate(other.Certificate())) },
			want:  want{errdefs.ErrInvalid, "does not belong to ca.key"},
		},
		{
			name:  "a leaf certificate",
			spoil: func(t *testing.T, dir string) { replace(t, dir, "ca.crt", MarshalCertificate(node.cert)) },
			want:  want{errdefs.ErrInvalid, "is not a CA certificate"},
		},
		{
			name:  "certificate not PEM",
			spoil: func(t *testing.T, dir string) { replace(t, dir, "ca.crt", []byte("not a certificate")) },
			want:  want{errdefs.ErrInvalid, "want one PEM block"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := newCA(t, "plab test CA").Save(dir); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, dir)
			if _, err := Load(dir); !tc.want.check(err) {
				t.Errorf("Load = %v, want %v", err, tc.want)
			}
		})
	}
}

func removeAll(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

func replace(t *testing.T, dir, file string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// certSummary is what a test checks of an issued certificate.
type certSummary struct {
	CommonName  string
	DNSNames    []string
	IPs         []string
	URIs        []string
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	IsCA        bool
	NotBefore   time.Time
	NotAfter    time.Time
	Key         cred.Fingerprint
}

func summarize(t *testing.T, c *x509.Certificate) certSummary {
	t.Helper()
	pub, err := cred.NewPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s := certSummary{
		CommonName: c.Subject.CommonName, DNSNames: c.DNSNames,
		KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage, IsCA: c.IsCA,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Key: pub.Fingerprint(),
	}
	for _, ip := range c.IPAddresses {
		s.IPs = append(s.IPs, ip.String())
	}
	for _, u := range c.URIs {
		s.URIs = append(s.URIs, u.String())
	}
	return s
}

func TestIssueNode(t *testing.T) {
	c := newCA(t, "plab test CA")
	key := newKey(t)
	csr, err := NewCSR(key, "n1.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueNode(csr, "n1.test", nodeValid, t0)
	if err != nil {
		t.Fatalf("IssueNode = %v", err)
	}
	want := certSummary{
		CommonName:  "n1.test",
		DNSNames:    []string{"n1.test"},
		URIs:        []string{"plab:node:n1.test"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		NotBefore:   t0.Add(-Skew),
		NotAfter:    t0.Add(nodeValid),
		Key:         key.Fingerprint(),
	}
	if diff := cmp.Diff(want, summarize(t, cert)); diff != "" {
		t.Errorf("IssueNode certificate (-want +got):\n%s", diff)
	}
	if err := cert.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("certificate not signed by the root: %v", err)
	}
	again, err := c.IssueNode(csr, "n1.test", nodeValid, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*big.Int{cert.SerialNumber, again.SerialNumber} {
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Errorf("serial %x, want a positive 128-bit number", s)
		}
	}
	if cert.SerialNumber.Cmp(again.SerialNumber) == 0 {
		t.Errorf("two certificates share the serial %x", cert.SerialNumber)
	}

	// A certificate never outlives its root.
	long, err := c.IssueNode(csr, "n1.test", 2*caValid, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !long.NotAfter.Equal(c.Certificate().NotAfter) {
		t.Errorf("NotAfter = %v, want the root's %v", long.NotAfter, c.Certificate().NotAfter)
	}
}

// csrFor makes a CSR from tmpl signed by signer, bypassing NewCSR's checks.
func csrFor(t *testing.T, tmpl *x509.CertificateRequest, signer any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestIssueNodeRefuses(t *testing.T) {
	c := newCA(t, "plab test CA")
	key := newKey(t)
	signer := key.CryptoSigner()
	good, err := NewCSR(key, "n1.test")
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-1] ^= 1
	other := issueNode(t, c, "n1.test")
	subject := pkix.Name{CommonName: "n1.test"}

	for _, tc := range []struct {
		name     string
		csr      []byte
		hostname string
		validity time.Duration
		now      time.Time
		want     want
	}{
		{name: "garbage", csr: []byte("hello, CA"), want: want{errdefs.ErrInvalid, "not a DER certificate request"}},
		{name: "empty", csr: nil, want: want{errdefs.ErrInvalid, "not a DER certificate request"}},
		{name: "PEM instead of DER", csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}), want: want{errdefs.ErrInvalid, "not a DER certificate request"}},
		{name: "a certificate", csr: other.cert.Raw, want: want{errdefs.ErrInvalid, "not a DER certificate request"}},
		{name: "trailing data", csr: append(append([]byte(nil), good...), 0), want: want{errdefs.ErrInvalid, "not a DER certificate request"}},
		{name: "truncated", csr: good[:len(good)-10], want: want{errdefs.ErrInvalid, "not a DER certificate request"}},
		{name: "too large", csr: make([]byte, MaxCSRBytes+1), want: want{errdefs.ErrInvalid, "more than 8192"}},
		{name: "ECDSA key", csr: csrFor(t, &x509.CertificateRequest{Subject: subject, DNSNames: []string{"n1.test"}}, ecKey), want: want{errdefs.ErrInvalid, "CSR key is ECDSA, want Ed25519"}},
		{name: "bad signature", csr: badSig, want: want{errdefs.ErrInvalid, "signature does not verify"}},
		{name: "another hostname", csr: mustCSR(t, key, "n2.test"), want: want{errdefs.ErrDenied, `CSR names "n2.test", but this node is n1.test`}},
		{name: "no common name", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"n1.test"}}, signer), want: want{errdefs.ErrDenied, `CSR names ""`}},
		{name: "extra DNS name", csr: csrFor(t, &x509.CertificateRequest{Subject: subject, DNSNames: []string{"n1.test", "plc.test"}}, signer), want: want{errdefs.ErrDenied, `DNS name "plc.test"`}},
		{name: "IP name", csr: csrFor(t, &x509.CertificateRequest{Subject: subject, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, signer), want: want{errdefs.ErrDenied, "asks for IP, email or URI names"}},
		{name: "PLC role", csr: csrFor(t, &x509.CertificateRequest{Subject: subject, URIs: []*url.URL{roleURI(RolePLC, plcName)}}, signer), want: want{errdefs.ErrDenied, "asks for IP, email or URI names"}},
		{name: "bad hostname", csr: good, hostname: "N1.test", want: want{errdefs.ErrInvalid, "want a DNS name in lowercase"}},
		{name: "no validity", csr: good, validity: -1, want: want{errdefs.ErrInvalid, "give a positive duration"}},
		{name: "CA expired", csr: good, now: t0.Add(caValid + time.Second), want: want{errdefs.ErrExpired, "the CA root expired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostname, validity, now := "n1.test", nodeValid, t0
			if tc.hostname != "" {
				hostname = tc.hostname
			}
			if tc.validity != 0 {
				validity = tc.validity
			}
			if !tc.now.IsZero() {
				now = tc.now
			}
			cert, err := c.IssueNode(tc.csr, hostname, validity, now)
			if cert != nil || !tc.want.check(err) {
				t.Errorf("IssueNode(%s, %q) = %v, %v, want %v", tc.name, hostname, cert != nil, err, tc.want)
			}
		})
	}
}

func mustCSR(t *testing.T, key *cred.PrivateKey, hostname string) []byte {
	t.Helper()
	csr, err := NewCSR(key, hostname)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestIssuePLC(t *testing.T) {
	c := newCA(t, "plab test CA")
	key := newKey(t)
	cert, err := c.IssuePLC(key.Public(), plcName, []string{"plc.example.org", "127.0.0.1", "::1"}, plcValid, t0)
	if err != nil {
		t.Fatalf("IssuePLC = %v", err)
	}
	wantCert := certSummary{
		CommonName:  plcName,
		DNSNames:    []string{"plc.example.org"},
		IPs:         []string{"127.0.0.1", "::1"},
		URIs:        []string{"plab:plc:plc.test"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		NotBefore:   t0.Add(-Skew),
		NotAfter:    t0.Add(plcValid),
		Key:         key.Fingerprint(),
	}
	if diff := cmp.Diff(wantCert, summarize(t, cert)); diff != "" {
		t.Errorf("IssuePLC certificate (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name  string
		pub   cred.PublicKey
		plc   string
		hosts []string
		want  want
	}{
		{"bad name", key.Public(), "PLC", nil, want{errdefs.ErrInvalid, "name: hostname \"PLC\""}},
		{"bad host", key.Public(), plcName, []string{"plc_1.example.org"}, want{errdefs.ErrInvalid, "host: hostname \"plc_1.example.org\""}},
		{"no key", cred.PublicKey{}, plcName, nil, want{errdefs.ErrInvalid, "no public key"}},
	} {
		if _, err := c.IssuePLC(tc.pub, tc.plc, tc.hosts, plcValid, t0); !tc.want.check(err) {
			t.Errorf("IssuePLC(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestCheckHostname(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"n1", true},
		{"n1.example.org", true},
		{"planetlab-1.cs.example.edu", true},
		{"0.example.org", true},
		{strings.Repeat("a", 63) + ".org", true},
		{"", false},
		{"N1.example.org", false},
		{"-n1.example.org", false},
		{"n1-.example.org", false},
		{"n1..example.org", false},
		{"n1.example.org.", false},
		{".n1", false},
		{"n1_2.example.org", false},
		{"n1.example.org:443", false},
		{"*.example.org", false},
		{"n1\x00.org", false},
		{"10.0.0.1", false},
		{"::1", false},
		{strings.Repeat("a", 64) + ".org", false},
		{strings.Repeat("a.", 127) + "ab", false}, // 256 bytes
	} {
		err := checkHostname(tc.host)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
			t.Errorf("checkHostname(%q) = %v, want ok=%v", tc.host, err, tc.ok)
		}
		if _, err := NewCSR(newKey(t), tc.host); (err == nil) != tc.ok {
			t.Errorf("NewCSR(%q) = %v, want ok=%v", tc.host, err, tc.ok)
		}
	}
}

func TestRenewal(t *testing.T) {
	// Valid from t0-1m for 3h+1m: renewal is due 1h1m20s before the end.
	cert := &x509.Certificate{NotBefore: t0.Add(-Skew), NotAfter: t0.Add(3 * time.Hour)}
	renewAt := t0.Add(-Skew + 2*(3*time.Hour+Skew)/3)
	if got := RenewAt(cert); !got.Equal(renewAt) {
		t.Errorf("RenewAt = %v, want %v", got, renewAt)
	}
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{t0.Add(-2 * Skew), false},
		{t0, false},
		{renewAt.Add(-time.Nanosecond), false},
		{renewAt, true},
		{t0.Add(3 * time.Hour), true},
		{t0.Add(30 * time.Hour), true},
	} {
		if got := NeedsRenewal(cert, tc.now); got != tc.want {
			t.Errorf("NeedsRenewal(%v) = %v, want %v", tc.now, got, tc.want)
		}
	}
}

func TestParseCertificate(t *testing.T) {
	c := newCA(t, "plab test CA")
	pemCert := MarshalCertificate(c.Certificate())
	got, err := ParseCertificate(pemCert)
	if err != nil || !got.Equal(c.Certificate()) {
		t.Fatalf("ParseCertificate(MarshalCertificate) = %v, %v, want the root", got, err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"private key", cred.MarshalPrivateKey(newKey(t))},
		{"two certificates", append(append([]byte(nil), pemCert...), pemCert...)},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")})},
	} {
		if _, err := ParseCertificate(tc.data); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseCertificate(%s) = %v, want %v", tc.name, err, errdefs.ErrInvalid)
		}
	}
}

func TestKeypair(t *testing.T) {
	b := newBed(t)
	var kp Keypair
	if _, err := kp.Get(); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Get before Set = %v, want %v", err, errdefs.ErrUnavailable)
	}
	if err := kp.Set(b.n1.cert, b.n2.key); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Set(another key) = %v, want %v", err, errdefs.ErrInvalid)
	}
	if err := kp.Set(b.n1.cert, b.n1.key); err != nil {
		t.Fatalf("Set = %v", err)
	}
	got, err := kp.Get()
	if err != nil || got.Leaf != b.n1.cert {
		t.Errorf("Get = %v, %v, want n1's certificate", got, err)
	}
}

// TestParseRoot: a root's pin is its key's fingerprint; a pin of another
// key is refused; garbage is refused.
func TestParseRoot(t *testing.T) {
	key, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New("plc.test", key, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pemData := MarshalCertificate(c.Certificate())
	root, fp, err := ParseRoot(pemData, "")
	if err != nil || fp != key.Fingerprint() || !root.Equal(c.Certificate()) {
		t.Fatalf("ParseRoot without a pin = %v, %s; want the root and %s", err, fp, key.Fingerprint())
	}
	if _, _, err := ParseRoot(pemData, key.Fingerprint()); err != nil {
		t.Errorf("ParseRoot with its own pin: %v", err)
	}
	other, _ := cred.GenerateKey()
	if _, _, err := ParseRoot(pemData, other.Fingerprint()); !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "not the pinned") {
		t.Errorf("ParseRoot with another key's pin = %v, want ErrDenied", err)
	}
	if _, _, err := ParseRoot([]byte("not pem"), ""); err == nil {
		t.Error("ParseRoot of garbage succeeded")
	}
}
