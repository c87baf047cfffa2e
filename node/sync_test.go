//go:build linux

package node

import (
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/plc/plctest"
	"github.com/plab/plab/sliver"
)

// eventually polls cond every 10 ms until it holds or limit passes, and
// returns how long it took. The node's convergence is asynchronous; the
// limits are what the acceptance demands, not guesses.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		<-tick.C
	}
	return time.Since(start)
}

// TestDelegatedSlice: a delegated slice bound at PLC has a running sliver on
// the node at most 2 s later (acceptance 6); member keys, attributes and
// the initscript follow PLC; unbinding destroys the sliver.
func TestDelegatedSlice(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_cdn", "delegated", w.alice, 7*24*time.Hour)
	w.plc.Do(w.plc.Admin, "POST", "/v1/slices/ucb_cdn/attributes", api.Attribute{Name: AttrMemory, Value: "64M"}, nil)
	w.plc.Do(w.plc.Admin, "POST", "/v1/slices/ucb_cdn/attributes", api.Attribute{Name: AttrInitscript, Value: "echo $((6*7)) > /initscript.out"}, nil)

	start := time.Now()
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_cdn/nodes/"+n.host, nil, nil)
	took := eventually(t, 2*time.Second, "delegated sliver running", func() bool {
		return n.sliverState("ucb_cdn") == string(sliver.Running)
	})
	t.Logf("the sliver ran %s after the binding at PLC", took.Round(time.Millisecond))
	_ = start

	c := w.client(w.alice, n)
	var st api.Sliver
	if err := c.Do(ctx, "GET", "/v1/slivers/ucb_cdn", nil, &st); err != nil || !st.Delegated || st.Resources.MemoryBytes != 64<<20 || st.Keys != 1 {
		t.Fatalf("status = %+v, %v; want delegated, 64 MiB, alice's key", st, err)
	}
	eventually(t, 10*time.Second, "initscript done", func() bool {
		err := c.Do(ctx, "GET", "/v1/slivers/ucb_cdn", nil, &st)
		return err == nil && st.Initscript != "running"
	})
	var out strings.Builder
	if _, err := n.backend.Exec(ctx, "ucb_cdn", sliver.ExecSpec{Args: []string{"cat", "/initscript.out"}, Stdout: &out}); err != nil || strings.TrimSpace(out.String()) != "42" || st.Initscript != "exit 0" {
		t.Errorf("initscript: %q (%s), %v; want 42 written inside the sliver", out.String(), st.Initscript, err)
	}

	// Users cannot delete a delegated sliver or change its keys at the node.
	mustErr(t, "delete of a delegated sliver", c.Do(ctx, "DELETE", "/v1/slivers/ucb_cdn", nil, nil), errdefs.ErrDenied)
	mustErr(t, "addkey to a delegated sliver", c.Do(ctx, "POST", "/v1/slivers/ucb_cdn/keys", api.SSHKey{Key: w.plc.Admin.Pub}, nil), errdefs.ErrDenied)

	// A new member's key arrives.
	bob := plctest.NewUser(t, "bob@ucb.test")
	w.plc.Person(bob, "ucb", "user")
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_cdn/members/"+bob.Email, nil, nil)
	eventually(t, 5*time.Second, "bob's key on the sliver", func() bool {
		keys, _ := n.n.M.AuthorizedKeys("ucb_cdn")
		return len(keys) == 2
	})
	var keys api.List[api.SSHKey]
	if err := w.client(bob, n).Do(ctx, "GET", "/v1/slivers/ucb_cdn/keys", nil, &keys); err != nil || len(keys.Items) != 2 {
		t.Errorf("keys as bob = %+v, %v", keys, err)
	}

	// Unbinding destroys the sliver.
	w.plc.Do(w.plc.Admin, "DELETE", "/v1/slices/ucb_cdn/nodes/"+n.host, nil, nil)
	eventually(t, 5*time.Second, "sliver destroyed after the unbinding", func() bool { return n.sliverState("ucb_cdn") == "" })
}

