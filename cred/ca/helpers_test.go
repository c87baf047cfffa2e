package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plab/plab/cred"
)

// t0 is "now" in the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	plcName   = "plc.test"
	nodeValid = 24 * time.Hour
	plcValid  = 365 * 24 * time.Hour
	caValid   = 10 * 365 * 24 * time.Hour
)

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := new(clock)
	c.Set(t)
	return c
}

func (c *clock) Now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

func newKey(t testing.TB) *cred.PrivateKey {
	t.Helper()
	k, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, name string) *CA {
	t.Helper()
	c, err := New(name, newKey(t), caValid, t0)
	if err != nil {
		t.Fatalf("New(%q) = %v", name, err)
	}
	return c
}

// leaf is an issued certificate with its key.
type leaf struct {
	cert *x509.Certificate
	key  *cred.PrivateKey
	kp   *Keypair
}

func newLeaf(t testing.TB, cert *x509.Certificate, key *cred.PrivateKey) *leaf {
	t.Helper()
	kp := new(Keypair)
	if err := kp.Set(cert, key); err != nil {
		t.Fatalf("Keypair.Set = %v", err)
	}
	return &leaf{cert: cert, key: key, kp: kp}
}

// issueNode enrolls a node the way the real one does: NewCSR, IssueNode.
func issueNode(t testing.TB, c *CA, hostname string) *leaf {
	t.Helper()
	key := newKey(t)
	csr, err := NewCSR(key, hostname)
	if err != nil {
		t.Fatalf("NewCSR(%q) = %v", hostname, err)
	}
	cert, err := c.IssueNode(csr, hostname, nodeValid, t0)
	if err != nil {
		t.Fatalf("IssueNode(%q) = %v", hostname, err)
	}
	return newLeaf(t, cert, key)
}

func issuePLC(t testing.TB, c *CA, name string) *leaf {
	t.Helper()
	key := newKey(t)
	cert, err := c.IssuePLC(key.Public(), name, []string{"plc.example.org", "127.0.0.1"}, plcValid, t0)
	if err != nil {
		t.Fatalf("IssuePLC(%q) = %v", name, err)
	}
	return newLeaf(t, cert, key)
}

// bed is a small testbed: a CA, a successor CA for rotation, a stranger's
// CA, PLC and nodes under each, and a Trust with a settable clock.
type bed struct {
	clock        *clock
	trust        *Trust
	ca, ca2      *CA
	other        *CA
	plc, plc2    *leaf // plc2 is PLC's certificate under ca2
	n1, n2       *leaf // n1 under ca, n2 under ca2
	stranger     *leaf // a node certificate from another CA
	strangerPLC  *leaf // a PLC certificate from another CA
	plcOtherName *leaf // a PLC certificate under ca with another name
}

func newBed(t testing.TB) *bed {
	t.Helper()
	b := &bed{clock: newClock(t0)}
	b.ca = newCA(t, "plab test CA")
	b.ca2 = newCA(t, "plab test CA") // same name: a rotated root
	b.other = newCA(t, "someone else's CA")
	b.plc = issuePLC(t, b.ca, plcName)
	b.plc2 = issuePLC(t, b.ca2, plcName)
	b.n1 = issueNode(t, b.ca, "n1.test")
	b.n2 = issueNode(t, b.ca2, "n2.test")
	b.stranger = issueNode(t, b.other, "n1.test")
	b.strangerPLC = issuePLC(t, b.other, plcName)
	b.plcOtherName = issuePLC(t, b.ca, "plc-b.test")
	var err error
	b.trust, err = NewTrust(b.clock.Now, b.ca.Certificate())
	if err != nil {
		t.Fatalf("NewTrust = %v", err)
	}
	return b
}

// result is what each side of a handshake saw.
type result struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs one TLS connection over loopback between srv and cli. The
// server writes one byte after its handshake and the client reads it: in
// TLS 1.3 the client finishes its handshake before the server has checked
// the client's certificate, so a refusal reaches the client on that read.
// Each side half-closes and drains before closing, so the alert is never
// lost to a reset.
func handshake(t testing.TB, srv, cli *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type serverSide struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverSide, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- serverSide{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
		done <- serverSide{err: err, state: tc.ConnectionState()}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, cli)
	var r result
	r.clientErr = tc.Handshake()
	if r.clientErr == nil {
		var b [1]byte
		_, r.clientErr = io.ReadFull(tc, b[:])
	}
	r.client = tc.ConnectionState()
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	s := <-done
	r.serverErr, r.server = s.err, s.state
	return r
}

// want describes an expected error: none when both fields are zero.
type want struct {
	kind error  // an errdefs sentinel the error wraps, or nil
	text string // a phrase the message must contain
}

func (w want) String() string {
	if w.kind == nil && w.text == "" {
		return "<nil>"
	}
	return "error wrapping " + errString(w.kind) + " saying " + w.text
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// check reports whether err matches w.
func (w want) check(err error) bool {
	if w.kind == nil && w.text == "" {
		return err == nil
	}
	if err == nil {
		return false
	}
	if w.kind != nil && !errors.Is(err, w.kind) {
		return false
	}
	return strings.Contains(err.Error(), w.text)
}
