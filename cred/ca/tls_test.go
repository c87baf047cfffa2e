package ca

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
)

// The alert a refused peer sees: crypto/tls sends "bad certificate" for
// every refusal by VerifyConnection.
var alerted = want{text: "remote error: tls: bad certificate"}

type handshakeCase struct {
	name string
	// setup changes the bed and returns the two configurations.
	setup                  func(t *testing.T, b *bed) (srv, cli *tls.Config)
	wantServer, wantClient want
}

// plcServesNodes is the common arrangement: PLC's server admits nodes, a
// node dials PLC.
func plcServesNodes(b *bed, server, client *leaf) (srv, cli *tls.Config) {
	return ServerConfig(b.trust, server.kp.Get, RoleNode), ClientConfig(b.trust, client.kp.Get, RolePLC, plcName)
}

func handshakeCases() []handshakeCase {
	return []handshakeCase{
		{
			name: "node certificate from the testbed CA",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return plcServesNodes(b, b.plc, b.n1)
			},
		},
		{
			name: "PLC dials a node",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return ServerConfig(b.trust, b.n1.kp.Get, RolePLC), ClientConfig(b.trust, b.plc.kp.Get, RoleNode, "n1.test")
			},
		},
		{
			name: "client certificate from another CA",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return plcServesNodes(b, b.plc, b.stranger)
			},
			wantServer: want{errdefs.ErrDenied, "not issued by a CA root trusted here"},
			wantClient: alerted,
		},
		{
			name: "server certificate from another CA",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return plcServesNodes(b, b.strangerPLC, b.n1)
			},
			wantServer: alerted,
			wantClient: want{errdefs.ErrDenied, "verify server: certificate \"plc.test\" was not issued by a CA root trusted here"},
		},
		{
			name: "expired client certificate",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				b.clock.Set(t0.Add(nodeValid + time.Second))
				return plcServesNodes(b, b.plc, b.n1)
			},
			wantServer: want{errdefs.ErrExpired, "verify client: certificate \"n1.test\" expired at 2026-03-02T12:00:00Z; the holder must renew it"},
			wantClient: alerted,
		},
		{
			name: "certificate not yet valid",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				b.clock.Set(t0.Add(-time.Hour))
				return ServerConfig(b.trust, b.n1.kp.Get, RolePLC), ClientConfig(b.trust, b.plc.kp.Get, RoleNode, "n1.test")
			},
			// The client checks the server first, and both were issued at t0.
			wantServer: alerted,
			wantClient: want{errdefs.ErrExpired, "not valid until 2026-03-01T11:59:00Z; check both clocks"},
		},
		{
			name: "expired server certificate",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				b.clock.Set(t0.Add(plcValid + time.Second))
				return plcServesNodes(b, b.plc, b.n1)
			},
			wantServer: alerted,
			wantClient: want{errdefs.ErrExpired, "verify server: certificate \"plc.test\" expired"},
		},
		{
			name: "revoked client certificate",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				b.trust.Revoke(b.n1.cert.SerialNumber)
				return plcServesNodes(b, b.plc, b.n1)
			},
			wantServer: want{errdefs.ErrDenied, "is revoked; the holder must enroll again"},
			wantClient: alerted,
		},
		{
			name: "revoked server certificate",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				b.trust.Revoke(b.plc.cert.SerialNumber)
				return plcServesNodes(b, b.plc, b.n1)
			},
			wantServer: alerted,
			wantClient: want{errdefs.ErrDenied, "verify server: certificate \"plc.test\" (serial"},
		},
		{
			name: "during rotation, old root",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				mustAddRoot(t, b.trust, b.ca2)
				return plcServesNodes(b, b.plc2, b.n1)
			},
		},
		{
			name: "during rotation, new root",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				mustAddRoot(t, b.trust, b.ca2)
				return plcServesNodes(b, b.plc, b.n2)
			},
		},
		{
			name: "after rotation, old root refused",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				rotate(t, b)
				return plcServesNodes(b, b.plc2, b.n1)
			},
			wantServer: want{errdefs.ErrDenied, "verify client: certificate \"n1.test\" was not issued by a CA root trusted here"},
			wantClient: alerted,
		},
		{
			name: "after rotation, new root accepted",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				rotate(t, b)
				return plcServesNodes(b, b.plc2, b.n2)
			},
		},
		{
			name: "TLS 1.2 client",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				srv, cli := plcServesNodes(b, b.plc, b.n1)
				cli.MinVersion, cli.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return srv, cli
			},
			wantServer: want{text: "tls: client offered only unsupported versions"},
			wantClient: want{text: "remote error: tls: protocol version not supported"},
		},
		{
			name: "TLS 1.2 server",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				srv, cli := plcServesNodes(b, b.plc, b.n1)
				srv.MinVersion, srv.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return srv, cli
			},
			wantServer: want{text: "tls: client offered only unsupported versions"},
			wantClient: want{text: "remote error: tls: protocol version not supported"},
		},
		{
			name: "node certificate where PLC is expected",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return plcServesNodes(b, b.n1, b.n1)
			},
			wantServer: alerted,
			wantClient: want{errdefs.ErrDenied, "verify server: it is node n1.test"},
		},
		{
			name: "PLC with another name",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return plcServesNodes(b, b.plcOtherName, b.n1)
			},
			wantServer: alerted,
			wantClient: want{errdefs.ErrDenied, "verify server: it is plc plc-b.test"},
		},
		{
			name: "another node answers",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				mustAddRoot(t, b.trust, b.ca2)
				return ServerConfig(b.trust, b.n2.kp.Get, RolePLC), ClientConfig(b.trust, b.plc.kp.Get, RoleNode, "n1.test")
			},
			wantServer: alerted,
			wantClient: want{errdefs.ErrDenied, "it is node n2.test"},
		},
		{
			name: "PLC certificate where only nodes are admitted",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return plcServesNodes(b, b.plc, b.plcOtherName)
			},
			wantServer: want{errdefs.ErrDenied, "verify client: plc plc-b.test"},
			wantClient: alerted,
		},
		{
			name: "client without a certificate",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return ServerConfig(b.trust, b.plc.kp.Get, RoleNode), ClientConfig(b.trust, nil, RolePLC, plcName)
			},
			wantServer: want{text: "client didn't provide a certificate"},
			wantClient: want{text: "remote error: tls: certificate required"},
		},
		{
			name: "client not enrolled yet",
			setup: func(t *testing.T, b *bed) (*tls.Config, *tls.Config) {
				return ServerConfig(b.trust, b.plc.kp.Get, RoleNode), ClientConfig(b.trust, new(Keypair).Get, RolePLC, plcName)
			},
			wantServer: want{kind: io.EOF}, // the client hangs up without an alert
			wantClient: want{errdefs.ErrUnavailable, "client certificate: no certificate yet; enroll with PLC first"},
		},
	}
}