// TestPLCAway: with PLC stopped (a minute, on the node's clock), slivers
// keep running and their leases renew on the node; when PLC returns the
// node catches up with what changed (acceptance 5).
func TestPLCAway(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{MaxLease: Duration(40 * time.Second), Grace: Duration(10 * time.Second)}})
	n := w.node
	w.plc.Slice("ucb_cdn", "delegated", w.alice, 7*24*time.Hour)
	w.plc.Slice("ucb_two", "delegated", w.alice, 7*24*time.Hour)
	w.plc.Slice("ucb_exp", "direct", w.alice, 7*24*time.Hour)
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_cdn/nodes/"+n.host, nil, nil)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_exp", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "delegated sliver", func() bool { return n.sliverState("ucb_cdn") == string(sliver.Running) })

	w.plc.Stop()
	eventually(t, 5*time.Second, "the node sees PLC gone", func() bool { return n.n.Sync.Status().Error != "" })
	t.Logf("sync: %s", n.n.Sync.Status().Error)
	c := w.client(w.alice, n)
	for range 4 { // a minute and a bit, in steps
		w.clock.Advance(16 * time.Second)
		n.n.M.Reap(ctx)
		if err := c.Do(ctx, "POST", "/v1/slivers/ucb_exp/renew", nil, nil); err != nil {
			t.Fatalf("renew at the node while PLC is away: %v", err)
		}
	}
	now := w.clock.Now()
	for _, name := range []string{"ucb_cdn", "ucb_exp"} {
		var st api.Sliver
		if err := c.Do(ctx, "GET", "/v1/slivers/"+name, nil, &st); err != nil {
			t.Fatalf("status of %s: %v", name, err)
		}
		if st.State != "running" || !st.Lease.NotAfter.After(now) || st.Lease.Renewals == 0 {
			t.Errorf("%s after a minute without PLC: %+v; want running, renewed, leased past %s", name, st, now)
		}
	}

	// PLC returns, and binds another slice: the node catches up.
	w.plc.Restart()
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_two/nodes/"+n.host, nil, nil)
	took := eventually(t, 10*time.Second, "the node catches up", func() bool { return n.sliverState("ucb_two") == string(sliver.Running) })
	t.Logf("caught up %s after PLC returned", took.Round(time.Millisecond))
	eventually(t, 10*time.Second, "the node reports again", func() bool {
		var ads api.List[api.Ad]
		err := w.plc.Client(w.plc.Admin).Do(ctx, "GET", "/v1/ads", nil, &ads)
		return err == nil && len(ads.Items) == 1 && ads.Items[0].Slivers == 3
	})
	var st api.NodeStatus
	if err := c.Do(ctx, "GET", "/v1/node", nil, &st); err != nil || st.PLC.Error != "" || st.PLC.LastReport.IsZero() || st.PLC.LastSync.IsZero() {
		t.Errorf("node status after PLC returned = %+v, %v; want no error, a last sync and a last report", st.PLC, err)
	}
}

// TestDelegatedRefused: a delegated slice the node cannot host (its memory
// is more than the node has) is reported in the sync status and does not
// hold up the next slice.
func TestDelegatedRefused(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_huge", "delegated", w.alice, 24*time.Hour)
	w.plc.Slice("ucb_ok", "delegated", w.alice, 24*time.Hour)
	w.plc.Do(w.plc.Admin, "POST", "/v1/slices/ucb_huge/attributes", api.Attribute{Name: AttrMemory, Value: "100T"}, nil)
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_huge/nodes/"+n.host, nil, nil)
	eventually(t, 5*time.Second, "the refusal in the sync status", func() bool {
		return strings.Contains(n.n.Sync.Status().Error, "ucb_huge")
	})
	t.Logf("sync status: %s", n.n.Sync.Status().Error)
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_ok/nodes/"+n.host, nil, nil)
	eventually(t, 2*time.Second, "the next slice", func() bool { return n.sliverState("ucb_ok") == string(sliver.Running) })
	if got := n.sliverState("ucb_huge"); got != "" {
		t.Errorf("the refused slice has a sliver: %s", got)
	}
}
