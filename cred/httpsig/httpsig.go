// Package httpsig authenticates a user's requests to PLC and nodes with RFC
// 9421 HTTP Message Signatures made by the user's SSH key, held in a file or
// in ssh-agent.
//
// Sign adds three headers to a request (Content-Digest only when it has a
// body):
//
//	Content-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:
//	Signature-Input: plab=("@method" "@authority" "@path" "@query" "content-digest" "content-type");created=1700000000;expires=1700000300;nonce="…";keyid="SHA256:…";alg="ed25519";tag="plab"
//	Signature: plab=:…:
//
// The signature covers the method, the authority (Host), the path, the
// query, and, when present, the body (through its RFC 9530 Content-Digest)
// and its Content-Type. It names the key by its fingerprint, is valid for
// at most MaxLifetime, and carries a random 128-bit nonce.
//
// A Verifier checks such a request strictly: exactly one signature, labelled
// "plab"; every required component covered; the key registered; the clock
// within the window; the body matching its digest; the signature good; the
// nonce never seen before. Its Middleware answers 401 otherwise and hands
// the verified Result to the handler (FromContext).
//
//	unsigned ──Sign──▶ signed ──Verify──▶ verified ──▶ nonce used: any replay is refused
//	                      └── tampered, expired, unknown key ──▶ refused (nonce not used)
//
// The Signature header is a credential while it is valid: no error or log
// line quotes it.
package httpsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Label is the label of plab's signature in Signature-Input and Signature,
// and Tag the value of its tag parameter (RFC 9421 §2.3), which names the
// application so a signature made for plab is useless elsewhere.
const (
	Label = "plab"
	Tag   = "plab"
)

// MaxLifetime is how long a signature is valid: Sign sets expires to
// created+MaxLifetime, and a Verifier refuses a longer window.
const MaxLifetime = 5 * time.Minute

// The header fields, as Go canonicalises them.
const (
	headerSignatureInput = "Signature-Input"
	headerSignature      = "Signature"
	headerContentDigest  = "Content-Digest"
	headerContentType    = "Content-Type"
)

// Covered component names (RFC 9421 §2).
const (
	compMethod        = "@method"
	compAuthority     = "@authority"
	compPath          = "@path"
	compQuery         = "@query"
	compContentDigest = "content-digest"
	compContentType   = "content-type"
)

// requiredComponents are covered by every plab signature.
var requiredComponents = []string{compMethod, compAuthority, compPath, compQuery}

// The signature parameters (RFC 9421 §2.3).
const (
	paramCreated = "created"
	paramExpires = "expires"
	paramNonce   = "nonce"
	paramKeyID   = "keyid"
	paramAlg     = "alg"
	paramTag     = "tag"
)

// nonceBytes is the size of the random nonce: 128 bits.
const nonceBytes = 16

// Sign signs req with id at time now: it sets Content-Digest when req has a
// body (reading req.Body and putting back an equal one), then
// Signature-Input and Signature. Sign the request last, after every header
// the server needs is set; a later change to the method, URL, Host,
// Content-Type or body invalidates the signature.
func Sign(req *http.Request, id cred.Identity, now time.Time) error {
	var n [nonceBytes]byte
	if _, err := rand.Read(n[:]); err != nil {
		return fmt.Errorf("sign request: make nonce: %w", err)
	}
	created := now.Unix()
	return sign(req, id, []param{
		intParam(paramCreated, created),
		intParam(paramExpires, created+int64(MaxLifetime/time.Second)),
		strParam(paramNonce, base64.RawURLEncoding.EncodeToString(n[:])),
		strParam(paramKeyID, string(id.Fingerprint())),
		strParam(paramAlg, id.Alg()),
		strParam(paramTag, Tag),
	})
}

