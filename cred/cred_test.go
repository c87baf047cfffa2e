package cred

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
)

func TestFingerprintMatchesSSHKeygen(t *testing.T) {
	testenv.RequireBinaries(t, "ssh-keygen")
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "k.pub")
	if err := os.WriteFile(pub, []byte(k.Public().AuthorizedKey()+" test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", pub).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v: %s", err, out)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 || fields[1] != string(k.Fingerprint()) {
		t.Errorf("ssh-keygen -l = %q, want fingerprint %s", out, k.Fingerprint())
	}
	if _, err := ParseFingerprint(fields[1]); err != nil {
		t.Errorf("ParseFingerprint(%q) = %v", fields[1], err)
	}
	back, err := ParsePublicKey(k.Public().AuthorizedKey() + " comment")
	if err != nil || !back.Equal(k.Public()) {
		t.Errorf("ParsePublicKey(AuthorizedKey()) = %v, %v; want the key back", back, err)
	}
}

func TestParseFingerprint(t *testing.T) {
	good := "SHA256:" + base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{"", false},
		{"MD5:" + good[7:], false},
		{good + "=", false},
		{good[:len(good)-1], false},
		{"SHA256:" + base64.RawStdEncoding.EncodeToString(make([]byte, 31)), false},
		{"sha256:" + good[7:], false},
	} {
		_, err := ParseFingerprint(tc.in)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
			t.Errorf("ParseFingerprint(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sub", "node.key")
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode(), err)
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode = %v, want 0700", st.Mode())
	}
	back, err := ReadKeyFile(path)
	if err != nil || back.Fingerprint() != k.Fingerprint() {
		t.Fatalf("ReadKeyFile = %v, %v; want the key written", back, err)
	}
	if err := WriteKeyFile(path, k); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("WriteKeyFile over an existing key = %v, want ErrConflict", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key (no temporary files)", len(entries))
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyFile(path)
		if !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("ReadKeyFile(mode %04o) = %v, want ErrDenied saying chmod 600", mode, err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	bad := map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("hello"),
		"trailing": append(MarshalPrivateKey(k), []byte("more")...),
		"twice":    append(MarshalPrivateKey(k), MarshalPrivateKey(k)...),
		"wrongpem": bytes.Replace(MarshalPrivateKey(k), []byte("PRIVATE KEY"), []byte("PUBLIC KEY"), 2),
	}
	for name, data := range bad {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKeyFile(p); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ReadKeyFile(%s) = %v, want ErrInvalid", name, err)
		}
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(fifo); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ReadKeyFile(a FIFO) = %v, want ErrInvalid (and no hang)", err)
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ReadKeyFile(missing) = %v, want ErrNotFound", err)
	}
}

// TestNoSecretsPrinted formats and logs a private key every way Go can, and
// provokes every key-file error, and looks for the key in the output.
func TestNoSecretsPrinted(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("key", "k", k, "any", any(k), "value", *k)
	log.Info("text", "s", fmt.Sprintf("%v %+v %#v %s %x %q %v %#v", k, k, k, k, k, k, *k, *k))
	out := logs.String()
	errs := []error{fmt.Errorf("wrapped %v", k)}

	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(path, 0o644)
	_, err = ReadKeyFile(path)
	errs = append(errs, err)
	pemText := MarshalPrivateKey(k)
	for _, data := range [][]byte{
		append(pemText, 'x'),
		bytes.Replace(pemText, []byte("PRIVATE KEY"), []byte("RSA PRIVATE KEY"), 2),
		pemText[:len(pemText)/2],
	} {
		p := filepath.Join(dir, fmt.Sprint(len(errs)))
		_ = os.WriteFile(p, data, 0o600)
		_, err := ReadKeyFile(p)
		errs = append(errs, err)
		if _, err := LoadIdentityFile(p, nil); err != nil {
			errs = append(errs, err)
		}
	}
	for _, e := range errs {
		if e == nil {
			t.Fatal("an error path returned nil")
		}
		out += "\n" + e.Error()
	}
	secrets := secretForms(k)
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("output holds key material %q:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "[redacted]") {
		t.Errorf("logged key did not print as [redacted]:\n%s", out)
	}
}

// secretForms lists the ways a key could leak: PEM body lines, the seed in
// base64 and hex.
func secretForms(k *PrivateKey) []string {
	var forms []string
	for _, line := range strings.Split(string(MarshalPrivateKey(k)), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") {
			forms = append(forms, line[:16])
		}
	}
	seed := k.k.Seed()
	forms = append(forms,
		base64.StdEncoding.EncodeToString(seed)[:16],
		base64.RawURLEncoding.EncodeToString(seed)[:16],
		fmt.Sprintf("%x", seed[:8]),
		fmt.Sprint(seed[:8]))
	return forms
}

