package httpsig

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// TestRoundTrip signs requests with keys made by ssh-keygen and verifies
// them.
func TestRoundTrip(t *testing.T) {
	keys := map[string]cred.Identity{
		"ed25519":  loadIdentity(t, sshKeygen(t, "-t", "ed25519")),
		"rsa 3072": loadIdentity(t, sshKeygen(t, "-t", "rsa", "-b", "3072")),
	}
	requests := []struct {
		name                     string
		method, url, body, ctype string
	}{
		{"get", http.MethodGet, "https://plc.example/api/slices", "", ""},
		{"get with query", http.MethodGet, "https://plc.example/api/slices?site=princeton&x=%2F", "", ""},
		{"post with body", http.MethodPost, testURL, testBody, "application/json"},
		{"delete escaped path", http.MethodDelete, "https://PLC.example/api/slices/a%2Fb", "", ""},
		{"other authority", http.MethodGet, "https://plc2.example/", "", ""},
	}
	for kname, id := range keys {
		for _, r := range requests {
			t.Run(kname+"/"+r.name, func(t *testing.T) {
				v := newVerifier(id.PublicKey())
				req := mustSign(t, newRequest(t, r.method, r.url, r.body, r.ctype), id)
				got, err := v.Verify(req)
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				want := Result{Fingerprint: id.Fingerprint(), Key: id.PublicKey(), Created: t0, Expires: t0.Add(MaxLifetime)}
				if diff := cmp.Diff(want, got, cmp.Comparer(sameKey)); diff != "" {
					t.Errorf("Verify result (-want +got):\n%s", diff)
				}
				if r.body != "" {
					if b, err := io.ReadAll(req.Body); err != nil || string(b) != r.body {
						t.Errorf("body after Verify = %q, %v, want %q", b, err, r.body)
					}
				}
			})
		}
	}
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// TestSkew accepts a signature within the tolerated clock difference.
func TestSkew(t *testing.T) {
	id, _ := newEd25519(t)
	skew := 30 * time.Second
	for _, now := range []time.Time{t0.Add(-skew), t0.Add(MaxLifetime + skew)} {
		v := newVerifier(id.PublicKey())
		v.Now = func() time.Time { return now }
		if _, err := v.Verify(mustSign(t, postRequest(t), id)); err != nil {
			t.Errorf("Verify at signing time %+v = %v, want success", now.Sub(t0), err)
		}
	}
}

// failure is a request Verify must refuse.
type failure struct {
	name string
	// req makes the request; mustSign(postRequest) when nil.
	req func(t *testing.T, id cred.Identity) *http.Request
	// mutate changes the request after signing.
	mutate func(t *testing.T, r *http.Request)
	// verifier changes the Verifier.
	verifier func(v *Verifier)
	want     error
}

// failures lists every way a request is refused, but replay (TestReplay).
// stranger is a key the Verifier does not know.
func failures(stranger cred.Identity) []failure {
	header := func(name, value string) func(*testing.T, *http.Request) {
		return func(_ *testing.T, r *http.Request) { r.Header.Set(name, value) }
	}
	replaceIn := func(name, old, new string) func(*testing.T, *http.Request) {
		return func(t *testing.T, r *http.Request) {
			v := r.Header.Get(name)
			if !strings.Contains(v, old) {
				t.Fatalf("%s has no %q", name, old)
			}
			r.Header.Set(name, strings.Replace(v, old, new, 1))
		}
	}
	custom := func(components []string, edit func([]param) []param) func(*testing.T, cred.Identity) *http.Request {
		return func(t *testing.T, id cred.Identity) *http.Request {
			return signWith(t, postRequest(t), id, components, edit(stdParams(id, t0)))
		}
	}
	set := func(key string, v bareItem) func([]param) []param {
		return func(ps []param) []param { return setParam(ps, key, &v) }
	}
	drop := func(key string) func([]param) []param {
		return func(ps []param) []param { return setParam(ps, key, nil) }
	}
	same := func(ps []param) []param { return ps }
	get := func(t *testing.T, id cred.Identity) *http.Request {
		return mustSign(t, newRequest(t, http.MethodGet, "https://plc.example/api/slices", "", ""), id)
	}
	return []failure{
		// Signature and signed components.
		{name: "bad signature", mutate: func(t *testing.T, r *http.Request) {
			sig, _ := parseSignature(r.Header.Values("Signature"))
			sig[10] ^= 1
			r.Header.Set("Signature", "plab=:"+base64.StdEncoding.EncodeToString(sig)+":")
		}, want: errdefs.ErrDenied},
		{name: "signature of another request", req: func(t *testing.T, id cred.Identity) *http.Request {
			r := mustSign(t, postRequest(t), id)
			r.Header.Set("Signature", mustSign(t, postRequest(t), id).Header.Get("Signature"))
			return r
		}, want: errdefs.ErrDenied},
		{name: "method changed", mutate: func(_ *testing.T, r *http.Request) { r.Method = http.MethodDelete }, want: errdefs.ErrDenied},
		{name: "path changed", mutate: func(_ *testing.T, r *http.Request) { r.URL.Path = "/api/nodes" }, want: errdefs.ErrDenied},
		{name: "query changed", mutate: func(_ *testing.T, r *http.Request) { r.URL.RawQuery = "name=y" }, want: errdefs.ErrDenied},
		{name: "query added", req: get, mutate: func(_ *testing.T, r *http.Request) { r.URL.RawQuery = "admin=1" }, want: errdefs.ErrDenied},
		{name: "authority changed", mutate: func(_ *testing.T, r *http.Request) { r.Host = "plc2.example" }, want: errdefs.ErrDenied},
		{name: "authority not this server", mutate: func(_ *testing.T, r *http.Request) { r.Host = "node1.example" }, want: errdefs.ErrDenied},
		{name: "body changed", mutate: func(_ *testing.T, r *http.Request) { setBody(r, `{"name":"y"}`) }, want: errdefs.ErrDenied},
		{name: "body removed", mutate: func(_ *testing.T, r *http.Request) { r.Body = http.NoBody }, want: errdefs.ErrDenied},
		{name: "body and digest changed", mutate: func(_ *testing.T, r *http.Request) {
			setBody(r, `{"name":"y"}`)
			r.Header.Set("Content-Digest", contentDigest([]byte(`{"name":"y"}`)))
		}, want: errdefs.ErrDenied},
		{name: "digest removed", mutate: func(_ *testing.T, r *http.Request) { r.Header.Del("Content-Digest") }, want: errdefs.ErrInvalid},
		{name: "content type changed", mutate: header("Content-Type", "text/plain"), want: errdefs.ErrDenied},
		{name: "content type added", req: get, mutate: header("Content-Type", "text/plain"), want: errdefs.ErrInvalid},
		{name: "body added", req: get, mutate: func(_ *testing.T, r *http.Request) { setBody(r, testBody) }, want: errdefs.ErrInvalid},
		{name: "digest added", req: get, mutate: header("Content-Digest", contentDigest(nil)), want: errdefs.ErrInvalid},

		// Missing headers.
		{name: "unsigned", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Del("Signature")
			r.Header.Del("Signature-Input")
		}, want: errdefs.ErrDenied},
		{name: "no Signature", mutate: func(_ *testing.T, r *http.Request) { r.Header.Del("Signature") }, want: errdefs.ErrInvalid},
		{name: "no Signature-Input", mutate: func(_ *testing.T, r *http.Request) { r.Header.Del("Signature-Input") }, want: errdefs.ErrInvalid},
		{name: "empty Signature", mutate: header("Signature", ""), want: errdefs.ErrInvalid},

		// Algorithm and key.
		{name: "unknown alg", mutate: replaceIn("Signature-Input", `alg="ed25519"`, `alg="hmac-sha256"`), want: errdefs.ErrInvalid},
		{name: "alg not of the key", req: custom(allComponents, set(paramAlg, bareItem{kind: kindString, s: cred.AlgRSAPKCS1SHA256})), want: errdefs.ErrDenied},
		{name: "unknown keyid", req: func(t *testing.T, _ cred.Identity) *http.Request {
			return mustSign(t, postRequest(t), stranger)
		}, want: errdefs.ErrDenied},
		{name: "malformed keyid", mutate: replaceIn("Signature-Input", `keyid="SHA256:`, `keyid="SHA256:x`), want: errdefs.ErrInvalid},
		{name: "keyid not a fingerprint", req: custom(allComponents, set(paramKeyID, bareItem{kind: kindString, s: "test-key-ed25519"})), want: errdefs.ErrInvalid},

		// Time.
		{name: "expired", verifier: func(v *Verifier) {
			v.Now = func() time.Time { return t0.Add(MaxLifetime + v.Skew + time.Second) }
		}, want: errdefs.ErrExpired},
		{name: "created in the future", verifier: func(v *Verifier) {
			v.Now = func() time.Time { return t0.Add(-v.Skew - time.Second) }
		}, want: errdefs.ErrExpired},
		{name: "valid too long", req: custom(allComponents, set(paramExpires, bareItem{kind: kindInteger, i: t0.Unix() + 3600})), want: errdefs.ErrInvalid},
		{name: "expires before created", req: custom(allComponents, set(paramExpires, bareItem{kind: kindInteger, i: t0.Unix()})), want: errdefs.ErrInvalid},

		// Labels.
		{name: "duplicate label", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Set("Signature-Input", r.Header.Get("Signature-Input")+", "+r.Header.Get("Signature-Input"))
		}, want: errdefs.ErrInvalid},
		{name: "duplicate label on two lines", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Add("Signature", r.Header.Get("Signature"))
		}, want: errdefs.ErrInvalid},
		{name: "extra label", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Add("Signature-Input", `proxy=("@method");created=1700000000`)
			r.Header.Add("Signature", `proxy=:AAAA:`)
		}, want: errdefs.ErrInvalid},
		{name: "wrong label", mutate: func(t *testing.T, r *http.Request) {
			replaceIn("Signature-Input", "plab=", "sig1=")(t, r)
			replaceIn("Signature", "plab=", "sig1=")(t, r)
		}, want: errdefs.ErrInvalid},

		// Parameters and components.
		{name: "duplicate parameter", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Set("Signature-Input", r.Header.Get("Signature-Input")+";created=1700000001")
		}, want: errdefs.ErrInvalid},
		{name: "unknown parameter", req: custom(allComponents, func(ps []param) []param { return append(ps, strParam("context", "x")) }), want: errdefs.ErrInvalid},
		{name: "no nonce", req: custom(allComponents, drop(paramNonce)), want: errdefs.ErrInvalid},
		{name: "short nonce", req: custom(allComponents, set(paramNonce, bareItem{kind: kindString, s: "AAAA"})), want: errdefs.ErrInvalid},
		{name: "no created", req: custom(allComponents, drop(paramCreated)), want: errdefs.ErrInvalid},
		{name: "no expires", req: custom(allComponents, drop(paramExpires)), want: errdefs.ErrInvalid},
		{name: "no tag", req: custom(allComponents, drop(paramTag)), want: errdefs.ErrInvalid},
		{name: "wrong tag", req: custom(allComponents, set(paramTag, bareItem{kind: kindString, s: "other-app"})), want: errdefs.ErrInvalid},
		{name: "created a string", req: custom(allComponents, set(paramCreated, bareItem{kind: kindString, s: "1700000000"})), want: errdefs.ErrInvalid},
		{name: "query not covered", req: custom([]string{compMethod, compAuthority, compPath, compContentDigest, compContentType}, same), want: errdefs.ErrInvalid},
		{name: "body not covered", req: custom([]string{compMethod, compAuthority, compPath, compQuery, compContentType}, same), want: errdefs.ErrInvalid},
		{name: "component twice", req: custom(append(allComponents, compMethod), same), want: errdefs.ErrInvalid},
		{name: "unknown derived component", req: func(t *testing.T, id cred.Identity) *http.Request {
			r := mustSign(t, postRequest(t), id)
			replaceIn("Signature-Input", `"@query"`, `"@query" "@target-uri"`)(t, r)
			return r
		}, want: errdefs.ErrInvalid},
		{name: "component parameter", mutate: replaceIn("Signature-Input", `"@method"`, `"@method";req`), want: errdefs.ErrInvalid},

		// Garbage.
		{name: "input not a list", mutate: header("Signature-Input", `plab="@method"`), want: errdefs.ErrInvalid},
		{name: "input unclosed", mutate: header("Signature-Input", `plab=("@method" "@path"`), want: errdefs.ErrInvalid},
		{name: "input trailing comma", mutate: header("Signature-Input", `plab=("@method");created=1,`), want: errdefs.ErrInvalid},
		{name: "input decimal", mutate: replaceIn("Signature-Input", "created=1700000000", "created=1700000000.5"), want: errdefs.ErrInvalid},
		{name: "input binary", mutate: header("Signature-Input", "plab=(\"@method\x01\")"), want: errdefs.ErrInvalid},
		{name: "input huge", mutate: header("Signature-Input", "plab=(\""+strings.Repeat("a", 9000)+"\")"), want: errdefs.ErrInvalid},
		{name: "signature not base64", mutate: header("Signature", "plab=:!!!!:"), want: errdefs.ErrInvalid},
		{name: "signature unpadded", mutate: func(t *testing.T, r *http.Request) {
			replaceIn("Signature", "==:", ":")(t, r)
		}, want: errdefs.ErrInvalid},
		{name: "signature a token", mutate: header("Signature", "plab=abc"), want: errdefs.ErrInvalid},
		{name: "signature with parameter", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Set("Signature", r.Header.Get("Signature")+";x=1")
		}, want: errdefs.ErrInvalid},
		{name: "digest not base64", mutate: header("Content-Digest", "sha-256=abc"), want: errdefs.ErrInvalid},
		{name: "digest sha-512", mutate: header("Content-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(make([]byte, 64))+":"), want: errdefs.ErrInvalid},
		{name: "two digests", mutate: func(_ *testing.T, r *http.Request) {
			r.Header.Add("Content-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(make([]byte, 64))+":")
		}, want: errdefs.ErrInvalid},

		// Body size.
		{name: "body over limit", verifier: func(v *Verifier) { v.MaxBody = 4 }, want: errdefs.ErrInvalid},
		{name: "body over limit, length unknown", mutate: func(_ *testing.T, r *http.Request) { r.ContentLength = -1 }, verifier: func(v *Verifier) { v.MaxBody = 4 }, want: errdefs.ErrInvalid},
	}
}

// TestVerifyFailures checks every refusal, through Verify and through
// Middleware, and that neither the error, the response nor the log quotes
// the Signature header or the private key.
func TestVerifyFailures(t *testing.T) {
	id, keyFile := newEd25519(t)
	stranger, strangerFile := newEd25519(t)
	secrets := append(secretsOf(t, keyFile), secretsOf(t, strangerFile)...)
	for _, tt := range failures(stranger) {
		t.Run(tt.name, func(t *testing.T) {
			var sigs []string
			makeReq := func() *http.Request {
				var r *http.Request
				if tt.req != nil {
					r = tt.req(t, id)
				} else {
					r = mustSign(t, postRequest(t), id)
				}
				sigs = append(sigs, r.Header.Values("Signature")...)
				if tt.mutate != nil {
					tt.mutate(t, r)
				}
				sigs = append(sigs, r.Header.Values("Signature")...)
				return r
			}
			newV := func() *Verifier {
				v := newVerifier(id.PublicKey())
				if tt.verifier != nil {
					tt.verifier(v)
				}
				return v
			}

			_, err := newV().Verify(makeReq())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			t.Logf("Verify = %v", err)

			var logs bytes.Buffer
			v := newV()
			v.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			rec := httptest.NewRecorder()
			v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				t.Error("handler called for a refused request")
			})).ServeHTTP(rec, makeReq())
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("Middleware status = %d, want 401", rec.Code)
			}
			if got, want := rec.Body.String(), err.Error()+"\n"; got != want {
				t.Errorf("Middleware body = %q, want %q", got, want)
			}
			if !strings.Contains(logs.String(), "refused signed request") {
				t.Errorf("log = %q, want a line for the refusal", logs.String())
			}
			for _, s := range append(sigs, secrets...) {
				for what, text := range map[string]string{"error": err.Error(), "response": rec.Body.String(), "log": logs.String()} {
					if leaks(text, s) {
						t.Errorf("%s quotes a secret: %s", what, text)
					}
				}
			}
		})
	}
}

