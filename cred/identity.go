package cred

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/plab/plab/errdefs"
)

// Signature algorithms a user's key signs with, named as in RFC 9421 §6.2.
const (
	AlgEd25519        = "ed25519"
	AlgRSAPKCS1SHA256 = "rsa-v1_5-sha256"
)

// MinRSABits is the smallest RSA key plab accepts from a user.
const MinRSABits = 2048

// ParseUserKey reads one user public key in OpenSSH authorized_keys form
// ("ssh-ed25519 AAAA… comment" or "ssh-rsa AAAA… comment") and checks it
// with CheckUserKey. Options and trailing lines are refused.
func ParseUserKey(text string) (ssh.PublicKey, error) {
	line := strings.TrimSpace(text)
	if line == "" || strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("parse public key: want exactly one line like \"ssh-ed25519 AAAA… you@host\" (the contents of ~/.ssh/id_ed25519.pub): %w", errdefs.ErrInvalid)
	}
	pub, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("parse public key: not an OpenSSH public key; give the contents of a .pub file such as ~/.ssh/id_ed25519.pub: %w", errdefs.ErrInvalid)
	}
	if len(options) != 0 || len(rest) != 0 {
		return nil, fmt.Errorf("parse public key: give the key alone, without authorized_keys options: %w", errdefs.ErrInvalid)
	}
	if err := CheckUserKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// CheckUserKey accepts Ed25519 keys and RSA keys of at least MinRSABits.
func CheckUserKey(pub ssh.PublicKey) error {
	switch pub.Type() {
	case ssh.KeyAlgoED25519:
		return nil
	case ssh.KeyAlgoRSA:
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("ssh-rsa key without an RSA public key: %w", errdefs.ErrInvalid)
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("ssh-rsa key without an RSA public key: %w", errdefs.ErrInvalid)
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("RSA key of %d bits is too weak; use ed25519 (ssh-keygen -t ed25519) or RSA of at least %d bits: %w", bits, MinRSABits, errdefs.ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("%s keys are not accepted; use ed25519 (ssh-keygen -t ed25519) or RSA of at least %d bits: %w", pub.Type(), MinRSABits, errdefs.ErrInvalid)
}

// UserAlg returns the algorithm a user's key signs requests with.
func UserAlg(pub ssh.PublicKey) (string, error) {
	if err := CheckUserKey(pub); err != nil {
		return "", err
	}
	if pub.Type() == ssh.KeyAlgoED25519 {
		return AlgEd25519, nil
	}
	return AlgRSAPKCS1SHA256, nil
}

// VerifyUserSignature checks that sig is pub's signature of data under alg.
func VerifyUserSignature(pub ssh.PublicKey, alg string, data, sig []byte) error {
	want, err := UserAlg(pub)
	if err != nil {
		return err
	}
	if alg != want {
		return fmt.Errorf("signature algorithm %q does not match the %s key %s (want %q): %w", clip(alg), pub.Type(), FingerprintSSH(pub), want, errdefs.ErrDenied)
	}
	ck := pub.(ssh.CryptoPublicKey).CryptoPublicKey()
	switch k := ck.(type) {
	case ed25519.PublicKey:
		if len(sig) == ed25519.SignatureSize && ed25519.Verify(k, data, sig) {
			return nil
		}
	case *rsa.PublicKey:
		d := sha256.Sum256(data)
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig) == nil {
			return nil
		}
	}
	return fmt.Errorf("bad signature by %s: %w", FingerprintSSH(pub), errdefs.ErrDenied)
}

// Identity is a user's SSH key that can sign: a key file or a key held by
// ssh-agent.
type Identity interface {
	// PublicKey is the key the signature verifies with.
	PublicKey() ssh.PublicKey
	// Fingerprint names the key.
	Fingerprint() Fingerprint
	// Alg is the RFC 9421 algorithm of the signatures.
	Alg() string
	// SignData signs data.
	SignData(data []byte) ([]byte, error)
}

type fileIdentity struct {
	pub  ssh.PublicKey
	alg  string
	priv crypto.Signer
}

func (f *fileIdentity) PublicKey() ssh.PublicKey { return f.pub }
func (f *fileIdentity) Fingerprint() Fingerprint { return FingerprintSSH(f.pub) }
func (f *fileIdentity) Alg() string              { return f.alg }

func (f *fileIdentity) SignData(data []byte) ([]byte, error) {
	if f.alg == AlgEd25519 {
		return f.priv.Sign(rand.Reader, data, crypto.Hash(0))
	}
	d := sha256.Sum256(data)
	return f.priv.Sign(rand.Reader, d[:], crypto.SHA256)
}

func (f *fileIdentity) String() string             { return "identity " + string(f.Fingerprint()) }
func (f *fileIdentity) GoString() string           { return f.String() }
func (f *fileIdentity) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte(f.String())) }
func (f *fileIdentity) LogValue() slog.Value       { return slog.StringValue(f.String()) }

