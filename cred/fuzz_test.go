package cred

import (
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseUserKey feeds ParseUserKey what users paste into PLC: any text.
// What it accepts must be a key plab can verify with, whose fingerprint
// parses.
func FuzzParseUserKey(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMb4JmDDiHYjZsSmTlpxhXD16rPtfzHmXc05+tKK8nUX user@host")
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 user@host")
	f.Add(`command="x" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMb4JmDDiHYjZsSmTlpxhXD16rPtfzHmXc05+tKK8nUX`)
	f.Fuzz(func(t *testing.T, text string) {
		pub, err := ParseUserKey(text)
		if err != nil {
			return
		}
		if _, err := UserAlg(pub); err != nil {
			t.Fatalf("accepted a key it cannot verify with: %v", err)
		}
		if _, err := ParseFingerprint(string(FingerprintSSH(pub))); err != nil {
			t.Fatalf("fingerprint of an accepted key does not parse: %v", err)
		}
		again, err := ParseUserKey(string(ssh.MarshalAuthorizedKey(pub)))
		if err != nil || FingerprintSSH(again) != FingerprintSSH(pub) {
			t.Fatalf("accepted key does not survive a round trip: %v", err)
		}
	})
}

// FuzzParseFingerprint: an accepted fingerprint is exactly SHA256: and 43
// characters.
func FuzzParseFingerprint(f *testing.F) {
	f.Add("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
	f.Add("SHA256:")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err == nil && (len(fp) != 50 || string(fp) != s) {
			t.Fatalf("ParseFingerprint(%q) = %q", s, fp)
		}
	})
}