func mustAddRoot(t *testing.T, tr *Trust, c *CA) {
	t.Helper()
	if err := tr.AddRoot(c.Certificate()); err != nil {
		t.Fatalf("AddRoot = %v", err)
	}
}

// rotate completes a root rotation: ca2 added, then ca removed.
func rotate(t *testing.T, b *bed) {
	t.Helper()
	mustAddRoot(t, b.trust, b.ca2)
	if err := b.trust.RemoveRoot(b.ca.Certificate()); err != nil {
		t.Fatalf("RemoveRoot = %v", err)
	}
}

func TestHandshake(t *testing.T) {
	for _, tc := range handshakeCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t)
			srv, cli := tc.setup(t, b)
			r := handshake(t, srv, cli)
			t.Logf("server: %v", r.serverErr)
			t.Logf("client: %v", r.clientErr)
			if !tc.wantServer.check(r.serverErr) {
				t.Errorf("server handshake = %v, want %v", r.serverErr, tc.wantServer)
			}
			if !tc.wantClient.check(r.clientErr) {
				t.Errorf("client handshake = %v, want %v", r.clientErr, tc.wantClient)
			}
			if r.serverErr == nil && r.client.Version != tls.VersionTLS13 {
				t.Errorf("version = %x, want TLS 1.3", r.client.Version)
			}
		})
	}
}