// sign signs req with the given signature parameters, so tests can make
// well-signed requests that break one rule.
func sign(req *http.Request, id cred.Identity, params []param) error {
	if req.URL == nil {
		return fmt.Errorf("sign request: no URL: %w", errdefs.ErrInvalid)
	}
	body, err := readBody(req)
	if err != nil {
		return err
	}
	components := append([]string(nil), requiredComponents...)
	if len(body) > 0 {
		req.Header.Set(headerContentDigest, contentDigest(body))
		components = append(components, compContentDigest)
	} else {
		req.Header.Del(headerContentDigest)
	}
	if len(req.Header.Values(headerContentType)) > 0 {
		components = append(components, compContentType)
	}
	sigParams, err := serializeSigParams(components, params)
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	base, err := signatureBase(req, components, sigParams)
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	sig, err := id.SignData([]byte(base))
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	req.Header.Set(headerSignatureInput, Label+"="+sigParams)
	req.Header.Set(headerSignature, Label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
	return nil
}

// readBody reads the whole body of an outgoing request and puts back an
// equal one.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("sign request: read body: %w", err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	return body, nil
}

func intParam(key string, i int64) param {
	return param{key: key, val: bareItem{kind: kindInteger, i: i}}
}

func strParam(key, s string) param {
	return param{key: key, val: bareItem{kind: kindString, s: s}}
}

// contentDigest returns the Content-Digest field value of body (RFC 9530).
func contentDigest(body []byte) string {
	d := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(d[:]) + ":"
}

// serializeSigParams writes the value of @signature-params: the covered
// components as an inner list of strings, with the parameters.
func serializeSigParams(components []string, params []param) (string, error) {
	items := make([]item, len(components))
	for i, c := range components {
		items[i] = item{val: bareItem{kind: kindString, s: c}}
	}
	var b strings.Builder
	if err := writeInnerList(&b, items, params); err != nil {
		return "", err
	}
	return b.String(), nil
}

// signatureBase builds the signature base of RFC 9421 §2.5: one line per
// covered component, then the @signature-params line, with no final
// newline.
func signatureBase(req *http.Request, components []string, sigParams string) (string, error) {
	var b strings.Builder
	for _, c := range components {
		v, err := componentValue(req, c)
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(v, "\r\n") {
			return "", fmt.Errorf("component %s holds a line break: %w", c, errdefs.ErrInvalid)
		}
		b.WriteString(`"` + c + `": ` + v + "\n")
	}
	b.WriteString(`"@signature-params": ` + sigParams)
	return b.String(), nil
}

// componentValue returns the value of one covered component (RFC 9421
// §2.1, §2.2). Names are checked before: derived components plab knows, or
// lowercase field names made of tchars, so %q prints them unchanged.
func componentValue(req *http.Request, name string) (string, error) {
	switch name {
	case compMethod:
		if req.Method == "" {
			return http.MethodGet, nil
		}
		return req.Method, nil
	case compAuthority:
		return authority(req), nil
	case compPath:
		if p := req.URL.EscapedPath(); p != "" {
			return p, nil
		}
		return "/", nil
	case compQuery:
		return "?" + req.URL.RawQuery, nil
	}
	if strings.HasPrefix(name, "@") {
		return "", fmt.Errorf("derived component %q is not supported: %w", name, errdefs.ErrInvalid)
	}
	vals := req.Header.Values(name)
	if len(vals) == 0 {
		return "", fmt.Errorf("the signature covers header %s, which the request lacks: %w", name, errdefs.ErrInvalid)
	}
	trimmed := make([]string, len(vals))
	for i, v := range vals {
		trimmed[i] = strings.Trim(v, " \t")
	}
	return strings.Join(trimmed, ", "), nil
}

// authority is the request's @authority: the Host it was sent to, in
// lowercase. The port is kept as sent, so that a server behind a TLS
// terminator computes what the client did.
func authority(req *http.Request) string {
	h := req.Host
	if h == "" && req.URL != nil {
		h = req.URL.Host
	}
	return asciiLower(h)
}
