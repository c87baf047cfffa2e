package httpsig

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// fuzzIdentity is the fixed key the fuzz corpus is signed with: Ed25519
// from the seed 0, 1, …, 31.
func fuzzIdentity(tb testing.TB) cred.Identity {
	tb.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return loadIdentity(tb, writeKeyFile(tb, ed25519.NewKeyFromSeed(seed)))
}

// fuzzVerify verifies postRequest at t0 with the given headers ("" leaves one
// out) with a fresh Verifier that knows id.
func fuzzVerify(tb testing.TB, id cred.Identity, sigInput, sig, digest string) (Result, error) {
	req := postRequest(tb)
	for name, v := range map[string]string{"Signature-Input": sigInput, "Signature": sig, "Content-Digest": digest} {
		if v != "" {
			req.Header.Set(name, v)
		}
	}
	return newVerifier(id.PublicKey()).Verify(req)
}

// validFuzzSeed is a request signed by fuzzIdentity, as in
// testdata/fuzz/FuzzVerify/valid.
func validFuzzSeed(tb testing.TB, id cred.Identity) (sigInput, sig, digest string) {
	req := signWith(tb, postRequest(tb), id, allComponents, stdParams(id, t0))
	return req.Header.Get("Signature-Input"), req.Header.Get("Signature"), req.Header.Get("Content-Digest")
}

// FuzzVerify feeds Verify arbitrary Signature-Input, Signature and
// Content-Digest values. Verify must not panic, must fail with one of the
// errdefs kinds unless the request is the signed one, and must not quote
// the signature; each header that parses must serialise and parse back the
// same.
func FuzzVerify(f *testing.F) {
	id := fuzzIdentity(f)
	in, sig, digest := validFuzzSeed(f, id)
	f.Add(in, sig, digest)
	f.Fuzz(func(t *testing.T, sigInput, sig, digest string) {
		res, err := fuzzVerify(t, id, sigInput, sig, digest)
		switch {
		case err == nil && res.Fingerprint != id.Fingerprint():
			t.Fatalf("Verify = %s, want %s", res.Fingerprint, id.Fingerprint())
		case err != nil && errdefs.Kind(err) == nil:
			t.Fatalf("Verify = %v, wrapping no errdefs kind", err)
		case err != nil:
			if ms, perr := parseDictionary(sig); perr == nil {
				for _, m := range ms {
					b64 := base64.StdEncoding.EncodeToString(m.val.b)
					if len(m.val.b) >= 12 && !strings.Contains(sigInput, b64) && strings.Contains(err.Error(), b64) {
						t.Fatalf("Verify error quotes the signature: %v", err)
					}
				}
			}
		}
		for _, field := range []string{sigInput, sig, digest} {
			ms, err := parseDictionary(field)
			if err != nil {
				continue
			}
			s, err := serializeDictionary(ms)
			if err != nil {
				t.Fatalf("serializeDictionary(parseDictionary(%q)) = %v", field, err)
			}
			again, err := parseDictionary(s)
			if err != nil {
				t.Fatalf("parseDictionary(%q) = %v, serialised from %q", s, err, field)
			}
			if diff := cmp.Diff(ms, again, sfvCmp); diff != "" {
				t.Fatalf("parse, serialise, parse of %q changed it (-first +second):\n%s", field, diff)
			}
		}
	})
}

// TestFuzzSeeds checks the checked-in corpus: the valid seed is still a
// good signature by fuzzIdentity, and every other seed is refused.
func TestFuzzSeeds(t *testing.T) {
	id := fuzzIdentity(t)
	files, err := filepath.Glob("testdata/fuzz/FuzzVerify/*")
	if err != nil || len(files) < 3 {
		t.Fatalf("fuzz corpus: %d files, %v; want at least 3", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			args := readCorpusFile(t, file)
			if len(args) != 3 {
				t.Fatalf("%s holds %d values, want 3", file, len(args))
			}
			_, err := fuzzVerify(t, id, args[0], args[1], args[2])
			if valid := filepath.Base(file) == "valid"; valid != (err == nil) {
				t.Errorf("Verify(%s) = %v, want valid=%v", file, err, valid)
			}
		})
	}
	// The valid seed is what signWith makes today.
	in, sig, digest := validFuzzSeed(t, id)
	if diff := cmp.Diff([]string{in, sig, digest}, readCorpusFile(t, "testdata/fuzz/FuzzVerify/valid")); diff != "" {
		t.Errorf("testdata/fuzz/FuzzVerify/valid is stale (-now +file):\n%s", diff)
	}
}

// readCorpusFile reads the string values of a "go test fuzz v1" file.
func readCorpusFile(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var vals []string
	for sc.Scan() {
		line := sc.Text()
		if line == "go test fuzz v1" {
			continue
		}
		q, ok := strings.CutPrefix(line, "string(")
		q, ok2 := strings.CutSuffix(q, ")")
		v, err := strconv.Unquote(q)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: bad line %q", path, line)
		}
		vals = append(vals, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vals
}