// TestConnPeer: a handler learns who is calling, and a certificate revoked
// while the connection is open is refused at the next request.
func TestConnPeer(t *testing.T) {
	b := newBed(t)
	srv, cli := plcServesNodes(b, b.plc, b.n1)
	r := handshake(t, srv, cli)
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake = %v, %v", r.serverErr, r.clientErr)
	}
	got, err := b.trust.ConnPeer(&r.server)
	want := Peer{Role: RoleNode, Name: "n1.test", Key: b.n1.key.Fingerprint()}
	if err != nil || got != want {
		t.Errorf("server ConnPeer = %v, %v, want %v", got, err, want)
	}
	got, err = b.trust.ConnPeer(&r.client)
	want = Peer{Role: RolePLC, Name: plcName, Key: b.plc.key.Fingerprint()}
	if err != nil || got != want {
		t.Errorf("client ConnPeer = %v, %v, want %v", got, err, want)
	}

	b.trust.Revoke(b.n1.cert.SerialNumber)
	if _, err := b.trust.ConnPeer(&r.server); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("ConnPeer after Revoke = %v, want %v", err, errdefs.ErrDenied)
	}
	if _, err := b.trust.ConnPeer(nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("ConnPeer(nil) = %v, want %v", err, errdefs.ErrDenied)
	}
	if _, err := b.trust.ConnPeer(&tls.ConnectionState{}); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("ConnPeer(no certificate) = %v, want %v", err, errdefs.ErrDenied)
	}
}

// TestRenewalWithoutRestart: a server configured once presents the
// renewed certificate from the next handshake on.
func TestRenewalWithoutRestart(t *testing.T) {
	b := newBed(t)
	srv, cli := plcServesNodes(b, b.plc, b.n1)
	serials := func() []string {
		r := handshake(t, srv, cli)
		if r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("handshake = %v, %v", r.serverErr, r.clientErr)
		}
		return []string{r.client.PeerCertificates[0].SerialNumber.String(), r.server.PeerCertificates[0].SerialNumber.String()}
	}
	before := serials()
	if diff := cmp.Diff([]string{b.plc.cert.SerialNumber.String(), b.n1.cert.SerialNumber.String()}, before); diff != "" {
		t.Fatalf("serials before renewal (-want +got):\n%s", diff)
	}

	// Both renew: PLC with the same key, the node with a new key and CSR.
	plcCert, err := b.ca.IssuePLC(b.plc.key.Public(), plcName, nil, plcValid, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.plc.kp.Set(plcCert, b.plc.key); err != nil {
		t.Fatal(err)
	}
	n1 := issueNode(t, b.ca, "n1.test")
	if err := b.n1.kp.Set(n1.cert, n1.key); err != nil {
		t.Fatal(err)
	}
	b.trust.Revoke(b.n1.cert.SerialNumber) // the old node certificate is retired

	after := serials()
	if diff := cmp.Diff([]string{plcCert.SerialNumber.String(), n1.cert.SerialNumber.String()}, after); diff != "" {
		t.Errorf("serials after renewal (-want +got):\n%s", diff)
	}
}

// TestTrustChangesWhileServing changes the trust from one goroutine while
// others hand-shake with a server; run under -race.
func TestTrustChangesWhileServing(t *testing.T) {
	b := newBed(t)
	srv, cli := plcServesNodes(b, b.plc, b.n1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var serving sync.WaitGroup
	serving.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serving.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, srv)
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte{1})
				}
			})
		}
	})

	const clients, rounds = 4, 10
	var wg sync.WaitGroup
	wg.Go(func() {
		for range rounds {
			mustAddRoot(t, b.trust, b.ca2)
			b.trust.Revoke(b.n2.cert.SerialNumber)
			if err := b.trust.RemoveRoot(b.ca2.Certificate()); err != nil {
				t.Errorf("RemoveRoot = %v", err)
			}
			_ = b.trust.Roots()
		}
	})
	for range clients {
		wg.Go(func() {
			for range rounds {
				c, err := tls.Dial("tcp", ln.Addr().String(), cli)
				if err != nil {
					t.Errorf("Dial = %v", err)
					return
				}
				var buf [1]byte
				if _, err := c.Read(buf[:]); err != nil {
					t.Errorf("Read = %v", err)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	ln.Close()
	serving.Wait()
}
