package cred

import (
	"strings"
	"testing"
)

// ParsePrivateKey takes one PEM block: nothing before it, no headers.
func TestParsePrivateKeyStrictPEM(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(MarshalPrivateKey(k))
	if _, err := ParsePrivateKey([]byte("not a key\n" + pemText)); err == nil {
		t.Errorf("ParsePrivateKey accepted data before the PEM block")
	}
	hdr := strings.Replace(pemText, "-----\n", "-----\nX-Note: hi\n\n", 1)
	if _, err := ParsePrivateKey([]byte(hdr)); err == nil {
		t.Errorf("ParsePrivateKey accepted PEM headers")
	}
}
