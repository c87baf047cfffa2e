package ticket

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// A trust file lists trusted issuers, one per line, in OpenSSH public key
// form with the role and name as the comment:
//
//	ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI… plc:plc.example.org
//	ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI… node:node1.example.org
//
// Blank lines and lines starting with # are ignored. ssh-keygen -lf reads
// the same file and prints the fingerprints.

// TrustLine returns iss as a line of a trust file.
func TrustLine(iss Issuer) string {
	return iss.Key.AuthorizedKey() + " " + string(iss.Role) + ":" + iss.Name
}

// ParseTrust reads a trust file.
func ParseTrust(data []byte) (*Trust, error) {
	t, _ := NewTrust()
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("trust file line %d: want \"ssh-ed25519 AAAA… plc:NAME\" or \"… node:HOSTNAME\": %w", n, errdefs.ErrInvalid)
		}
		key, err := cred.ParsePublicKey(f[0] + " " + f[1])
		if err != nil {
			return nil, fmt.Errorf("trust file line %d: %w", n, err)
		}
		role, name, ok := strings.Cut(f[2], ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("trust file line %d: comment %q should be plc:NAME or node:HOSTNAME: %w", n, clip(f[2]), errdefs.ErrInvalid)
		}
		if err := t.Add(Issuer{Role: Role(role), Name: name, Key: key}); err != nil {
			return nil, fmt.Errorf("trust file line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("trust file: %w", err)
	}
	return t, nil
}
