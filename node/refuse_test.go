//go:build linux

package node

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/plc/plctest"
	"github.com/plab/plab/sliver/oci"
)

// hostState is what a refused request must leave as it was: the node's
// leases, the backend's slivers and the kernel objects.
func hostState(t *testing.T, n *testNode) []string {
	t.Helper()
	objs, err := oci.HostObjects(n.bcfg)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := n.backend.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		objs = append(objs, "sliver "+in.Name)
	}
	for _, s := range n.n.M.List(ctx, "") {
		objs = append(objs, "lease "+s.Name)
	}
	slices.Sort(objs)
	return objs
}

// TestRefusedRedemptions: another user's ticket, another node's ticket, a
// replay, an expired ticket and a tampered ticket are refused, and leave
// nothing behind (acceptance 2).
func TestRefusedRedemptions(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	bob := plctest.NewUser(t, "bob@ucb.test")
	w.plc.Person(bob, "ucb", "user")
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	w.plc.Slice("ucb_short", "direct", w.alice, time.Hour)
	w.plc.Node("n2.ucb.test", "ucb")

	// A redemption that works, for the replay below.
	used := w.ticket(w.alice, "ucb_a", n, api.Resources{})
	if _, err := w.redeem(w.alice, n, used); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	before := hostState(t, n)

	aliceTicket := w.ticket(w.alice, "ucb_short", n, api.Resources{})
	otherNode := w.plc.Tickets(w.alice, "ucb_short", api.Resources{}, "n2.ucb.test")[0].Ticket
	tampered := []byte(w.ticket(w.alice, "ucb_short", n, api.Resources{}))
	// Change one character of the payload: the signature no longer holds.
	i := strings.IndexByte(string(tampered), '.') + 10
	tampered[i] ^= 1
	expired := w.ticket(w.alice, "ucb_short", n, api.Resources{})

	for _, tc := range []struct {
		name    string
		user    *plctest.User
		ticket  string
		want    error
		advance time.Duration
	}{
		{"another user's ticket", bob, aliceTicket, errdefs.ErrDenied, 0},
		{"another node's ticket", w.alice, otherNode, errdefs.ErrDenied, 0},
		{"a replay", w.alice, used, errdefs.ErrConflict, 0},
		{"a tampered ticket", w.alice, string(tampered), errdefs.ErrDenied, 0},
		{"not a ticket", w.alice, "hello", errdefs.ErrInvalid, 0},
		{"an expired ticket", w.alice, expired, errdefs.ErrExpired, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.clock.Advance(tc.advance)
			_, err := w.redeem(tc.user, n, tc.ticket)
			mustErr(t, "redeem "+tc.name, err, tc.want)
			if err != nil {
				t.Logf("refused: %v", err)
			}
			if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
				t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
			}
		})
	}
	// The ticket a stranger presented is still good for its principal.
	w.clock.Advance(-2 * time.Hour)
	if _, err := w.redeem(w.alice, n, aliceTicket); err != nil {
		t.Errorf("the principal's redemption after a stranger tried: %v", err)
	}
}

// TestAdmissionControl: requests beyond the node's capacity are refused
// with a clear code and leave nothing behind (acceptance 3).
func TestAdmissionControl(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{MaxSlivers: 3, BandwidthCap: 100e6, ReservedPorts: []string{"tcp/22"}}})
	n := w.node
	for _, s := range []string{"ucb_a", "ucb_b", "ucb_c", "ucb_d"} {
		w.plc.Slice(s, "direct", w.alice, 24*time.Hour)
	}
	capa := n.n.M.Capacity()
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{CPUReserve: capa.CPUReserve / 2, NetMinRate: 60e6, Ports: []string{"tcp/80"}})); err != nil {
		t.Fatalf("first redemption: %v", err)
	}
	before := hostState(t, n)
	for _, tc := range []struct {
		name string
		res  api.Resources
		want string
	}{
		{"cpu beyond the unreserved", api.Resources{CPUReserve: capa.CPUReserve/2 + 100}, api.CodeNoCapacity},
		{"memory beyond the node", api.Resources{MemoryBytes: capa.MemoryBytes + 1}, api.CodeNoCapacity},
		{"bandwidth beyond the cap", api.Resources{NetMinRate: 50e6}, api.CodeNoCapacity},
		{"a port another slice holds", api.Resources{Ports: []string{"tcp/79-81"}}, api.CodeConflict},
		{"the node's own port", api.Resources{Ports: []string{"tcp/22"}}, api.CodeConflict},
		{"a malformed port", api.Resources{Ports: []string{"sctp/5"}}, api.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_b", n, tc.res))
			if got := api.CodeOf(err); got != tc.want {
				t.Errorf("redeem = %v (code %s), want code %s", err, got, tc.want)
			} else {
				t.Logf("refused: %v", err)
			}
			if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
				t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
			}
		})
	}
	// Best effort is admitted up to the node's sliver count.
	for _, s := range []string{"ucb_b", "ucb_c"} {
		if _, err := w.redeem(w.alice, n, w.ticket(w.alice, s, n, api.Resources{})); err != nil {
			t.Fatalf("redeem %s: %v", s, err)
		}
	}
	before = hostState(t, n)
	_, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_d", n, api.Resources{}))
	if api.CodeOf(err) != api.CodeNoCapacity {
		t.Errorf("redeem on a full node = %v, want %s", err, api.CodeNoCapacity)
	}
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
	}
	var st api.NodeStatus
	if err := w.client(w.alice, n).Do(ctx, "GET", "/v1/node", nil, &st); err != nil || st.Slivers != 3 || st.Free.NetMinRate != 40e6 {
		t.Errorf("node status = %+v, %v; want 3 slivers and 40 Mbit/s unguaranteed", st, err)
	}
}