// secretsOf returns the strings that must never appear in a message: the
// lines of the private key file and its raw key.
func secretsOf(t *testing.T, keyFile string) []string {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, l := range strings.Split(string(data), "\n") {
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
			s = append(s, l)
		}
	}
	if len(s) == 0 {
		t.Fatal("no key material found in the key file")
	}
	return s
}

// leaks reports whether text holds secret, or the signature bytes of a
// Signature header value.
func leaks(text, secret string) bool {
	if len(secret) >= 16 && strings.Contains(text, secret) {
		return true
	}
	_, b64, ok := strings.Cut(secret, "=:")
	b64 = strings.TrimSuffix(b64, ":")
	return ok && len(b64) >= 16 && strings.Contains(text, b64[:16])
}

// TestRefusalKeepsNonce: a refused request does not use up its nonce, so
// an attacker who changes a request cannot spend the signer's nonce.
func TestRefusalKeepsNonce(t *testing.T) {
	id, _ := newEd25519(t)
	v := newVerifier(id.PublicKey())
	req := mustSign(t, postRequest(t), id)
	bad := cloneRequest(t, req)
	bad.Method = http.MethodPut
	if _, err := v.Verify(bad); !errors.Is(err, errdefs.ErrDenied) {
		t.Fatalf("Verify(changed method) = %v, want %v", err, errdefs.ErrDenied)
	}
	if _, err := v.Verify(req); err != nil {
		t.Errorf("Verify(original) after a refused copy = %v, want success", err)
	}
}

