// Package cred holds plab's identities: Ed25519 keys for PLC and nodes,
// users' SSH keys (files and ssh-agent), the SHA-256 fingerprints that name
// every principal, key files with safe permissions, and the one-time store
// that makes tickets and signed requests unreplayable.
//
// The testbed CA and mTLS live in cred/ca, tickets and leases in
// cred/ticket, signed HTTP requests in cred/httpsig; all name keys by the
// Fingerprint defined here.
//
// Private keys never print: their String, GoString, Format and LogValue
// methods say "[redacted]", so a key that strays into a log line or an
// error message shows nothing.
package cred

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/errdefs"
)

// PrivateKey is an Ed25519 private key held by PLC or a node.
type PrivateKey struct {
	k ed25519.PrivateKey
}

// GenerateKey returns a new random Ed25519 key.
func GenerateKey() (*PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return &PrivateKey{k: k}, nil
}

// NewPrivateKey wraps an existing Ed25519 key.
func NewPrivateKey(k ed25519.PrivateKey) (*PrivateKey, error) {
	if len(k) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 private key of %d bytes, want %d: %w", len(k), ed25519.PrivateKeySize, errdefs.ErrInvalid)
	}
	return &PrivateKey{k: k}, nil
}

// Public returns the key's public half.
func (k *PrivateKey) Public() PublicKey {
	return PublicKey{k: k.k.Public().(ed25519.PublicKey)}
}

// Fingerprint names the key.
func (k *PrivateKey) Fingerprint() Fingerprint { return k.Public().Fingerprint() }

// Sign signs msg with pure Ed25519.
func (k *PrivateKey) Sign(msg []byte) []byte { return ed25519.Sign(k.k, msg) }

// CryptoSigner returns the key as a crypto.Signer, for x509, TLS and JOSE.
func (k *PrivateKey) CryptoSigner() crypto.Signer { return k.k }

const redacted = "[redacted]"

// String hides the key.
func (k PrivateKey) String() string { return redacted }

// GoString hides the key.
func (k PrivateKey) GoString() string { return redacted }

// Format hides the key whatever the verb.
func (k PrivateKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue hides the key from slog.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// PublicKey is an Ed25519 public key of PLC or a node.
type PublicKey struct {
	k ed25519.PublicKey
}

// NewPublicKey checks that pub is an Ed25519 public key and wraps it.
func NewPublicKey(pub crypto.PublicKey) (PublicKey, error) {
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("public key is %T, want ed25519: %w", pub, errdefs.ErrInvalid)
	}
	if len(k) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("ed25519 public key of %d bytes, want %d: %w", len(k), ed25519.PublicKeySize, errdefs.ErrInvalid)
	}
	return PublicKey{k: k}, nil
}

// IsZero reports whether p holds no key.
func (p PublicKey) IsZero() bool { return len(p.k) == 0 }

// Ed25519 returns the raw key.
func (p PublicKey) Ed25519() ed25519.PublicKey { return p.k }

// Verify reports whether sig is p's signature of msg.
func (p PublicKey) Verify(msg, sig []byte) bool {
	return len(p.k) == ed25519.PublicKeySize && ed25519.Verify(p.k, msg, sig)
}

// Equal reports whether p and q are the same key.
func (p PublicKey) Equal(q PublicKey) bool { return p.k.Equal(q.k) }

// SSH returns the key in SSH form.
func (p PublicKey) SSH() ssh.PublicKey {
	s, err := ssh.NewPublicKey(p.k)
	if err != nil {
		panic("cred: ed25519 key refused by x/crypto/ssh: " + err.Error()) // cannot happen for a 32-byte key
	}
	return s
}

// AuthorizedKey returns the key as one line of an OpenSSH authorized_keys
// file, so ssh-keygen -lf and other tools can read it.
func (p PublicKey) AuthorizedKey() string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(p.SSH())), "\n")
}

// Fingerprint names the key.
func (p PublicKey) Fingerprint() Fingerprint {
	return Fingerprint(ssh.FingerprintSHA256(p.SSH()))
}

// String returns the fingerprint.
func (p PublicKey) String() string { return string(p.Fingerprint()) }

// ParsePublicKey reads an Ed25519 public key in OpenSSH authorized_keys form
// ("ssh-ed25519 AAAA… comment").
func ParsePublicKey(text string) (PublicKey, error) {
	pub, err := ParseUserKey(text)
	if err != nil {
		return PublicKey{}, err
	}
	ck, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("parse public key: %s keys are not supported here; PLC and node keys are ssh-ed25519: %w", pub.Type(), errdefs.ErrInvalid)
	}
	k, err := NewPublicKey(ck.CryptoPublicKey())
	if err != nil {
		return PublicKey{}, fmt.Errorf("parse public key: %s keys are not supported here; PLC and node keys are ssh-ed25519: %w", pub.Type(), errdefs.ErrInvalid)
	}
	return k, nil
}

// Fingerprint names a principal: the SHA-256 of its public key in SSH wire
// form, written as OpenSSH prints it ("SHA256:" and 43 characters of
// unpadded base64).
type Fingerprint string

const fingerprintPrefix = "SHA256:"

// ParseFingerprint checks s is a well-formed fingerprint.
func ParseFingerprint(s string) (Fingerprint, error) {
	rest, ok := strings.CutPrefix(s, fingerprintPrefix)
	if !ok {
		return "", fmt.Errorf("fingerprint %q: want SHA256: followed by 43 base64 characters, as ssh-keygen -l prints: %w", clip(s), errdefs.ErrInvalid)
	}
	// The length check also keeps out \r and \n, which the decoder skips.
	b, err := base64.RawStdEncoding.Strict().DecodeString(rest)
	if err != nil || len(b) != 32 || len(rest) != 43 {
		return "", fmt.Errorf("fingerprint %q: want SHA256: followed by 43 base64 characters, as ssh-keygen -l prints: %w", clip(s), errdefs.ErrInvalid)
	}
	return Fingerprint(s), nil
}

// FingerprintSSH names an SSH public key.
func FingerprintSSH(pub ssh.PublicKey) Fingerprint {
	return Fingerprint(ssh.FingerprintSHA256(pub))
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
