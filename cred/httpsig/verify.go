package httpsig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Defaults of a Verifier's zero fields.
const (
	DefaultSkew    = time.Minute
	DefaultMaxBody = 1 << 20
)

// maxFieldLen bounds the Signature-Input and Signature fields; plab's are
// under 700 bytes even with an 8192-bit RSA key.
const maxFieldLen = 8 << 10

// Log attribute keys.
const (
	logKeyErr    = "err"
	logKeyMethod = "method"
	logKeyPath   = "path"
	logKeyRemote = "remote"
	logKeyKeyID  = "keyid"
)

// Verifier checks requests signed with Sign. Key, Once and Authorities are
// required. A Verifier is safe for concurrent use when Key and Once are.
type Verifier struct {
	// Key returns the registered user key named fp, or an error wrapping
	// errdefs.ErrNotFound when there is none.
	Key func(ctx context.Context, fp cred.Fingerprint) (ssh.PublicKey, error)
	// Once records each signature's nonce so a replay is refused. Nonces
	// are kept until the signature's expiry plus Skew.
	Once cred.OnceStore
	// Authorities are the names this server answers to, as clients write
	// them in the URL ("plc.example.org", "10.0.0.1:8443"). A request
	// signed for another server is refused, so that no server can replay a
	// request it received to another.
	Authorities []string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Skew is the clock difference tolerated between signer and verifier;
	// DefaultSkew when zero.
	Skew time.Duration
	// MaxBody is the largest request body read, in bytes; DefaultMaxBody
	// when zero.
	MaxBody int64
	// UnknownKeyHint says what to do when a request is signed with a key
	// Key does not know (default: register it with PLC).
	UnknownKeyHint string
	// Log receives a line for each refused request; nothing when nil.
	Log *slog.Logger
}

// Result is the outcome of a successful Verify: who signed the request.
type Result struct {
	// Fingerprint names the key that signed.
	Fingerprint cred.Fingerprint
	// Key is the registered key the signature verified with.
	Key ssh.PublicKey
	// Created and Expires bound the signature's validity.
	Created, Expires time.Time
}

// sigInput is the parsed plab member of Signature-Input.
type sigInput struct {
	components []string
	sigParams  string // @signature-params, serialised again from the parse
	created    int64
	expires    int64
	nonce      string
	keyID      cred.Fingerprint
	alg        string
}

func (in *sigInput) covers(c string) bool { return slices.Contains(in.components, c) }

