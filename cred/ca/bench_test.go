package ca

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkHandshake measures one mutual TLS 1.3 connection over loopback:
// dial, full handshake with both certificates verified against the Trust,
// and one byte back from the server once it has accepted the client.
func BenchmarkHandshake(b *testing.B) {
	bd := newBed(b)
	srv, cli := plcServesNodes(bd, bd.plc, bd.n1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
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
	defer func() {
		ln.Close()
		serving.Wait()
	}()

	addr := ln.Addr().String()
	for b.Loop() {
		c, err := tls.Dial("tcp", addr, cli)
		if err != nil {
			b.Fatal(err)
		}
		var buf [1]byte
		if _, err := c.Read(buf[:]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkIssueNode measures PLC's side of enrolling a node: checking the
// CSR and signing its certificate.
func BenchmarkIssueNode(b *testing.B) {
	c := newCA(b, "plab bench CA")
	csr, err := NewCSR(newKey(b), "n1.test")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.IssueNode(csr, "n1.test", nodeValid, t0); err != nil {
			b.Fatal(err)
		}
	}
}
