package cred

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/plab/plab/errdefs"
)

const pemPrivateKey = "PRIVATE KEY"

// MarshalPrivateKey encodes k as a PKCS#8 PEM block, the form openssl and
// most tools read.
func MarshalPrivateKey(k *PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.k)
	if err != nil {
		panic("cred: marshal ed25519 key: " + err.Error()) // cannot happen for a valid key
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})
}

// ParsePrivateKey decodes one PKCS#8 PEM block holding an Ed25519 key.
// Errors never quote the input.
func ParsePrivateKey(data []byte) (*PrivateKey, error) {
	// pem.Decode skips text before the block and allows headers; a key
	// file has neither.
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("want one PEM block of type %q and nothing before it: %w", pemPrivateKey, errdefs.ErrInvalid)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != pemPrivateKey || len(block.Headers) != 0 {
		return nil, fmt.Errorf("want one PEM block of type %q, without headers: %w", pemPrivateKey, errdefs.ErrInvalid)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("data after the PEM block: %w", errdefs.ErrInvalid)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 private key: %w", errdefs.ErrInvalid)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %s, want ed25519: %w", keyKind(k), errdefs.ErrInvalid)
	}
	return NewPrivateKey(ek)
}

func keyKind(k any) string {
	switch k.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case *ecdh.PrivateKey:
		return "ECDH"
	}
	return "of an unknown kind"
}

// WriteKeyFile writes k to path with mode 0600, creating its directory with
// mode 0700 if needed. It never replaces an existing file: a key is
// rotated by writing a new file. The file appears whole or not at all.
func WriteKeyFile(path string, k *PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := WriteNewFile(path, MarshalPrivateKey(k), 0o600); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	return nil
}

// WriteNewFile writes data to path with mode, whole or not at all (a
// temporary file, synced, then linked into place), and never replaces an
// existing file: that fails with errdefs.ErrConflict.
func WriteNewFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".new-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	// link(2) refuses to replace path, unlike rename(2).
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s is already there; it is never overwritten, remove it or choose another path: %w", path, errdefs.ErrConflict)
		}
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadKeyFile reads a key written by WriteKeyFile. Like ssh, it refuses a
// file that its group or others may read or write.
func ReadKeyFile(path string) (*PrivateKey, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	return k, nil
}

// readSecretFile reads a file holding a secret after checking its mode.
func readSecretFile(path string) ([]byte, error) {
	// O_NONBLOCK: a FIFO planted at the path must not hang the open; it is
	// then refused as not a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read key file %s: no such file: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read key file %s: not a regular file: %w", path, errdefs.ErrInvalid)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read key file %s: mode %04o lets others read it; run chmod 600 %s: %w", path, perm, path, errdefs.ErrDenied)
	}
	const max = 64 << 10
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("read key file %s: larger than %d bytes, not a key: %w", path, max, errdefs.ErrInvalid)
	}
	return data, nil
}