// Verify checks req's signature and returns its signer. It reads the body
// (at most MaxBody bytes) and puts back an equal one for the handler. It
// records the signature's nonce only once everything else has checked out,
// so a refused request does not use up its nonce.
//
// Errors wrap errdefs.ErrDenied (unsigned, bad signature, unknown key,
// wrong server, body not matching its digest), ErrInvalid (malformed or
// incomplete signature, body too large), ErrExpired (outside the validity
// window), ErrConflict (replayed) or, for a failing Key or Once,
// ErrUnavailable or whatever they returned.
func (v *Verifier) Verify(req *http.Request) (Result, error) {
	if v.Key == nil || v.Once == nil || len(v.Authorities) == 0 {
		return Result{}, fmt.Errorf("verify signature: the Verifier lacks Key, Once or Authorities; fix the server's configuration: %w", errdefs.ErrUnavailable)
	}
	ctx := req.Context()
	inputs, sigs := req.Header.Values(headerSignatureInput), req.Header.Values(headerSignature)
	if len(inputs) == 0 && len(sigs) == 0 {
		return Result{}, fmt.Errorf("request is not signed; sign it with your SSH key (RFC 9421 Signature-Input and Signature headers): %w", errdefs.ErrDenied)
	}
	in, err := parseSignatureInput(inputs)
	if err != nil {
		return Result{}, err
	}
	sig, err := parseSignature(sigs)
	if err != nil {
		return Result{}, err
	}

	a := authority(req)
	if !slices.ContainsFunc(v.Authorities, func(s string) bool { return asciiLower(s) == a }) {
		return Result{}, fmt.Errorf("request is addressed to %q, not to this server; send it to the server it was signed for: %w", clip(a), errdefs.ErrDenied)
	}

	now, skew := v.now(), v.skew()
	created, expires := time.Unix(in.created, 0), time.Unix(in.expires, 0)
	switch {
	case in.expires <= in.created:
		return Result{}, fmt.Errorf("signature by %s expires before it is created; sign the request again: %w", in.keyID, errdefs.ErrInvalid)
	case in.expires-in.created > int64(MaxLifetime/time.Second):
		return Result{}, fmt.Errorf("signature by %s is valid for %s, longer than %s; sign with plab's own client: %w", in.keyID, expires.Sub(created), MaxLifetime, errdefs.ErrInvalid)
	case created.After(now.Add(skew)):
		return Result{}, fmt.Errorf("signature by %s was created %s in the future; check the client's clock (timedatectl): %w", in.keyID, created.Sub(now).Round(time.Second), errdefs.ErrExpired)
	case now.After(expires.Add(skew)):
		return Result{}, fmt.Errorf("signature by %s expired %s ago; sign the request again, and check the client's clock: %w", in.keyID, now.Sub(expires).Round(time.Second), errdefs.ErrExpired)
	}

	body, err := v.readBody(req)
	if err != nil {
		return Result{}, err
	}
	for _, c := range requiredComponents {
		if !in.covers(c) {
			return Result{}, fmt.Errorf("signature does not cover %s; plab signatures cover %s: %w", c, strings.Join(requiredComponents, " "), errdefs.ErrInvalid)
		}
	}
	var digest []byte
	if len(body) > 0 || len(req.Header.Values(headerContentDigest)) > 0 {
		if !in.covers(compContentDigest) {
			return Result{}, fmt.Errorf("request has a body but its signature does not cover content-digest: %w", errdefs.ErrInvalid)
		}
		if digest, err = parseContentDigest(req.Header.Values(headerContentDigest)); err != nil {
			return Result{}, err
		}
	}
	if len(req.Header.Values(headerContentType)) > 0 && !in.covers(compContentType) {
		return Result{}, fmt.Errorf("request has a Content-Type but its signature does not cover content-type: %w", errdefs.ErrInvalid)
	}

	pub, err := v.lookup(ctx, in.keyID)
	if err != nil {
		return Result{}, err
	}
	base, err := signatureBase(req, in.components, in.sigParams)
	if err != nil {
		return Result{}, fmt.Errorf("verify signature: %w", err)
	}
	if err := cred.VerifyUserSignature(pub, in.alg, []byte(base), sig); err != nil {
		return Result{}, fmt.Errorf("verify signature (was the request changed after signing?): %w", err)
	}
	if in.covers(compContentDigest) {
		if d := sha256.Sum256(body); !bytes.Equal(d[:], digest) {
			return Result{}, fmt.Errorf("request body does not match its signed Content-Digest; it was changed after signing: %w", errdefs.ErrDenied)
		}
	}

	if err := v.Once.Use(ctx, "httpsig "+string(in.keyID)+" "+in.nonce, expires.Add(skew)); err != nil {
		if errors.Is(err, errdefs.ErrConflict) {
			return Result{}, fmt.Errorf("request signed by %s was replayed (its nonce was used before); sign every request afresh: %w", in.keyID, errdefs.ErrConflict)
		}
		return Result{}, fmt.Errorf("record signature nonce: %w", err)
	}
	return Result{Fingerprint: in.keyID, Key: pub, Created: created, Expires: expires}, nil
}

