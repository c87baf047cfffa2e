//go:build linux

package node

import (
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// TestLeaseLifecycle: a user redeems a ticket and the sliver runs; renew
// extends the lease; delete destroys; expiry destroys (acceptance 1).
func TestLeaseLifecycle(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{MaxLease: Duration(10 * time.Minute), Grace: Duration(30 * time.Second)}})
	n := w.node
	w.plc.Slice("ucb_exp", "direct", w.alice, 7*24*time.Hour)
	start := w.clock.Now()
	l, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_exp", n, api.Resources{MemoryBytes: 64 << 20}))
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if l.Sliver != "ucb_exp" || l.Lease == "" || l.NotAfter.Sub(start) > 10*time.Minute+time.Second || l.NotAfter.Sub(start) < 10*time.Minute-5*time.Second {
		t.Errorf("lease = %+v; want sliver ucb_exp for 10 minutes from %s", l, start)
	}
	if got := n.sliverState("ucb_exp"); got != string(sliver.Running) {
		t.Fatalf("sliver state after redemption = %q, want running", got)
	}
	var out strings.Builder
	if code, err := n.backend.Exec(ctx, "ucb_exp", sliver.ExecSpec{Args: []string{"cat", "/proc/self/cgroup"}, Stdout: &out}); code != 0 || err != nil {
		t.Errorf("exec in the sliver = %d, %v", code, err)
	}
	c := w.client(w.alice, n)
	var st api.Sliver
	if err := c.Do(ctx, "GET", "/v1/slivers/ucb_exp", nil, &st); err != nil || st.State != "running" || st.Resources.MemoryBytes != 64<<20 || st.Keys != 1 {
		t.Errorf("status = %+v, %v", st, err)
	}

	// Renew, five minutes on: the lease now ends ten minutes from then.
	w.clock.Advance(5 * time.Minute)
	var r api.Lease
	if err := c.Do(ctx, "POST", "/v1/slivers/ucb_exp/renew", nil, &r); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if !r.NotAfter.After(l.NotAfter) || r.Renewals != 1 || r.ID != l.ID {
		t.Errorf("renewed lease = %+v; want a later end than %s, one renewal, the same id", r, l.NotAfter)
	}

	// Delete destroys the sliver; the lease is gone.
	if err := c.Do(ctx, "DELETE", "/v1/slivers/ucb_exp", nil, nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := n.sliverState("ucb_exp"); got != "" {
		t.Errorf("sliver after delete: %q, want gone", got)
	}
	mustErr(t, "status after delete", c.Do(ctx, "GET", "/v1/slivers/ucb_exp", nil, &st), errdefs.ErrNotFound)

	// Expiry: a new sliver whose lease runs out is destroyed after the
	// grace period, not before.
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_exp", n, api.Resources{})); err != nil {
		t.Fatalf("redeem again: %v", err)
	}
	w.clock.Advance(10*time.Minute + 10*time.Second)
	n.n.M.Reap(ctx)
	if got := n.sliverState("ucb_exp"); got != string(sliver.Running) {
		t.Errorf("sliver within the grace period: %q, want running", got)
	}
	mustErr(t, "renew of an ended lease", c.Do(ctx, "POST", "/v1/slivers/ucb_exp/renew", nil, nil), errdefs.ErrExpired)
	w.clock.Advance(30 * time.Second)
	n.n.M.Reap(ctx)
	if got := n.sliverState("ucb_exp"); got != "" {
		t.Errorf("sliver after its lease and grace: %q, want destroyed", got)
	}
	if n.n.M.Count() != 0 {
		t.Errorf("leases left: %d", n.n.M.Count())
	}
}