// TestReplay refuses a request verified before, and a replay to another
// server of the same testbed that shares no nonce store.
func TestReplay(t *testing.T) {
	id, _ := newEd25519(t)
	v := newVerifier(id.PublicKey())
	req := mustSign(t, postRequest(t), id)
	again := cloneRequest(t, req)
	if _, err := v.Verify(req); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	_, err := v.Verify(again)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("Verify(replay) = %v, want %v saying it was replayed", err, errdefs.ErrConflict)
	}

	node := newVerifier(id.PublicKey())
	node.Authorities = []string{"node1.example"}
	if _, err := node.Verify(cloneRequest(t, req)); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("Verify(replay to another server) = %v, want %v", err, errdefs.ErrDenied)
	}
}

// TestVerifierConfig: a Verifier missing a required field refuses every
// request with ErrUnavailable, and Middleware answers 503 without details.
func TestVerifierConfig(t *testing.T) {
	id, _ := newEd25519(t)
	for name, edit := range map[string]func(*Verifier){
		"no Key":         func(v *Verifier) { v.Key = nil },
		"no Once":        func(v *Verifier) { v.Once = nil },
		"no Authorities": func(v *Verifier) { v.Authorities = nil },
	} {
		t.Run(name, func(t *testing.T) {
			v := newVerifier(id.PublicKey())
			edit(v)
			if _, err := v.Verify(mustSign(t, postRequest(t), id)); !errors.Is(err, errdefs.ErrUnavailable) {
				t.Errorf("Verify = %v, want %v", err, errdefs.ErrUnavailable)
			}
			rec := httptest.NewRecorder()
			v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, mustSign(t, postRequest(t), id))
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("Middleware status = %d, want 503", rec.Code)
			}
		})
	}
}

