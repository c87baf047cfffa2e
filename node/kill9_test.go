//go:build linux

package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/internal/testenv"
	"github.com/plab/plab/sliver/oci"
)

// TestMain lets the test binary act as a node process for the kill -9
// test: PLAB_TEST_NODE holds its settings.
func TestMain(m *testing.M) {
	if v := os.Getenv("PLAB_TEST_NODE"); v != "" {
		os.Exit(serveNode(v))
	}
	os.Exit(m.Run())
}

// childNode is what a node process needs.
type childNode struct {
	Dir     string
	Backend oci.Config
}

func serveNode(settings string) int {
	var c childNode
	if err := json.Unmarshal([]byte(settings), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c.Backend.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	b, err := oci.New(ctx, c.Backend)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := b.Images().EnsureDefault(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := Start(ctx, c.Dir, StartOptions{Backend: b, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", n.M.Listen())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("serving %s\n", ln.Addr())
	if err := n.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n.Close()
	b.Close()
	return 0
}

// startChild runs the node of tn in a child process and waits until it
// serves (recovery done).
func startChild(t testing.TB, tn *testNode, logf *os.File) *exec.Cmd {
	t.Helper()
	settings, _ := json.Marshal(childNode{Dir: tn.dir, Backend: tn.bcfg})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PLAB_TEST_NODE="+string(settings))
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serving ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("node process did not start: %q, %v (its log: %s)", line, err, logf.Name())
	}
	return cmd
}

// TestKill9DuringRedemptions kills the node manager with SIGKILL at a
// random moment while users redeem 100 tickets, restarts it, and checks:
// every acknowledged lease has a running sliver; no sliver survives whose
// redemption was never answered, except one whose answer was on its way at
// the kill (its lease was committed; the user finds it with GET); a ticket
// whose redemption was rolled back can be redeemed again; nothing leaks
// (acceptance 4). Rounds: PLAB_KILL9_ROUNDS, default 20.
func TestKill9DuringRedemptions(t *testing.T) {
	testenv.RequireRoot(t)
	rounds := 20
	if v, err := strconv.Atoi(os.Getenv("PLAB_KILL9_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	const count, workers = 100, 4
	w := newWorld(t, worldOpts{maxSlivers: 128, cfg: Config{MaxSlivers: 128}, enrollOnly: true})
	tn := w.node
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("ucb_k%03d", i)
		w.plc.Slice(names[i], "direct", w.alice, 24*time.Hour)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("node log:\n%s", b)
		}
	}()
	c := w.client(w.alice, tn)
	var totalAcked, totalInflightSurvived, totalRolledBack int
	for round := range rounds {
		cmd := startChild(t, tn, logf)
		tickets := map[string]string{}
		for _, name := range names {
			tickets[name] = w.ticket(w.alice, name, tn, api.Resources{})
		}
		var mu sync.Mutex
		acked, inflight := map[string]bool{}, map[string]bool{}
		next := make(chan string)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range next {
					mu.Lock()
					inflight[name] = true
					mu.Unlock()
					_, err := w.redeem(w.alice, tn, tickets[name])
					mu.Lock()
					if err == nil {
						acked[name] = true
						delete(inflight, name)
					}
					mu.Unlock()
				}
			}()
		}
		killAt := time.Duration(rand.Int64N(int64(3 * time.Second)))
		killed := make(chan struct{})
		go func() {
			time.Sleep(killAt)
			mu.Lock() // freeze the picture of what was answered
			cmd.Process.Signal(syscall.SIGKILL)
			mu.Unlock()
			close(killed)
		}()
	feed:
		for _, name := range names {
			select {
			case next <- name:
			case <-killed:
				break feed
			}
		}
		close(next)
		<-killed
		wg.Wait()
		cmd.Wait()
		mu.Lock()
		ackedAtKill := maps2slice(acked)
		mu.Unlock()

		cmd = startChild(t, tn, logf)
		var list api.List[api.Sliver]
		if err := c.Do(ctx, "GET", "/v1/slivers", nil, &list); err != nil {
			t.Fatalf("round %d: list slivers: %v", round, err)
		}
		survived := map[string]bool{}
		for _, s := range list.Items {
			survived[s.Name] = true
			if s.State != "running" {
				t.Errorf("round %d: sliver %s is %s after the restart, want running", round, s.Name, s.State)
			}
		}
		for _, name := range ackedAtKill {
			if !survived[name] {
				t.Errorf("round %d: acknowledged lease of %s has no sliver after the restart", round, name)
			}
		}
		var rolledBack []string
		for name := range inflight {
			if !survived[name] {
				rolledBack = append(rolledBack, name)
			}
		}
		for name := range survived {
			switch {
			case acked[name]:
			case inflight[name]:
				totalInflightSurvived++
			default:
				t.Errorf("round %d: sliver %s survives, but its redemption was never sent", round, name)
			}
		}
		// The kernel holds exactly the leased slivers.
		objs, err := oci.HostObjects(tn.bcfg)
		if err != nil {
			t.Fatal(err)
		}
		var containers []string
		for _, o := range objs {
			if c, ok := strings.CutPrefix(o, "runtime container "); ok {
				containers = append(containers, c)
			}
		}
		if want := maps2slice(survived); !slices.Equal(containers, want) {
			t.Errorf("round %d: runtime containers %v, want the leased slivers %v", round, containers, want)
		}
		// A rolled-back redemption's ticket is good again.
		if len(rolledBack) > 0 {
			if _, err := w.redeem(w.alice, tn, tickets[rolledBack[0]]); err != nil {
				t.Errorf("round %d: redeem the rolled-back ticket of %s again: %v", round, rolledBack[0], err)
			} else {
				survived[rolledBack[0]] = true
			}
		}
		t.Logf("round %d: killed after %s: %d acknowledged, %d in flight (%d of them committed), %d rolled back",
			round, killAt.Round(time.Millisecond), len(ackedAtKill), len(inflight), len(inflight)-len(rolledBack), len(rolledBack))
		totalAcked += len(ackedAtKill)
		totalRolledBack += len(rolledBack)
		// Empty the node for the next round.
		sem := make(chan struct{}, workers)
		for name := range survived {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := c.Do(ctx, "DELETE", "/v1/slivers/"+name, nil, nil); err != nil {
					t.Errorf("round %d: delete %s: %v", round, name, err)
				}
			}()
		}
		wg.Wait()
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			break
		}
	}
	t.Logf("%d rounds: %d leases acknowledged before the kill, %d answers lost in flight but committed, %d redemptions rolled back",
		rounds, totalAcked, totalInflightSurvived, totalRolledBack)
	// Nothing of the slivers remains: only the layer pool's mount and loop
	// device and the cgroup parents, which Cleanup (at the test's end)
	// removes and checks.
	objs, _ := oci.HostObjects(tn.bcfg)
	for _, o := range objs {
		if strings.HasPrefix(o, "runtime container") || strings.HasPrefix(o, "process") {
			t.Errorf("left after the last round: %s", o)
		}
	}
}

func maps2slice(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
