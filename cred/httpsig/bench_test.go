package httpsig

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/plab/plab/cred"
)

// acceptOnce is a OnceStore that forgets, so a benchmark can verify one
// request many times; MemoryOnce is tested with the real Verifier above.
type acceptOnce struct{}

var _ cred.OnceStore = acceptOnce{}

func (acceptOnce) Use(context.Context, string, time.Time) error { return nil }

func benchKey(b *testing.B, kind string) cred.Identity {
	b.Helper()
	var key crypto.PrivateKey
	var err error
	switch kind {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "rsa3072":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	}
	if err != nil {
		b.Fatal(err)
	}
	return loadIdentity(b, writeKeyFile(b, key))
}

// benchVerify verifies a signed POST with a small JSON body.
func benchVerify(b *testing.B, kind string) {
	id := benchKey(b, kind)
	v := newVerifier(id.PublicKey())
	v.Once = acceptOnce{}
	req := mustSign(b, postRequest(b), id)
	b.ReportAllocs()
	for b.Loop() {
		setBody(req, testBody)
		if _, err := v.Verify(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEd25519(b *testing.B) { benchVerify(b, "ed25519") }
func BenchmarkVerifyRSA3072(b *testing.B) { benchVerify(b, "rsa3072") }

// BenchmarkSign signs a POST with a small JSON body with a key file.
func BenchmarkSign(b *testing.B) {
	for _, kind := range []string{"ed25519", "rsa3072"} {
		b.Run(kind, func(b *testing.B) {
			id := benchKey(b, kind)
			req := postRequest(b)
			b.ReportAllocs()
			for b.Loop() {
				if err := Sign(req, id, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
