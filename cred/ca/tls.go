package ca

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/plab/plab/errdefs"
)

// ServerConfig returns a TLS 1.3 server configuration that presents the
// certificate cert returns at each handshake and admits only clients with
// a certificate that trust verifies (see Trust.Verify) and whose role is
// one of clients (with none, it admits no one). Trust and the clock are
// consulted at every handshake.
//
// Session tickets are off, so every connection is a full handshake
// checked against the current trust. A client refused by the server sees
// only the TLS alert "bad certificate"; the reason is in the server's
// handshake error.
func ServerConfig(trust *Trust, cert func() (*tls.Certificate, error), clients ...Role) *tls.Config {
	clients = slices.Clone(clients)
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Time:                   trust.now,
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := cert()
			if err != nil {
				return nil, fmt.Errorf("server certificate: %w", err)
			}
			return c, nil
		},
		// Go checks that the client holds the key of the certificate it
		// sent; VerifyConnection checks the certificate itself.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			p, err := trust.verifyChain(cs.PeerCertificates)
			if err != nil {
				return fmt.Errorf("verify client: %w", err)
			}
			if !slices.Contains(clients, p.Role) {
				return fmt.Errorf("verify client: %s may not connect here; this server admits %v: %w", p, clients, errdefs.ErrDenied)
			}
			return nil
		},
	}
}

// ClientConfig returns a TLS 1.3 client configuration that presents the
// certificate cert returns (none when cert is nil) and accepts only a
// server whose certificate trust verifies (see Trust.Verify) and names
// role and name: PLC's name, or the hostname of the node dialed.
// DNS names and IP addresses in the server's certificate are not checked:
// the role and name are what identify a testbed server.
func ClientConfig(trust *Trust, cert func() (*tls.Certificate, error), role Role, name string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		Time:       trust.now,
		// The standard verification knows neither plab roles nor a Trust
		// that changes at run time; VerifyConnection verifies instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			p, err := trust.verifyChain(cs.PeerCertificates)
			if err != nil {
				return fmt.Errorf("verify server: %w", err)
			}
			if p.Role != role || p.Name != name {
				return fmt.Errorf("verify server: it is %s, want %s %s; check the address dialed: %w", p, role, name, errdefs.ErrDenied)
			}
			return nil
		},
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := cert()
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}
			return c, nil
		}
	}
	return cfg
}