func (v *Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

func (v *Verifier) skew() time.Duration {
	if v.Skew == 0 {
		return DefaultSkew
	}
	return v.Skew
}

func (v *Verifier) maxBody() int64 {
	if v.MaxBody == 0 {
		return DefaultMaxBody
	}
	return v.MaxBody
}

// readBody reads the body of an incoming request, up to MaxBody bytes, and
// puts back an equal one.
func (v *Verifier) readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	limit := v.maxBody()
	if req.ContentLength > limit {
		return nil, fmt.Errorf("request body of %d bytes is over the limit of %d: %w", req.ContentLength, limit, errdefs.ErrInvalid)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", errdefs.ErrInvalid)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("request body is over the limit of %d bytes: %w", limit, errdefs.ErrInvalid)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// lookup returns the registered key named fp.
func (v *Verifier) lookup(ctx context.Context, fp cred.Fingerprint) (ssh.PublicKey, error) {
	pub, err := v.Key(ctx, fp)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && pub == nil) {
		hint := v.UnknownKeyHint
		if hint == "" {
			hint = "register its public key with PLC, or sign with a registered key"
		}
		return nil, fmt.Errorf("key %s is not registered; %s: %w", fp, hint, errdefs.ErrDenied)
	}
	if err != nil {
		return nil, fmt.Errorf("look up key %s: %w", fp, err)
	}
	if cred.FingerprintSSH(pub) != fp {
		return nil, fmt.Errorf("look up key %s: got key %s: %w", fp, cred.FingerprintSSH(pub), errdefs.ErrUnavailable)
	}
	return pub, nil
}

// joinField combines the lines of one header field (RFC 9110 §5.3) and
// bounds its length.
func joinField(name string, lines []string) (string, error) {
	s := strings.Join(lines, ", ")
	if len(s) > maxFieldLen {
		return "", fmt.Errorf("%s header of %d bytes is over the limit of %d: %w", name, len(s), maxFieldLen, errdefs.ErrInvalid)
	}
	return s, nil
}

// onlyMember returns the one member of a parsed dictionary, which must be
// labelled plab.
func onlyMember(name string, ms []member) (member, error) {
	if len(ms) != 1 {
		return member{}, fmt.Errorf("%s header holds %d signatures, want exactly one labelled %s: %w", name, len(ms), Label, errdefs.ErrInvalid)
	}
	if ms[0].key != Label {
		return member{}, fmt.Errorf("%s header: signature label is not %s: %w", name, Label, errdefs.ErrInvalid)
	}
	return ms[0], nil
}

// parseSignatureInput parses Signature-Input strictly: one plab member, an
// inner list of distinct component names without parameters, and exactly
// the parameters created, expires, nonce, keyid, alg and tag, each once.
func parseSignatureInput(lines []string) (*sigInput, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("malformed Signature-Input header: "+format+"; sign with plab's client: %w", append(args, errdefs.ErrInvalid)...)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("missing Signature-Input header (Signature is there); sign with plab's client: %w", errdefs.ErrInvalid)
	}
	field, err := joinField(headerSignatureInput, lines)
	if err != nil {
		return nil, err
	}
	ms, err := parseDictionary(field)
	if err != nil {
		return nil, bad("%v", err)
	}
	m, err := onlyMember(headerSignatureInput, ms)
	if err != nil {
		return nil, err
	}
	if !m.isList {
		return nil, bad("want a list of covered components")
	}
	in := &sigInput{}
	for _, it := range m.list {
		c := it.val.s
		switch {
		case it.val.kind != kindString:
			return nil, bad("a covered component is not a string")
		case len(it.params) != 0:
			return nil, bad("component parameters are not supported")
		case !validComponent(c):
			return nil, bad("covered component %q is not supported", clip(c))
		case in.covers(c):
			return nil, bad("component %s is covered twice", c)
		}
		in.components = append(in.components, c)
	}
	seen := make(map[string]bool)
	for _, p := range m.params {
		want, known := paramKinds[p.key]
		switch {
		case !known:
			return nil, bad("unknown parameter %s", p.key)
		case p.val.kind != want:
			return nil, bad("parameter %s has the wrong type", p.key)
		}
		switch p.key {
		case paramCreated:
			in.created = p.val.i
		case paramExpires:
			in.expires = p.val.i
		case paramNonce:
			n, err := base64.RawURLEncoding.Strict().DecodeString(p.val.s)
			if err != nil || len(n) != nonceBytes {
				return nil, bad("nonce is not %d bytes of unpadded base64url", nonceBytes)
			}
			in.nonce = p.val.s
		case paramKeyID:
			fp, err := cred.ParseFingerprint(p.val.s)
			if err != nil {
				return nil, fmt.Errorf("malformed Signature-Input header: keyid: %w", err)
			}
			in.keyID = fp
		case paramAlg:
			if p.val.s != cred.AlgEd25519 && p.val.s != cred.AlgRSAPKCS1SHA256 {
				return nil, bad("unknown alg; plab accepts %q and %q", cred.AlgEd25519, cred.AlgRSAPKCS1SHA256)
			}
			in.alg = p.val.s
		case paramTag:
			if p.val.s != Tag {
				return nil, bad("tag is not %q", Tag)
			}
		}
		seen[p.key] = true
	}
	for _, k := range []string{paramCreated, paramExpires, paramNonce, paramKeyID, paramAlg, paramTag} {
		if !seen[k] {
			return nil, bad("parameter %s is missing", k)
		}
	}
	var b strings.Builder
	if err := writeInnerList(&b, m.list, m.params); err != nil {
		return nil, bad("%v", err)
	}
	in.sigParams = b.String()
	return in, nil
}

