package ca

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Role says what a certificate's holder is in the testbed.
type Role string

// The roles, written in a certificate as the URI SAN plab:<role>:<name>.
const (
	// RoleNode is a node; its name is its hostname.
	RoleNode Role = "node"
	// RolePLC is PlanetLab Central; its name is the PLC's name.
	RolePLC Role = "plc"
)

const uriScheme = "plab"

func roleURI(role Role, name string) *url.URL {
	return &url.URL{Scheme: uriScheme, Opaque: string(role) + ":" + name}
}

// Peer is who a verified certificate names.
type Peer struct {
	Role Role
	// Name is the node's hostname or PLC's name.
	Name string
	// Key names the certificate's public key.
	Key cred.Fingerprint
}

// String returns "node pl1.example.org (SHA256:…)".
func (p Peer) String() string { return fmt.Sprintf("%s %s (%s)", p.Role, p.Name, p.Key) }

// peerOf reads the role, name and key of cert, which must carry exactly
// one plab URI SAN and an Ed25519 key. It does not verify cert.
func peerOf(cert *x509.Certificate) (Peer, error) {
	var found []string
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme {
			found = append(found, u.Opaque)
		}
	}
	if len(found) != 1 {
		return Peer{}, fmt.Errorf("certificate %q carries %d plab roles, want 1; it was not issued by the testbed CA: %w", clip(cert.Subject.CommonName), len(found), errdefs.ErrDenied)
	}
	role, name, _ := strings.Cut(found[0], ":")
	if Role(role) != RoleNode && Role(role) != RolePLC {
		return Peer{}, fmt.Errorf("certificate %q has the role %q, want node or plc: %w", clip(cert.Subject.CommonName), clip(role), errdefs.ErrDenied)
	}
	if err := checkHostname(name); err != nil {
		return Peer{}, fmt.Errorf("certificate %q names a %s badly: %w", clip(cert.Subject.CommonName), role, errdefs.ErrDenied)
	}
	pub, err := cred.NewPublicKey(cert.PublicKey)
	if err != nil {
		return Peer{}, fmt.Errorf("certificate %q: key is not Ed25519; it was not issued by the testbed CA: %w", clip(cert.Subject.CommonName), errdefs.ErrDenied)
	}
	return Peer{Role: Role(role), Name: name, Key: pub.Fingerprint()}, nil
}
