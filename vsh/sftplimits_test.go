package vsh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSFTPLimits: the helper announces limits@openssh.com, the OpenSSH
// client takes its 255 KiB reads and writes, and a 3 MB file still makes
// the round trip intact with them.
func TestSFTPLimits(t *testing.T) {
	r := newRemote(t)
	sum := randomFile(t, filepath.Join(r.local, "f.bin"), 3_000_000, 0o644)
	out := r.ok(t, "sftp", "-vvv", "-oLogLevel=DEBUG3", "-b", writeBatch(t, "put f.bin up.bin\nget up.bin back.bin\n"), "h")
	for _, want := range []string{`Server supports extension "limits@openssh.com"`, "Received limits reply", "using 261120 / 261120"} {
		if !strings.Contains(out, want) {
			t.Errorf("sftp -vvv output lacks %q", want)
		}
	}
	if got := fileSum(t, filepath.Join(r.home, "up.bin")); got != sum {
		t.Errorf("put with large writes: SHA-256 = %x, want %x", got, sum)
	}
	if got := fileSum(t, filepath.Join(r.local, "back.bin")); got != sum {
		t.Errorf("get with large reads: SHA-256 = %x, want %x", got, sum)
	}
}

// TestLimitsReply: the shim's reply is an extended reply with the request's
// id and four limits.
func TestLimitsReply(t *testing.T) {
	req := appendSSHString([]byte{fxpExtended, 0, 0, 0, 7}, "limits@openssh.com")
	id, ok := limitsRequest(req)
	if !ok || id != 7 {
		t.Fatalf("limitsRequest = %d, %v; want 7, true", id, ok)
	}
	if _, ok := limitsRequest(appendSSHString([]byte{fxpExtended, 0, 0, 0, 7}, "statvfs@openssh.com")); ok {
		t.Error("another extension taken for limits")
	}
	p := limitsReply(7)
	if len(p) != 4+1+4+32 || p[4] != fxpExtendedReply || p[8] != 7 {
		t.Errorf("limitsReply(7) = %x", p)
	}
}

func writeBatch(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