// TestMiddleware runs a real server: the handler sees the signer and the
// body; an unsigned, changed or replayed request gets 401 and a reason.
func TestMiddleware(t *testing.T) {
	id, _ := newEd25519(t)
	v := newVerifier(id.PublicKey())
	srv := httptest.NewUnstartedServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, ok := FromContext(r.Context())
		if !ok {
			t.Error("FromContext found no Result")
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, string(res.Fingerprint)+" "+string(b))
	})))
	v.Authorities = []string{srv.Listener.Addr().String()}
	srv.Start()
	defer srv.Close()

	do := func(t *testing.T, req *http.Request) (int, string) {
		t.Helper()
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK && !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type = %q, want text/plain", ct)
		}
		return resp.StatusCode, string(b)
	}
	signed := mustSign(t, newRequest(t, http.MethodPost, srv.URL+"/api/slices?x=1", testBody, "application/json"), id)
	replay := cloneRequest(t, signed)
	changed := cloneRequest(t, signed)
	changed.URL.RawQuery = "x=2"

	tests := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantBody   string
	}{
		{"signed", signed, http.StatusOK, string(id.Fingerprint()) + " " + testBody},
		{"replayed", replay, http.StatusUnauthorized, "replayed"},
		{"changed", changed, http.StatusUnauthorized, "bad signature"},
		{"unsigned", newRequest(t, http.MethodGet, srv.URL+"/api/slices", "", ""), http.StatusUnauthorized, "not signed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(t, tt.req)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %q, want %d with %q", tt.req.Method, tt.req.URL, status, body, tt.wantStatus, tt.wantBody)
			}
			if sig := signed.Header.Get("Signature"); leaks(body, sig) {
				t.Errorf("response quotes the signature: %q", body)
			}
		})
	}
}

// TestFromContextEmpty: a context Middleware did not fill has no Result.
func TestFromContextEmpty(t *testing.T) {
	if r, ok := FromContext(context.Background()); ok {
		t.Errorf("FromContext(empty) = %v, true; want false", r)
	}
}
