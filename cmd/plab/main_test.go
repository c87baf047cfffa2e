package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver/oci"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"plab": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

var scriptSeq atomic.Uint32

// TestScripts runs the CLI scripts in testdata/script. Scripts whose names
// start with "root_" drive real slivers; each script gets its own node
// (state, run dir, cgroup parent, ID range), removed and checked gone when
// it ends.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"mkdocs": mkdocs,
			"world": worldCmd, "node-stop": nodeCmd(true), "node-start": nodeCmd(false)},
		Setup: func(env *testscript.Env) error {
			if strings.HasPrefix(filepath.Base(env.WorkDir), "script-root_") {
				testenv.RequireRoot(env.T().(testing.TB))
				testenv.RequireBinaries(env.T().(testing.TB), "runc", "mkfs.btrfs", "busybox")
			}
			for d := env.WorkDir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
				_ = os.Chmod(d, 0o711)
			}
			scriptTs.Store(env.WorkDir, env.T())
			n := scriptSeq.Add(1)
			cfg := oci.Config{
				StateDir:     filepath.Join(env.WorkDir, ".node/state"),
				RunDir:       filepath.Join(env.WorkDir, ".node/run"),
				CgroupParent: fmt.Sprintf("plabcli-%d-%d", os.Getpid(), n),
				UIDBase:      0x50000000 + (uint32(os.Getpid())%64)*0x400000 + n*0x100000,
			}
			env.Setenv("PLAB_STATE_DIR", cfg.StateDir)
			env.Setenv("PLAB_RUN_DIR", cfg.RunDir)
			env.Setenv("PLAB_CGROUP_PARENT", cfg.CgroupParent)
			env.Setenv("PLAB_UID_BASE", fmt.Sprint(cfg.UIDBase))
			env.Defer(func() {
				if os.Geteuid() == 0 {
					if err := oci.Cleanup(context.Background(), cfg); err != nil {
						env.T().Fatal("cleanup:", err)
					}
					if left := leftovers(cfg); left != "" {
						env.T().Fatal("the script left behind: " + left)
					}
				}
			})
			return nil
		},
	})
}

// leftovers names cgroups and mounts of cfg that survived cleanup.
func leftovers(cfg oci.Config) string {
	var left []string
	for _, m := range []string{"cpu", "memory", "pids", "unified", ""} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", m, cfg.CgroupParent)); err == nil {
			left = append(left, "cgroup "+filepath.Join(m, cfg.CgroupParent))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], cfg.StateDir) {
			left = append(left, "mount "+f[4])
		}
	}
	return strings.Join(left, ", ")
}

// TestNotRoot runs the real binary as an unprivileged user: sliver commands
// must say they need root.
func TestNotRoot(t *testing.T) {
	testenv.RequireRoot(t) // to switch to another user
	bin := testenv.StaticPlab(t)
	dir := t.TempDir()
	for _, leaf := range []string{filepath.Dir(bin), dir} { // nobody must reach both
		for d := leaf; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
			_ = os.Chmod(d, 0o755)
		}
	}
	cmd := exec.Command(bin, "sliver", "list", "--state-dir", filepath.Join(dir, "state"), "--run-dir", filepath.Join(dir, "run"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "needs root") || !strings.Contains(string(out), "sudo") {
		t.Errorf("plab sliver list as nobody = %v\n%s\nwant exit 1 saying it needs root and to use sudo", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("the refused command created the state directory")
	}
}

// mkdocs writes, in the script's work directory, signed documents for the
// ticket scripts: trust (PLC and node1), ticket.jwt (valid now, for
// node1.test), lease.jwt, expired.jwt, forged.jwt (signed by an unknown
// key), user.fp (the tickets' principal).
func mkdocs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: mkdocs")
	}
	key := func() *cred.PrivateKey {
		k, err := cred.GenerateKey()
		ts.Check(err)
		return k
	}
	plc, node, stranger, user := key(), key(), key(), key()
	now := time.Now()
	tk := ticket.Ticket{
		Principal: user.Fingerprint(), Node: "node1.test", Slice: "princeton_codeen",
		Resources: ticket.Resources{CPUShares: 2, MemoryBytes: 512 << 20, Ports: []string{"tcp/8080"}},
		IssuedAt:  now.Unix(), NotBefore: now.Unix(), NotAfter: now.Add(time.Hour).Unix(),
	}
	write := func(name, data string) { ts.Check(os.WriteFile(ts.MkAbs(name), []byte(data+"\n"), 0o644)) }
	sign := func(t ticket.Ticket, k *cred.PrivateKey) string {
		doc, err := ticket.Sign(t, "plc.test", k)
		ts.Check(err)
		return doc
	}
	doc := sign(tk, plc)
	write("ticket.jwt", doc)
	write("forged.jwt", sign(tk, stranger))
	old := tk
	old.NotBefore, old.NotAfter = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	write("expired.jwt", sign(old, plc))
	verified, err := ticket.Verify(doc, mustTrust(ts, plc, node), ticket.Checks{Now: now})
	ts.Check(err)
	lease, _, err := ticket.NewLease(verified, "princeton_codeen", "node1.test", now, now.Add(time.Hour), node)
	ts.Check(err)
	write("lease.jwt", lease)
	write("trust", ticket.TrustLine(ticket.Issuer{Role: ticket.RolePLC, Name: "plc.test", Key: plc.Public()})+"\n"+
		ticket.TrustLine(ticket.Issuer{Role: ticket.RoleNode, Name: "node1.test", Key: node.Public()}))
	write("user.fp", string(user.Fingerprint()))
	ts.Setenv("USERFP", string(user.Fingerprint()))
}

func mustTrust(ts *testscript.TestScript, plc, node *cred.PrivateKey) *ticket.Trust {
	t, err := ticket.NewTrust(ticket.Issuer{Role: ticket.RolePLC, Name: "plc.test", Key: plc.Public()},
		ticket.Issuer{Role: ticket.RoleNode, Name: "node1.test", Key: node.Public()})
	ts.Check(err)
	return t
}
