//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/node/nodetest"
	"github.com/plab/plab/plc/plctest"
	"github.com/plab/plab/svcmgr"
)

// world is a real PLC with nodes and users, for the CLI's tests: alice is
// a PI of site ucb; nodes alternate between sites ucb and mit.
type world struct {
	plc   *plctest.PLC
	alice *plctest.User
	nodes map[string]*nodetest.Node
	hosts []string
}

func startWorld(t testing.TB, n int) *world {
	t.Helper()
	if n > 0 {
		testenv.RequireRoot(t)
		testenv.RequireBinaries(t, "ssh")
	}
	w := &world{plc: plctest.Start(t), alice: plctest.NewUser(t, "alice@ucb.test"), nodes: map[string]*nodetest.Node{}}
	w.plc.Site("ucb")
	w.plc.Site("mit")
	w.plc.Person(w.alice, "ucb", "user", "pi")
	helper := ""
	if n > 0 {
		helper = testenv.StaticPlab(t)
	}
	for i := 1; i <= n; i++ {
		site := []string{"ucb", "mit"}[(i-1)%2]
		host := fmt.Sprintf("n%d.%s.test", i, site)
		w.nodes[host] = nodetest.Start(t, w.plc, host, site, nodetest.Options{Helper: helper})
		w.hosts = append(w.hosts, host)
	}
	return w
}

// env is the environment the CLI runs with as alice.
func (w *world) env(dir string) map[string]string {
	return map[string]string{"PLC_URL": w.plc.URL, "PLC_CA": string(w.plc.CAFingerprint), "ALICE_KEY": w.alice.KeyFile,
		"ADMIN_KEY": w.plc.Admin.KeyFile, "PLAB_CONFIG": filepath.Join(dir, ".plab")}
}

// worlds holds each script's world, and scriptTs its test, by work
// directory.
var worlds, scriptTs sync.Map

// worldCmd is the scripts' `world N`: a PLC and N nodes, and the
// environment to reach them as alice (PLC_URL, PLC_CA, ALICE_KEY,
// ADMIN_KEY, PLAB_CONFIG).
func worldCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: world N")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("world: %v", err)
	}
	t, ok := scriptTs.Load(ts.Getenv("WORK"))
	if !ok {
		ts.Fatalf("world: no test for this script")
	}
	w := startWorld(t.(testing.TB), n)
	for k, v := range w.env(ts.Getenv("WORK")) {
		ts.Setenv(k, v)
	}
	worlds.Store(ts.Getenv("WORK"), w)
}

// nodeCmd is the scripts' `node-stop HOST` and `node-start HOST`.
func nodeCmd(stop bool) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		v, ok := worlds.Load(ts.Getenv("WORK"))
		if !ok || len(args) != 1 {
			ts.Fatalf("usage (after world N): node-stop HOST | node-start HOST")
		}
		n := v.(*world).nodes[args[0]]
		if n == nil {
			ts.Fatalf("no node %s", args[0])
		}
		if stop {
			n.Stop()
		} else {
			n.Start()
		}
	}
}

