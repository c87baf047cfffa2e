package ca

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/cred"
)

func (b *bed) keys() []*cred.PrivateKey {
	return []*cred.PrivateKey{
		b.ca.key, b.ca2.key, b.other.key,
		b.plc.key, b.plc2.key, b.n1.key, b.n2.key,
		b.stranger.key, b.strangerPLC.key, b.plcOtherName.key,
	}
}

// secrets returns the forms a private key could leak in: its PEM, each
// line of its base64, and its seed and whole key in base64, hex and raw.
func secrets(keys []*cred.PrivateKey) []string {
	var out []string
	for _, k := range keys {
		p := string(cred.MarshalPrivateKey(k))
		out = append(out, p)
		for _, line := range strings.Split(p, "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
		raw := k.CryptoSigner().(ed25519.PrivateKey)
		for _, b := range [][]byte{raw.Seed(), raw} {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				out = append(out, enc.EncodeToString(b))
			}
			out = append(out, hex.EncodeToString(b), string(b))
		}
	}
	return out
}

// TestNoKeyMaterialInErrors drives every failure path and searches each
// error for any private key of the test in any form.
func TestNoKeyMaterialInErrors(t *testing.T) {
	type failure struct {
		what string
		err  error
	}
	var failures []failure
	var keys []*cred.PrivateKey
	record := func(what string, err error) {
		if err != nil {
			failures = append(failures, failure{what, err})
		}
	}

	// Handshakes, both sides.
	for _, tc := range handshakeCases() {
		b := newBed(t)
		keys = append(keys, b.keys()...)
		srv, cli := tc.setup(t, b)
		r := handshake(t, srv, cli)
		record(tc.name+", server", r.serverErr)
		record(tc.name+", client", r.clientErr)
	}

	b := newBed(t)
	keys = append(keys, b.keys()...)

	// Verify, Keypair.
	b.clock.Set(t0.Add(nodeValid + time.Second))
	_, err := b.trust.Verify(b.n1.cert)
	record("Verify(expired)", err)
	b.clock.Set(t0)
	_, err = b.trust.Verify(b.stranger.cert)
	record("Verify(stranger)", err)
	b.trust.Revoke(b.n1.cert.SerialNumber)
	_, err = b.trust.Verify(b.n1.cert)
	record("Verify(revoked)", err)
	record("AddRoot(leaf)", b.trust.AddRoot(b.n1.cert))
	record("Keypair.Set(wrong key)", new(Keypair).Set(b.n1.cert, b.n2.key))

	// Issuing: CSRs that are refused, including ones made from a private
	// key's own bytes.
	for i, csr := range [][]byte{
		nil,
		[]byte("garbage"),
		cred.MarshalPrivateKey(b.n1.key),
		b.n1.key.CryptoSigner().(ed25519.PrivateKey),
		mustCSR(t, b.n1.key, "n2.test"),
	} {
		_, err := b.ca.IssueNode(csr, "n1.test", nodeValid, t0)
		record(fmt.Sprintf("IssueNode(csr %d)", i), err)
	}
	_, err = b.ca.IssueNode(mustCSR(t, b.n1.key, "n1.test"), "n1.test", nodeValid, t0.Add(caValid+time.Hour))
	record("IssueNode(CA expired)", err)
	_, err = NewCSR(b.n1.key, "Not A Host")
	record("NewCSR(bad hostname)", err)
	_, err = New("", b.ca.key, caValid, t0)
	record("New(no name)", err)

	// Saving and loading.
	dir := t.TempDir()
	if err := b.ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	record("Save(again)", b.ca.Save(dir))
	if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	record("Load(0644 key)", err)
	if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	replace(t, dir, "ca.crt", MarshalCertificate(b.other.Certificate()))
	_, err = Load(dir)
	record("Load(mismatched pair)", err)
	replace(t, dir, "ca.crt", cred.MarshalPrivateKey(b.ca.key))
	_, err = Load(dir)
	record("Load(key as certificate)", err)

	if len(failures) < 40 {
		t.Fatalf("collected %d failures; the test drives fewer paths than it should", len(failures))
	}
	needles := secrets(keys)
	canary := fmt.Errorf("oops: %s", base64.StdEncoding.EncodeToString(b.n1.key.CryptoSigner().(ed25519.PrivateKey).Seed()))
	if !leaks(canary.Error(), needles) {
		t.Fatalf("the search misses a key's seed in base64")
	}
	for _, f := range failures {
		for _, text := range []string{f.err.Error(), fmt.Sprintf("%+v", f.err), fmt.Sprintf("%#v", f.err)} {
			if leaks(text, needles) {
				t.Errorf("%s: error contains private key material: %v", f.what, f.err)
			}
		}
	}
}

func leaks(text string, needles []string) bool {
	for _, s := range needles {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}
