package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/atomicfile"
	"github.com/plab/plab/vnet"
)

// HostKeyFile holds the SSH gateway's host key (OpenSSH format; the public
// half beside it with .pub). It is made at the node's first start and kept:
// PLC publishes it so users pin it.
const HostKeyFile = "ssh_host_ed25519_key"

// LoadHostKey reads the gateway's host key in dir, making it first if
// there is none, and returns it with its public half in authorized_keys
// form.
func LoadHostKey(dir string) (*cred.PrivateKey, string, error) {
	path := filepath.Join(dir, HostKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = newHostKey(path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("ssh host key: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("ssh host key %s: %v; remove it and restart the node to make a new one (users will see the key change): %w", path, err, errdefs.ErrInvalid)
	}
	ek, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, "", fmt.Errorf("ssh host key %s is not ed25519; remove it and restart the node to make one: %w", path, errdefs.ErrInvalid)
	}
	key, err := cred.NewPrivateKey(*ek)
	if err != nil {
		return nil, "", err
	}
	pub, err := ssh.NewPublicKey(ek.Public())
	if err != nil {
		return nil, "", err
	}
	return key, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), nil
}

// newHostKey makes a host key at path (and path.pub).
func newHostKey(path string) ([]byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "plab ssh gateway")
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(block)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	// The key is written whole and never over another; its public half,
	// derived, may be.
	if err := cred.WriteNewFile(path, data, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		return nil, err
	}
	return data, nil
}

// DialSliver connects to addr inside the running sliver of slice, and only
// inside it (the SSH gateway's -L forwarding).
func (m *Manager) DialSliver(ctx context.Context, slice, addr string) (net.Conn, error) {
	if _, ok := m.AuthorizedKeys(slice); !ok {
		return nil, fmt.Errorf("slice %s has no live sliver here: %w", slice, errdefs.ErrNotFound)
	}
	info, err := m.backend.State(ctx, slice)
	if err != nil {
		return nil, err
	}
	if info.Pid == 0 {
		return nil, fmt.Errorf("sliver %s is not running: %w", slice, errdefs.ErrConflict)
	}
	return vnet.DialInside(ctx, info.Pid, addr)
}
