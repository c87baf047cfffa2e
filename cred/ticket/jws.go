package ticket

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// MaxDocumentBytes bounds a ticket or lease; anything longer is refused
// before it is decoded.
const MaxDocumentBytes = 16 << 10

// header is the JWS protected header. Nothing else is allowed in it: no
// embedded keys (jwk, x5c), no key URLs (jku, x5u), no crit.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// sign returns the compact JWS of claims signed by key, with kid = the
// key's fingerprint.
func sign(typ string, claims any, key *cred.PrivateKey) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", string(key.Fingerprint()))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key.CryptoSigner()}, opts)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", typ, err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", typ, err)
	}
	return obj.CompactSerialize()
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// parsed is a document split and decoded but not yet verified.
type parsed struct {
	header  header
	payload []byte
	sig     []byte
}

// split decodes a compact JWS strictly: three parts of unpadded base64url
// with nothing around them, a header of exactly alg, kid and typ, and the
// expected typ and alg. The signature is not checked here.
func split(doc, typ string) (*parsed, error) {
	if len(doc) > MaxDocumentBytes {
		return nil, fmt.Errorf("%d bytes, more than the %d a %s may have: %w", len(doc), MaxDocumentBytes, typ, errdefs.ErrInvalid)
	}
	// Only the base64url alphabet and the dots: the decoder would skip
	// newlines, and nothing may surround or pad a document.
	for i := 0; i < len(doc); i++ {
		if c := doc[i]; !isBase64URL(c) && c != '.' {
			return nil, fmt.Errorf("character %d of the document is not base64url (%s documents have no spaces, newlines or padding): %w", i, typ, errdefs.ErrInvalid)
		}
	}
	parts := strings.Split(doc, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a compact JWS (want three dot-separated parts, got %d): %w", len(parts), errdefs.ErrInvalid)
	}
	var raw [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil || len(p) == 0 {
			return nil, fmt.Errorf("part %d of the JWS is not unpadded base64url: %w", i+1, errdefs.ErrInvalid)
		}
		raw[i] = b
	}
	var h header
	if err := strictJSON(raw[0], &h); err != nil {
		return nil, fmt.Errorf("JWS header: %w", err)
	}
	if h.Alg != string(jose.EdDSA) {
		return nil, fmt.Errorf("JWS algorithm %q refused; plab documents are signed with EdDSA only: %w", clip(h.Alg), errdefs.ErrInvalid)
	}
	if h.Typ != typ {
		return nil, fmt.Errorf("document type %q, want %q: %w", clip(h.Typ), typ, errdefs.ErrInvalid)
	}
	if _, err := cred.ParseFingerprint(h.Kid); err != nil {
		return nil, fmt.Errorf("JWS key id: %w", err)
	}
	if len(raw[2]) != 64 {
		return nil, fmt.Errorf("signature of %d bytes, an Ed25519 signature has 64: %w", len(raw[2]), errdefs.ErrInvalid)
	}
	return &parsed{header: h, payload: raw[1], sig: raw[2]}, nil
}

// verify checks doc's signature with the issuer its kid names in trust:
// Ed25519 over the first two parts as RFC 7515 §5.2 says. split has
// already pinned alg to EdDSA, so no other algorithm can be chosen by the
// document; go-jose signs, and the tests check each side against the
// other and against documents made by hand.
func verify(doc string, p *parsed, trust *Trust) (Issuer, error) {
	iss, ok := trust.lookup(cred.Fingerprint(p.header.Kid))
	if !ok {
		return Issuer{}, fmt.Errorf("signed by %s, which is not among the trusted keys: %w", p.header.Kid, errdefs.ErrDenied)
	}
	dot := strings.LastIndexByte(doc, '.')
	if !iss.Key.Verify([]byte(doc[:dot]), p.sig) {
		return Issuer{}, fmt.Errorf("bad signature (claimed signer %s %q): %w", iss.Key.Fingerprint(), iss.Name, errdefs.ErrDenied)
	}
	return iss, nil
}

// strictJSON decodes one JSON object into v, refusing invalid UTF-8,
// unknown fields, anything after the object, and keys that are repeated in
// their object or are not plain (see plainKey).
func strictJSON(data []byte, v any) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("JSON is not valid UTF-8: %w", errdefs.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %s: %w", describeJSONError(err), errdefs.ErrInvalid)
	}
	if dec.InputOffset() != int64(len(data)) {
		return fmt.Errorf("data after the JSON object: %w", errdefs.ErrInvalid)
	}
	return checkKeys(data)
}

// describeJSONError keeps a decoder error short and free of input bytes
// beyond field names.
func describeJSONError(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("field %q has the wrong type", ute.Field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + clip(strings.TrimPrefix(msg, "json: unknown field "))
	}
	return "not the expected object"
}

// plainKey reports whether k is made of a-z, 0-9 and _. Every plab field
// name is; refusing others stops encoding/json's case-insensitive (and
// Unicode-folding) matching from reading "SLICE" or "ſlice" as "slice",
// and an escaped key ("\u0061ud") from hiding a duplicate.
func plainKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// checkKeys walks JSON that encoding/json has already accepted (so it is
// well formed) and fails on a key repeated in its object or not plain.
// It is a byte scan rather than a second decode: verification is hot.
func checkKeys(data []byte) error {
	type frame struct {
		obj, wantKey bool
		keys         [][]byte
	}
	var stack []frame
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			stack = append(stack, frame{obj: true, wantKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			if len(stack) == 0 {
				return fmt.Errorf("malformed JSON: %w", errdefs.ErrInvalid)
			}
			stack = stack[:len(stack)-1]
		case ',':
			if n := len(stack); n > 0 && stack[n-1].obj {
				stack[n-1].wantKey = true
			}
		case '"':
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' {
					j++
				}
			}
			if j >= len(data) {
				return fmt.Errorf("malformed JSON: %w", errdefs.ErrInvalid)
			}
			if n := len(stack); n > 0 && stack[n-1].wantKey {
				f := &stack[n-1]
				k := data[i+1 : j]
				if !plainKey(k) {
					return fmt.Errorf("field name %q: want lowercase letters, digits and _ only: %w", clip(string(k)), errdefs.ErrInvalid)
				}
				for _, seen := range f.keys {
					if bytes.Equal(seen, k) {
						return fmt.Errorf("duplicate field %q: %w", clip(string(k)), errdefs.ErrInvalid)
					}
				}
				f.keys = append(f.keys, k)
				f.wantKey = false
			}
			i = j
		}
	}
	return nil
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// UnverifiedType returns the typ header of a compact JWS, or "" when doc
// is not one. It says which decoder to try; it proves nothing.
func UnverifiedType(doc string) string {
	head, _, ok := strings.Cut(doc, ".")
	if !ok || len(head) > MaxDocumentBytes {
		return ""
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(head)
	if err != nil {
		return ""
	}
	var h header
	if strictJSON(raw, &h) != nil {
		return ""
	}
	return h.Typ
}
