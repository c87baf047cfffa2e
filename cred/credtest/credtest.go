// Package credtest makes users for other packages' tests: an SSH key in a
// key file (0600) loaded as a cred.Identity, with its authorized_keys line.
package credtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/cred"
)

// User is someone with an SSH key.
type User struct {
	Email string
	ID    cred.Identity
	// Pub is the authorized_keys line of the key.
	Pub string
	// KeyFile holds the private key (OpenSSH format, 0600), for ssh -i.
	KeyFile string
}

// Fingerprint names the user's key.
func (u *User) Fingerprint() cred.Fingerprint { return u.ID.Fingerprint() }

// NewUser makes a user with a fresh ed25519 key in a key file.
func NewUser(t testing.TB, email string) *User {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, email)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := cred.LoadIdentityFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &User{Email: email, ID: id, Pub: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + email, KeyFile: path}
}
