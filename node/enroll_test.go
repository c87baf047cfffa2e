package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/plc/plctest"
)

// TestEnroll: a node enrolls with a token against a pinned CA; a wrong pin,
// a wrong or spent token, and a second enrollment are refused and leave
// nothing behind.
func TestEnroll(t *testing.T) {
	p := plctest.Start(t)
	p.Site("ucb")
	tok := p.Node("n1.ucb.test", "ucb")
	cfg := Config{Hostname: "n1.ucb.test", PLC: p.URL}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		token string
		pin   string
		want  error
	}{
		{"another CA", tok, "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", errdefs.ErrDenied},
		{"no pin", tok, "", errdefs.ErrInvalid},
		{"wrong token", "not-the-token", string(p.CAFingerprint), errdefs.ErrDenied},
		{"no token", "", string(p.CAFingerprint), errdefs.ErrInvalid},
	} {
		dir := t.TempDir()
		err := Enroll(ctx, EnrollOptions{Dir: dir, Config: cfg, Token: tc.token, CAFingerprint: credFP(tc.pin)})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Enroll = %v, want %v", tc.name, err, tc.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: the refused enrollment left %d files", tc.name, len(ents))
		}
	}
	dir := t.TempDir()
	if err := Enroll(ctx, EnrollOptions{Dir: dir, Config: cfg, Token: tok, CAFingerprint: p.CAFingerprint}); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	for _, f := range []string{configFile, keyFile, certFile, caFile, trustFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after enrollment: %v", err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, keyFile)); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node key mode = %v, want 0600", fi)
	}
	if _, err := loadIdentity(dir); err != nil {
		t.Errorf("loadIdentity: %v", err)
	}
	err := Enroll(ctx, EnrollOptions{Dir: dir, Config: cfg, Token: tok, CAFingerprint: p.CAFingerprint})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "state-dir") {
		t.Errorf("second Enroll in the same dir = %v; want a conflict saying what to do", err)
	}
	other := t.TempDir()
	if err := Enroll(ctx, EnrollOptions{Dir: other, Config: cfg, Token: tok, CAFingerprint: p.CAFingerprint}); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("Enroll with a spent token = %v, want denied", err)
	}
}

func credFP(s string) cred.Fingerprint { return cred.Fingerprint(s) }
