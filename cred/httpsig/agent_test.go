package httpsig

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/testenv"
)

// startAgent runs a real ssh-agent for the test and returns its socket.
func startAgent(t *testing.T) string {
	t.Helper()
	testenv.RequireBinaries(t, "ssh-agent", "ssh-add", "ssh-keygen")
	// Not t.TempDir: a unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "plab-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")

	var stderr bytes.Buffer
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ssh-agent: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case <-tick.C:
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("ssh-agent exited before listening: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("ssh-agent did not listen on %s within 10s", sock)
		}
	}
}

// sshAdd loads a key file into the agent with the real ssh-add.
func sshAdd(t *testing.T, sock, keyFile string) {
	t.Helper()
	cmd := exec.Command("ssh-add", keyFile)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add %s: %v\n%s", keyFile, err, out)
	}
}

// TestAgent signs with keys held by a real ssh-agent, verifies the
// requests, and refuses their replay.
func TestAgent(t *testing.T) {
	sock := startAgent(t)
	files := map[string]string{
		"ed25519":  sshKeygen(t, "-t", "ed25519"),
		"rsa 3072": sshKeygen(t, "-t", "rsa", "-b", "3072"),
	}
	for _, f := range files {
		sshAdd(t, sock, f)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	a := agent.NewClient(conn)

	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			fileID := loadIdentity(t, f)
			id, err := cred.AgentIdentity(a, fileID.Fingerprint())
			if err != nil {
				t.Fatalf("AgentIdentity(%s) = %v", fileID.Fingerprint(), err)
			}
			v := newVerifier(fileID.PublicKey())
			for _, req := range []*http.Request{
				postRequest(t),
				newRequest(t, http.MethodGet, "https://plc.example/api/slices?mine=1", "", ""),
			} {
				req = mustSign(t, req, id)
				replay := cloneRequest(t, req)
				res, err := v.Verify(req)
				if err != nil {
					t.Fatalf("Verify(%s %s) = %v", req.Method, req.URL, err)
				}
				if res.Fingerprint != fileID.Fingerprint() {
					t.Errorf("Verify fingerprint = %s, want %s", res.Fingerprint, fileID.Fingerprint())
				}
				if _, err := v.Verify(replay); !errors.Is(err, errdefs.ErrConflict) {
					t.Errorf("Verify(replay of %s %s) = %v, want %v", req.Method, req.URL, err, errdefs.ErrConflict)
				}
			}
		})
	}
}
