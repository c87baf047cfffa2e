package ca

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/errdefs"
)

// A root re-made with the old root's key (New(name, sameKey, ...) as it
// nears expiry) would keep every leaf of the old root valid after the old
// root is removed, since they chain to it: AddRoot refuses it.
func TestRotationNeedsANewKey(t *testing.T) {
	oldCA := newCA(t, "testbed")
	node := issueNode(t, oldCA, "node1.test")
	newCA, err := New("testbed", oldCA.key, caValid, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Hour)
	tr, err := NewTrust(func() time.Time { return now }, oldCA.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.AddRoot(newCA.Certificate()); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "new key") {
		t.Fatalf("AddRoot(same key, new certificate) = %v, want ErrConflict asking for a new key", err)
	}
	if _, err := tr.Verify(node.cert); err != nil {
		t.Errorf("the old root's leaf is refused while the old root is trusted: %v", err)
	}
}

// ParseCertificate takes one PEM block, nothing before it, no headers.
func TestParseCertificateStrictPEM(t *testing.T) {
	c := newCA(t, "testbed")
	data := "junk that is not PEM\n" + string(MarshalCertificate(c.Certificate()))
	if _, err := ParseCertificate([]byte(data)); err == nil {
		t.Errorf("ParseCertificate accepted data before the PEM block")
	}
	hdr := strings.Replace(string(MarshalCertificate(c.Certificate())), "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)
	if _, err := ParseCertificate([]byte(hdr)); err == nil {
		t.Errorf("ParseCertificate accepted PEM headers")
	}
}