// LoadIdentityFile reads a user's OpenSSH private key file (as ssh-keygen
// writes it). A file others may read is refused, as ssh does. For an
// encrypted key, passphrase is called; when it is nil the error says to
// add the key to ssh-agent instead.
func LoadIdentityFile(path string, passphrase func() ([]byte, error)) (Identity, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == nil {
			return nil, fmt.Errorf("identity %s is encrypted; add it to ssh-agent (ssh-add %s) and use the agent: %w", path, path, errdefs.ErrInvalid)
		}
		pw, perr := passphrase()
		if perr != nil {
			return nil, fmt.Errorf("identity %s: read passphrase: %w", path, perr)
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(data, pw)
		clear(pw)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("identity %s: wrong passphrase: %w", path, errdefs.ErrDenied)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("identity %s: not an OpenSSH private key (make one with ssh-keygen -t ed25519): %w", path, errdefs.ErrInvalid)
	}
	var signer crypto.Signer
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		signer = *k
	case ed25519.PrivateKey:
		signer = k
	case *rsa.PrivateKey:
		signer = k
	default:
		return nil, fmt.Errorf("identity %s: %s keys are not accepted; use ed25519 (ssh-keygen -t ed25519) or RSA of at least %d bits: %w", path, keyKind(raw), MinRSABits, errdefs.ErrInvalid)
	}
	pub, err := ssh.NewPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	alg, err := UserAlg(pub)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return &fileIdentity{pub: pub, alg: alg, priv: signer}, nil
}

type agentIdentity struct {
	agent agent.ExtendedAgent
	key   *agent.Key
	pub   ssh.PublicKey
	alg   string
}

func (a *agentIdentity) PublicKey() ssh.PublicKey { return a.pub }
func (a *agentIdentity) Fingerprint() Fingerprint { return FingerprintSSH(a.pub) }
func (a *agentIdentity) Alg() string              { return a.alg }

func (a *agentIdentity) SignData(data []byte) ([]byte, error) {
	var flags agent.SignatureFlags
	want := ssh.KeyAlgoED25519
	if a.alg == AlgRSAPKCS1SHA256 {
		flags, want = agent.SignatureFlagRsaSha256, ssh.KeyAlgoRSASHA256
	}
	sig, err := a.agent.SignWithFlags(a.key, data, flags)
	if err != nil {
		return nil, fmt.Errorf("ssh-agent refused to sign with %s (is it still loaded? see ssh-add -l): %w", a.Fingerprint(), errdefs.ErrUnavailable)
	}
	if sig.Format != want {
		return nil, fmt.Errorf("ssh-agent signed with %q, want %q: %w", sig.Format, want, errdefs.ErrUnavailable)
	}
	return sig.Blob, nil
}

// AgentIdentities lists the keys held by an ssh-agent that plab accepts.
func AgentIdentities(a agent.ExtendedAgent) ([]Identity, error) {
	keys, err := a.List()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent keys: %w", errdefs.ErrUnavailable)
	}
	var ids []Identity
	for _, k := range keys {
		pub, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			continue
		}
		alg, err := UserAlg(pub)
		if err != nil {
			continue
		}
		ids = append(ids, &agentIdentity{agent: a, key: k, pub: pub, alg: alg})
	}
	return ids, nil
}

// AgentIdentity returns the agent's key named fp, or its first acceptable
// key when fp is empty.
func AgentIdentity(a agent.ExtendedAgent, fp Fingerprint) (Identity, error) {
	ids, err := AgentIdentities(a)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if fp == "" || id.Fingerprint() == fp {
			return id, nil
		}
	}
	if fp == "" {
		return nil, fmt.Errorf("ssh-agent holds no ed25519 or RSA (≥%d bits) key; add one with ssh-add: %w", MinRSABits, errdefs.ErrNotFound)
	}
	return nil, fmt.Errorf("ssh-agent does not hold key %s; add it with ssh-add, or list the loaded keys with ssh-add -l: %w", fp, errdefs.ErrNotFound)
}

// DialAgent connects to the ssh-agent named by $SSH_AUTH_SOCK. Close the
// returned connection when done.
func DialAgent() (agent.ExtendedAgent, net.Conn, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, fmt.Errorf("no ssh-agent: SSH_AUTH_SOCK is not set; start one with eval $(ssh-agent) and ssh-add, or give a key file: %w", errdefs.ErrUnavailable)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to ssh-agent at %s: %w", sock, errdefs.ErrUnavailable)
	}
	return agent.NewClient(c), c, nil
}