func TestUserKeys(t *testing.T) {
	testenv.RequireBinaries(t, "ssh-keygen")
	dir := t.TempDir()
	gen := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		cmd := exec.Command("ssh-keygen", append([]string{"-q", "-f", p, "-C", name}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
		}
		return p
	}
	ed := gen("ed", "-t", "ed25519", "-N", "")
	rsa3072 := gen("rsa", "-t", "rsa", "-b", "3072", "-N", "")
	rsa1024 := gen("rsa1024", "-t", "rsa", "-b", "1024", "-N", "")
	ecdsa := gen("ecdsa", "-t", "ecdsa", "-N", "")
	enc := gen("enc", "-t", "ed25519", "-N", "sesame")
	pem := gen("pem", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "")

	for _, p := range []string{ed, rsa3072, pem} {
		id, err := LoadIdentityFile(p, nil)
		if err != nil {
			t.Errorf("LoadIdentityFile(%s) = %v", filepath.Base(p), err)
			continue
		}
		pubText, _ := os.ReadFile(p + ".pub")
		pub, err := ParseUserKey(string(pubText))
		if err != nil {
			t.Fatalf("ParseUserKey(%s.pub) = %v", filepath.Base(p), err)
		}
		if FingerprintSSH(pub) != id.Fingerprint() {
			t.Errorf("%s: identity %s, .pub %s", filepath.Base(p), id.Fingerprint(), FingerprintSSH(pub))
		}
		msg := []byte("GET /v1/slices")
		sig, err := id.SignData(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyUserSignature(pub, id.Alg(), msg, sig); err != nil {
			t.Errorf("%s: VerifyUserSignature = %v", filepath.Base(p), err)
		}
		if err := VerifyUserSignature(pub, id.Alg(), []byte("GET /v1/nodes"), sig); !errors.Is(err, errdefs.ErrDenied) {
			t.Errorf("%s: signature over other data = %v, want ErrDenied", filepath.Base(p), err)
		}
		other := AlgEd25519
		if id.Alg() == AlgEd25519 {
			other = AlgRSAPKCS1SHA256
		}
		if err := VerifyUserSignature(pub, other, msg, sig); !errors.Is(err, errdefs.ErrDenied) {
			t.Errorf("%s: signature under alg %s = %v, want ErrDenied", filepath.Base(p), other, err)
		}
	}

	for _, tc := range []struct {
		path, want string
	}{
		{rsa1024, "1024 bits is too weak"},
		{ecdsa, "not accepted"},
	} {
		_, err := LoadIdentityFile(tc.path, nil)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadIdentityFile(%s) = %v, want ErrInvalid saying %q", filepath.Base(tc.path), err, tc.want)
		}
		pubText, _ := os.ReadFile(tc.path + ".pub")
		if _, err := ParseUserKey(string(pubText)); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseUserKey(%s.pub) = %v, want ErrInvalid", filepath.Base(tc.path), err)
		}
	}

	if _, err := LoadIdentityFile(enc, nil); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "ssh-add") {
		t.Errorf("LoadIdentityFile(encrypted, no passphrase) = %v, want advice to use ssh-add", err)
	}
	if _, err := LoadIdentityFile(enc, func() ([]byte, error) { return []byte("wrong"), nil }); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("LoadIdentityFile(encrypted, wrong passphrase) = %v, want ErrDenied", err)
	}
	if _, err := LoadIdentityFile(enc, func() ([]byte, error) { return []byte("sesame"), nil }); err != nil {
		t.Errorf("LoadIdentityFile(encrypted, right passphrase) = %v", err)
	}
	if err := os.Chmod(ed, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentityFile(ed, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("LoadIdentityFile(mode 0644) = %v, want ErrDenied", err)
	}

	edPub, _ := os.ReadFile(ed + ".pub")
	for _, in := range []string{
		"",
		"ssh-ed25519",
		"ssh-ed25519 AAAA",
		`command="ls" ` + string(edPub),
		string(edPub) + string(edPub),
	} {
		if _, err := ParseUserKey(in); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseUserKey(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestMemoryOnce(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	m := NewMemoryOnce(func() time.Time { return now })
	ctx := context.Background()
	if err := m.Use(ctx, "a", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Use(ctx, "a", now.Add(time.Hour)); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second Use(a) = %v, want ErrConflict", err)
	}
	if err := m.Use(ctx, "b", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := m.Use(ctx, "", now.Add(time.Minute)); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Use(\"\") = %v, want ErrInvalid", err)
	}
	now = now.Add(2 * time.Minute)
	if err := m.Use(ctx, "c", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := m.Len(); got != 2 {
		t.Errorf("after b expired, Len() = %d, want 2 (a and c)", got)
	}
	if err := m.Use(ctx, "a", now.Add(time.Hour)); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Use(a) before it expired = %v, want ErrConflict", err)
	}
}
