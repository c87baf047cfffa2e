package httpsig

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
)

// t0 is the fixed time tests sign and verify at.
var t0 = time.Unix(1_700_000_000, 0)

const (
	testAuthority = "plc.example"
	testURL       = "https://plc.example/api/slices?name=x"
	testBody      = `{"name":"x"}`
	testNonce     = "AAECAwQFBgcICQoLDA0ODw" // bytes 0..15
)

// writeKeyFile writes key as an OpenSSH private key file (as ssh-keygen
// would) and returns its path.
func writeKeyFile(tb testing.TB, key crypto.PrivateKey) string {
	tb.Helper()
	block, err := ssh.MarshalPrivateKey(key, "plab-test")
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "id")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// loadIdentity loads the key file at path.
func loadIdentity(tb testing.TB, path string) cred.Identity {
	tb.Helper()
	id, err := cred.LoadIdentityFile(path, nil)
	if err != nil {
		tb.Fatalf("LoadIdentityFile(%s) = %v", path, err)
	}
	return id
}

// newEd25519 returns a fresh Ed25519 identity loaded from a key file, and
// the file's path.
func newEd25519(tb testing.TB) (cred.Identity, string) {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	path := writeKeyFile(tb, k)
	return loadIdentity(tb, path), path
}

// sshKeygen makes a key with the real ssh-keygen and returns its path.
func sshKeygen(t *testing.T, args ...string) string {
	t.Helper()
	testenv.RequireBinaries(t, "ssh-keygen")
	path := filepath.Join(t.TempDir(), "id")
	cmd := exec.Command("ssh-keygen", append([]string{"-q", "-N", "", "-C", "plab-test", "-f", path}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	return path
}

// keyring is a Verifier.Key over a fixed set of keys.
func keyring(keys ...ssh.PublicKey) func(context.Context, cred.Fingerprint) (ssh.PublicKey, error) {
	m := make(map[cred.Fingerprint]ssh.PublicKey)
	for _, k := range keys {
		m[cred.FingerprintSSH(k)] = k
	}
	return func(_ context.Context, fp cred.Fingerprint) (ssh.PublicKey, error) {
		if k, ok := m[fp]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("user key %s: %w", fp, errdefs.ErrNotFound)
	}
}

// newVerifier returns a Verifier at t0 for testAuthority that knows keys.
func newVerifier(keys ...ssh.PublicKey) *Verifier {
	now := func() time.Time { return t0 }
	return &Verifier{
		Key:         keyring(keys...),
		Once:        cred.NewMemoryOnce(now),
		Authorities: []string{testAuthority, "plc2.example"},
		Now:         now,
		Skew:        30 * time.Second,
	}
}

// newRequest makes a client request; body "" means none.
func newRequest(tb testing.TB, method, url, body, contentType string) *http.Request {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// postRequest is the request most tests sign: a POST with a JSON body.
func postRequest(tb testing.TB) *http.Request {
	return newRequest(tb, http.MethodPost, testURL, testBody, "application/json")
}

// mustSign signs req at t0.
func mustSign(tb testing.TB, req *http.Request, id cred.Identity) *http.Request {
	tb.Helper()
	if err := Sign(req, id, t0); err != nil {
		tb.Fatalf("Sign = %v", err)
	}
	return req
}

// stdParams are the parameters Sign would use at created, with testNonce.
func stdParams(id cred.Identity, created time.Time) []param {
	c := created.Unix()
	return []param{
		intParam(paramCreated, c),
		intParam(paramExpires, c+int64(MaxLifetime/time.Second)),
		strParam(paramNonce, testNonce),
		strParam(paramKeyID, string(id.Fingerprint())),
		strParam(paramAlg, id.Alg()),
		strParam(paramTag, Tag),
	}
}

// setParam returns ps with key's value replaced, or without key when v is
// nil.
func setParam(ps []param, key string, v *bareItem) []param {
	var out []param
	for _, p := range ps {
		switch {
		case p.key != key:
			out = append(out, p)
		case v != nil:
			out = append(out, param{key: key, val: *v})
		}
	}
	return out
}

// signWith signs req like Sign but covering exactly components with params,
// to make requests whose signature is good but whose form breaks a rule.
func signWith(tb testing.TB, req *http.Request, id cred.Identity, components []string, params []param) *http.Request {
	tb.Helper()
	body, err := readBody(req)
	if err != nil {
		tb.Fatal(err)
	}
	if len(body) > 0 {
		req.Header.Set(headerContentDigest, contentDigest(body))
	}
	sp, err := serializeSigParams(components, params)
	if err != nil {
		tb.Fatal(err)
	}
	base, err := signatureBase(req, components, sp)
	if err != nil {
		tb.Fatal(err)
	}
	sig, err := id.SignData([]byte(base))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set(headerSignatureInput, Label+"="+sp)
	req.Header.Set(headerSignature, Label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
	return req
}

// allComponents are the components Sign covers for postRequest.
var allComponents = []string{compMethod, compAuthority, compPath, compQuery, compContentDigest, compContentType}

// cloneRequest copies a signed client request, body included, so it can be
// sent or verified again.
func cloneRequest(tb testing.TB, req *http.Request) *http.Request {
	tb.Helper()
	c := req.Clone(context.Background())
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			tb.Fatal(err)
		}
		c.Body = b
	}
	return c
}

// setBody replaces req's body.
func setBody(req *http.Request, body string) {
	req.Body = io.NopCloser(bytes.NewReader([]byte(body)))
	req.ContentLength = int64(len(body))
}
