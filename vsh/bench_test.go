//go:build linux

package vsh

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver/oci"
)

// Benchmarks of the gateway against a busybox sliver, on loopback (make
// bench runs them):
//
//	hack/sshd-deps && go test -run '^$' -bench 'SessionSetup|SCPThroughput' -benchtime 30x ./vsh
//	PLAB_BENCH_CIPHER=chacha20-poly1305@openssh.com go test -run '^$' -bench SCPThroughput -benchtime 10x ./vsh

// BenchmarkSessionSetup measures a command's setup: from connecting to the
// first byte of `echo x`'s output (TCP, handshake, public-key login,
// session, exec), with x/crypto/ssh in this process (p50-ms, p99-ms) and
// with the OpenSSH client, whose process start counts too
// (openssh-p50-ms, openssh-p99-ms). The goal is a p50 of 30 ms or less.
func BenchmarkSessionSetup(b *testing.B) {
	g := newGatewayWith(b, gatewayOpts{slivers: []string{"site_a"}})
	key, pub := keyFile(b)
	g.setKeys("site_a", pub)
	priv, err := os.ReadFile(key)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &ssh.ClientConfig{User: "site_a", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	host, _, _ := net.SplitHostPort(g.addr)
	args := append(g.sshOpts(key, "-p"), "site_a@"+host, "echo x")
	var inproc, openssh []time.Duration
	first := make([]byte, 1)
	for b.Loop() {
		start := time.Now()
		c, err := ssh.Dial("tcp", g.addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := s.StdoutPipe()
		if err := s.Start("echo x"); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(out, first); err != nil {
			b.Fatalf("echo x: no output: %v", err)
		}
		inproc = append(inproc, time.Since(start))
		if err := s.Wait(); err != nil {
			b.Fatalf("echo x: %v", err)
		}
		c.Close()

		cmd := exec.Command("ssh", args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, _ = cmd.StdoutPipe()
		start = time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(out, first); err != nil {
			b.Fatalf("ssh echo x: no output: %v: %s", err, errb.Bytes())
		}
		openssh = append(openssh, time.Since(start))
		if err := cmd.Wait(); err != nil {
			b.Fatalf("ssh echo x: %v: %s", err, errb.Bytes())
		}
	}
	b.ReportMetric(ms(percentile(inproc, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(inproc, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(openssh, 50)), "openssh-p50-ms")
	b.ReportMetric(ms(percentile(openssh, 99)), "openssh-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// scpSize is the file BenchmarkSCPThroughput downloads: 100 MB.
const scpSize = 100e6

// BenchmarkSCPThroughput downloads a 100 MB file with scp (its default
// SFTP protocol) from a sliver through the gateway, whose helper serves it,
// and the same-size file from OpenSSH's sshd (internal-sftp) on this
// machine, one after the other in each round, and reports each one's
// throughput at the median round's time, the whole scp run included
// (gateway-MB/s, openssh-MB/s), and their ratio (the goal: 0.8 or more).
// Both use one cipher, PLAB_BENCH_CIPHER (default aes128-gcm@openssh.com,
// which both run in assembly); the log shows the one each negotiated.
// sshd comes from hack/sshd-deps and runs as a throwaway user.
func BenchmarkSCPThroughput(b *testing.B) {
	testenv.RequireBinaries(b, "scp", "go", "useradd", "userdel")
	cipher := os.Getenv("PLAB_BENCH_CIPHER")
	if cipher == "" {
		cipher = "aes128-gcm@openssh.com"
	}
	key, pub := keyFile(b)
	d := startSSHD(b, pub)
	helper := helperBinary(b)
	g := newGatewayWith(b, gatewayOpts{
		slivers: []string{"site_a"},
		config:  func(c *Config, _ *oci.Backend) { c.Helper, c.HelperArgs = helper, []string{"plab", "vsh-helper"} },
	})
	g.setKeys("site_a", pub)
	host, _, _ := net.SplitHostPort(g.addr)
	if _, errOut, code := g.ssh(b, key, "site_a", fmt.Sprintf("head -c %d /dev/urandom >/root/big", int(scpSize))); code != 0 {
		b.Fatalf("write the file in the sliver: %s", errOut)
	}
	dst := filepath.Join(b.TempDir(), "big")
	type server struct {
		name string
		args []string
		took []time.Duration
	}
	servers := []*server{
		{name: "gateway", args: append(g.sshOpts(key, "-P"), "site_a@"+host+":/root/big")},
		// The gateway's options, against sshd.
		{name: "openssh", args: append((&gateway{addr: d.addr}).sshOpts(key, "-P"), d.user+"@127.0.0.1:"+d.file)},
	}
	for b.Loop() {
		for _, s := range servers {
			// -v before the options, so that it wins over their LogLevel.
			start := time.Now()
			_, errOut, code := g.run(b, "scp", append(append([]string{"-v", "-o", "Ciphers=" + cipher}, s.args...), dst)...)
			took := time.Since(start)
			if code != 0 {
				b.Fatalf("scp from %s: exit %d: %s", s.name, code, errOut)
			}
			if fi, err := os.Stat(dst); err != nil || fi.Size() != scpSize {
				b.Fatalf("scp from %s: %v; want a file of %d bytes", s.name, err, int(scpSize))
			}
			if len(s.took) == 0 {
				b.Logf("scp from %s: cipher %s", s.name, negotiated(errOut))
			}
			s.took = append(s.took, took)
		}
	}
	rate := func(s *server) float64 { return scpSize / 1e6 / percentile(s.took, 50).Seconds() }
	b.ReportMetric(rate(servers[0]), "gateway-MB/s")
	b.ReportMetric(rate(servers[1]), "openssh-MB/s")
	b.ReportMetric(rate(servers[0])/rate(servers[1]), "ratio")
	b.ReportMetric(0, "ns/op")
}

// negotiated is the server-to-client cipher in an OpenSSH client's -v log.
func negotiated(log string) string {
	for l := range strings.Lines(log) {
		if _, c, ok := strings.Cut(l, "kex: server->client cipher: "); ok {
			return strings.Fields(c)[0]
		}
	}
	return "unknown (no kex line in ssh -v's log)"
}

// sshd is OpenSSH's sshd on loopback, run as a throwaway user who may log
// in with one key and download file.
type sshd struct {
	addr string
	user string
	file string
}

// startSSHD starts sshd from hack/sshd-deps, unprivileged: as a user made
// for it (so that it needs no privilege-separation user and logs in only
// that user), removed again at the end. file holds scpSize random bytes.
func startSSHD(b *testing.B, authorizedKey string) *sshd {
	b.Helper()
	testenv.RequireRoot(b)
	root, err := filepath.Abs("../bin/deps/sshd/root")
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(root, "usr/sbin/sshd")
	libwrap, _ := filepath.Glob(filepath.Join(root, "usr/lib/*/libwrap.so.0"))
	if _, err := os.Stat(bin); err != nil || len(libwrap) == 0 {
		b.Fatalf("no sshd in %s: run hack/sshd-deps (make bench does; it unpacks openssh-server and libwrap0 there, installing nothing)", root)
	}
	dir, err := os.MkdirTemp("", "plab-sshd-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	d := &sshd{user: fmt.Sprintf("plabsshd%d", os.Getpid()), file: filepath.Join(dir, "big")}
	if out, err := exec.Command("useradd", "-M", "-d", dir, "-s", "/bin/sh", "-p", "*", d.user).CombinedOutput(); err != nil {
		b.Fatalf("useradd %s: %v: %s", d.user, err, out)
	}
	b.Cleanup(func() {
		if out, err := exec.Command("userdel", d.user).CombinedOutput(); err != nil {
			b.Errorf("userdel %s: %v: %s", d.user, err, out)
		}
	})
	u, err := user.Lookup(d.user)
	if err != nil {
		b.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	// The user's files: sshd and libwrap (copied, so that the user can run
	// them wherever the repository is), a host key, the client's key and
	// the file to download.
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(hostKey, "")
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, int(scpSize))
	rand.Read(data)
	port := freePort(b)
	files := map[string][]byte{
		"host_key":        pem.EncodeToMemory(block),
		"authorized_keys": []byte(authorizedKey + "\n"),
		"big":             data,
		"sshd_config": fmt.Appendf(nil, `ListenAddress 127.0.0.1
Port %s
HostKey %[2]s/host_key
AuthorizedKeysFile %[2]s/authorized_keys
PidFile %[2]s/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
`, port, dir),
	}
	for src, name := range map[string]string{bin: "sshd", libwrap[0]: "lib/libwrap.so.0"} {
		if files[name], err = os.ReadFile(src); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "lib"), 0o755); err != nil {
		b.Fatal(err)
	}
	for name, data := range files {
		mode := os.FileMode(0o600)
		if name == "sshd" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			b.Fatal(err)
		}
	}
	if err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	}); err != nil {
		b.Fatal(err)
	}

	cmd := exec.Command(filepath.Join(dir, "sshd"), "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Env = []string{"LD_LIBRARY_PATH=" + filepath.Join(dir, "lib"), "PATH=/usr/bin:/bin"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// sshd's log, kept for failures; listening says it accepts.
	var mu sync.Mutex
	var log strings.Builder
	listening, exited := make(chan struct{}), make(chan struct{})
	go func() {
		ready := sync.OnceFunc(func() { close(listening) })
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.HasPrefix(sc.Text(), "Server listening on") {
				ready()
			}
		}
		cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if b.Failed() {
			mu.Lock()
			b.Logf("sshd's log:\n%s", log.String())
			mu.Unlock()
		}
	})
	select {
	case <-listening:
	case <-exited:
		b.Fatal("sshd exited before it listened")
	case <-time.After(10 * time.Second):
		b.Fatal("sshd did not listen within 10 s")
	}
	d.addr = net.JoinHostPort("127.0.0.1", port)
	return d
}

// percentile is the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