// plab runs the CLI in this process and returns its exit status and
// output.
func plab(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(args, bytes.NewReader(nil), &out, &errb)
	t.Logf("plab %q = %d\n%s%s", args, code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// TestSlicePartialFailure: a node down during slice create makes the exit
// status say so (3) and status show it; once the node is back, slice sync
// completes the slice, with one sliver per node and no duplicate.
func TestSlicePartialFailure(t *testing.T) {
	w := startWorld(t, 3)
	env := w.env(t.TempDir())
	if code, _, _ := plab(t, env, "login", "--plc", w.plc.URL, "--key", w.alice.KeyFile, "--ca-fingerprint", string(w.plc.CAFingerprint)); code != 0 {
		t.Fatal("login failed")
	}
	down := w.hosts[2]
	w.nodes[down].Stop()
	code, out, errOut := plab(t, env, "slice", "create", "ucb_part", "--nodes", "3", "--lease", "3h", "-q")
	if code != exitPartial || !bytes.Contains([]byte(out), []byte("up on 2 of 3 nodes")) || !bytes.Contains([]byte(errOut), []byte(down)) {
		t.Fatalf("create with %s down = %d; want %d, 2 of 3 up, naming %s", down, code, exitPartial, down)
	}
	code, out, _ = plab(t, env, "slice", "status", "ucb_part")
	if code != exitPartial || !bytes.Contains([]byte(out), []byte("2 of 3 slivers running")) {
		t.Errorf("status with %s down = %d; want %d and 2 of 3 running", down, code, exitPartial)
	}
	w.nodes[down].Start()
	if code, out, _ = plab(t, env, "slice", "sync", "ucb_part", "-q"); code != 0 || !bytes.Contains([]byte(out), []byte("up on 3 of 3 nodes")) {
		t.Fatalf("sync after %s came back = %d", down, code)
	}
	// A second sync changes nothing: still one sliver per node.
	if code, _, _ = plab(t, env, "slice", "sync", "ucb_part", "-q"); code != 0 {
		t.Errorf("a second sync = %d", code)
	}
	for _, h := range w.hosts {
		if got := w.nodes[h].Slivers(); len(got) != 1 || got[0] != "ucb_part" {
			t.Errorf("node %s holds slivers %q; want exactly ucb_part", h, got)
		}
	}
	if code, out, _ = plab(t, env, "slice", "status", "ucb_part"); code != 0 || !bytes.Contains([]byte(out), []byte("3 of 3 slivers running")) {
		t.Errorf("status after sync = %d", code)
	}
	// Every lease, the synced one too, is the 3 hours asked for.
	_, out, _ = plab(t, env, "slice", "status", "-o", "json", "ucb_part")
	var st svcmgr.SliceStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Nodes) != 3 {
		t.Fatalf("status -o json: %v, %d nodes", err, len(st.Nodes))
	}
	for _, n := range st.Nodes {
		if d := time.Until(n.Expires); d < 2*time.Hour+50*time.Minute || d > 3*time.Hour+time.Minute {
			t.Errorf("%s: lease ends in %s, want about 3h (--lease 3h)", n.Node, d)
		}
	}
	if code, _, _ = plab(t, env, "slice", "delete", "ucb_part", "-q"); code != 0 {
		t.Errorf("delete = %d", code)
	}
	for _, h := range w.hosts {
		if got := w.nodes[h].Slivers(); len(got) != 0 {
			t.Errorf("after delete node %s holds %q", h, got)
		}
	}
}

// TestExecFanOut: plab exec on a 10-node slice prints every node's output
// prefixed with its node, and a summary that counts the failures; the exit
// status says some failed.
func TestExecFanOut(t *testing.T) {
	w := startWorld(t, 10)
	env := w.env(t.TempDir())
	if code, _, _ := plab(t, env, "login", "--plc", w.plc.URL, "--key", w.alice.KeyFile, "--ca-fingerprint", string(w.plc.CAFingerprint)); code != 0 {
		t.Fatal("login failed")
	}
	if code, _, _ := plab(t, env, "slice", "create", "ucb_ten", "--nodes", "10", "-q"); code != 0 {
		t.Fatalf("create = %d", code)
	}
	failing := []string{w.hosts[0], w.hosts[3], w.hosts[7]}
	args := []string{"exec", "ucb_ten"}
	for _, h := range failing {
		args = append(args, "--node", h)
	}
	if code, _, _ := plab(t, env, append(args, "--", "touch", "/fail")...); code != 0 {
		t.Fatalf("exec on three nodes = %d", code)
	}
	code, out, errOut := plab(t, env, "exec", "ucb_ten", "--", "sh", "-c", "echo hello from $(hostname); echo to-stderr >&2; test ! -e /fail || exit 7")
	if code != exitPartial {
		t.Errorf("exec with 3 failures = %d, want %d", code, exitPartial)
	}
	for _, h := range w.hosts {
		if !strings.Contains(out, h+": hello from ucb_ten\n") {
			t.Errorf("output lacks %s's line:\n%s", h, out)
		}
		if !strings.Contains(errOut, h+": to-stderr\n") {
			t.Errorf("stderr lacks %s's line", h)
		}
	}
	if !strings.Contains(errOut, "== 10 nodes: exit 0: 7, exit 7: 3") {
		t.Errorf("summary missing or wrong:\n%s", errOut)
	}
	slices.Sort(failing)
	if !strings.Contains(errOut, "exit 7 on "+strings.Join(failing, " ")) {
		t.Errorf("summary does not name the failed nodes %v:\n%s", failing, errOut)
	}
	if code, _, _ := plab(t, env, "exec", "ucb_ten", "--", "true"); code != 0 {
		t.Errorf("exec true everywhere = %d, want 0", code)
	}
	if code, _, _ := plab(t, env, "slice", "delete", "ucb_ten", "-q"); code != 0 {
		t.Errorf("delete = %d", code)
	}
}