// paramKinds are the signature parameters plab requires, each once, and
// their types.
var paramKinds = map[string]kind{
	paramCreated: kindInteger,
	paramExpires: kindInteger,
	paramNonce:   kindString,
	paramKeyID:   kindString,
	paramAlg:     kindString,
	paramTag:     kindString,
}

// validComponent reports whether plab can cover c: a derived component it
// computes, or a lowercase header field name.
func validComponent(c string) bool {
	if slices.Contains(requiredComponents, c) {
		return true
	}
	if c == "" {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !isTChar(c[i]) || 'A' <= c[i] && c[i] <= 'Z' {
			return false
		}
	}
	return true
}

// parseSignature parses Signature strictly: one plab member, a byte
// sequence without parameters.
func parseSignature(lines []string) ([]byte, error) {
	if len(lines) == 0 {
		return nil, fmt.Errorf("missing Signature header (Signature-Input is there); sign with plab's client: %w", errdefs.ErrInvalid)
	}
	field, err := joinField(headerSignature, lines)
	if err != nil {
		return nil, err
	}
	ms, err := parseDictionary(field)
	if err != nil {
		return nil, fmt.Errorf("malformed Signature header: %v; sign with plab's client: %w", err, errdefs.ErrInvalid)
	}
	m, err := onlyMember(headerSignature, ms)
	if err != nil {
		return nil, err
	}
	if m.isList || m.val.kind != kindBytes || len(m.params) != 0 || len(m.val.b) == 0 {
		return nil, fmt.Errorf("malformed Signature header: want %s=:base64:; sign with plab's client: %w", Label, errdefs.ErrInvalid)
	}
	return m.val.b, nil
}

// parseContentDigest parses Content-Digest strictly: exactly one member,
// sha-256, a 32-byte byte sequence.
func parseContentDigest(lines []string) ([]byte, error) {
	bad := fmt.Errorf("malformed Content-Digest header: want one sha-256=:base64: digest of the body (RFC 9530): %w", errdefs.ErrInvalid)
	if len(lines) == 0 {
		return nil, bad
	}
	field, err := joinField(headerContentDigest, lines)
	if err != nil {
		return nil, err
	}
	ms, err := parseDictionary(field)
	if err != nil || len(ms) != 1 {
		return nil, bad
	}
	m := ms[0]
	if m.key != "sha-256" || m.isList || m.val.kind != kindBytes || len(m.params) != 0 || len(m.val.b) != sha256.Size {
		return nil, bad
	}
	return m.val.b, nil
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

type contextKey struct{}

// FromContext returns the Result that Middleware put in a request's
// context, and whether there is one.
func FromContext(ctx context.Context) (Result, bool) {
	r, ok := ctx.Value(contextKey{}).(Result)
	return r, ok
}

// Middleware verifies each request before next sees it. A refused request
// gets 401 Unauthorized with the reason in plain text (503 when the check
// itself failed, as when the nonce store is down) and a line in Log; next
// finds the signer with FromContext.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := v.Verify(r)
		if err != nil {
			status, msg := http.StatusUnauthorized, err.Error()
			if k := errdefs.Kind(err); k == nil || k == errdefs.ErrUnavailable {
				status, msg = http.StatusServiceUnavailable, "cannot check the request's signature now; try again later"
			}
			if v.Log != nil {
				v.Log.LogAttrs(r.Context(), slog.LevelInfo, "refused signed request",
					slog.String(logKeyMethod, r.Method), slog.String(logKeyPath, r.URL.Path),
					slog.String(logKeyRemote, r.RemoteAddr), slog.Any(logKeyErr, err))
			}
			http.Error(w, msg, status)
			return
		}
		if v.Log != nil {
			v.Log.LogAttrs(r.Context(), slog.LevelDebug, "verified signed request",
				slog.String(logKeyMethod, r.Method), slog.String(logKeyPath, r.URL.Path),
				slog.String(logKeyKeyID, string(res.Fingerprint)))
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), contextKey{}, res)))
	})
}

// asciiLower lowercases A-Z only; strings.EqualFold would also fold
// Unicode (the Kelvin sign matches k).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
