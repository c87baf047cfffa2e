//go:build linux

package node

// Attacks on the node manager, from its security review: each test is one
// attack on a property the design (DESIGN.md, "Security model") or the
// node API promises, and fails when the attack works. Ten of them found
// bugs, since fixed: key header not bound to the signer, overflowing
// guarantee sums, request replay after a restart, a deleted slice's name
// kept, ended leases still usable, renewed or restarted, unbounded process
// limits, and an unclear refusal in the clock-skew window.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/plc/plctest"
	"github.com/plab/plab/sliver"
)

// attackUser registers a user at site ucb (so PLC gives them tickets).
func attackUser(t *testing.T, w *world, email string) *plctest.User {
	t.Helper()
	u := plctest.NewUser(t, email)
	w.plc.Person(u, "ucb", "user")
	return u
}

// clientWithHeader signs as signer but sends keyLine in the Plab-Key header.
func (w *world) clientWithHeader(signer *plctest.User, keyLine string, n *testNode) *api.Client {
	c := w.client(signer, n)
	c.Sign = func(r *http.Request) error {
		r.Header.Set(api.KeyHeader, keyLine)
		return httpsig.Sign(r, signer.ID, w.clock.Now())
	}
	return c
}

// TestAttackKeyHeaderNotSignersKey. Attack: a user whose key the node
// already knows (from one of her slivers) redeems a ticket while sending
// someone else's public key in the Plab-Key header. The signature verifies
// with her stored key, and redeem records the header's key as "the
// signer's key". Property: the Plab-Key header cannot make the node
// record or trust a key whose fingerprint differs from the signature's
// keyid (every key of a sliver is filed under its own fingerprint, and an
// unvouched-for key never becomes an SSH login).
func TestAttackKeyHeaderNotSignersKey(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	mallory := plctest.NewUser(t, "mallory@evil.test") // unknown to PLC
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	w.plc.Slice("ucb_b", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}

	tk := w.ticket(w.alice, "ucb_b", n, api.Resources{})
	err := w.clientWithHeader(w.alice, mallory.Pub, n).Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk}, nil)
	mustErr(t, "redemption with someone else's key in the "+api.KeyHeader+" header", err, errdefs.ErrInvalid)
	if _, ok := n.n.M.AuthorizedKeys("ucb_b"); ok {
		t.Errorf("the refused redemption made sliver ucb_b")
	}
	// The ticket is still good; without the header the node files the
	// key it knows for alice, under its own fingerprint.
	c := w.client(w.alice, n)
	c.Sign = func(r *http.Request) error { return signOnly(r, w.alice, w) }
	if err := c.Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk}, nil); err != nil {
		t.Fatalf("redeem without the header: %v", err)
	}
	keys, err := n.n.M.Keys("ucb_b", "")
	if err != nil || len(keys) != 1 || keys[0].Fingerprint != string(w.alice.Fingerprint()) || keys[0].Key != w.alice.Pub {
		t.Errorf("keys of ucb_b = %+v, %v; want alice's key only", keys, err)
	}
	if logins, _ := n.n.M.AuthorizedKeys("ucb_b"); slices.Contains(logins, mallory.Pub) {
		t.Errorf("mallory's key may log into ucb_b: %q", logins)
	}
}

// TestAttackKeyHeaderCannotImpersonate. Attack: mallory presents alice's
// ticket, signing with her own key but sending alice's public key in the
// Plab-Key header. Property: the header cannot stand in for the signer;
// the ticket is refused and stays good for alice.
func TestAttackKeyHeaderCannotImpersonate(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	mallory := plctest.NewUser(t, "mallory@evil.test")
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	tk := w.ticket(w.alice, "ucb_a", n, api.Resources{})
	before := hostState(t, n)
	err := w.clientWithHeader(mallory, w.alice.Pub, n).Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk}, nil)
	mustErr(t, "redeem as mallory with alice's key in the header", err, errdefs.ErrDenied)
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
	}
	if _, err := w.redeem(w.alice, n, tk); err != nil {
		t.Errorf("alice's redemption after mallory tried: %v", err)
	}
}

// TestAttackBandwidthOverflow. Attack: with one minimum rate admitted, ask
// for a minimum rate near MaxInt64: the sum of guarantees wraps negative
// and passes the "fits under the cap" check. Property: guarantees are
// never oversubscribed.
func TestAttackBandwidthOverflow(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{BandwidthCap: 100e6}})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	w.plc.Slice("ucb_b", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{NetMinRate: 60e6})); err != nil {
		t.Fatal(err)
	}
	before := hostState(t, n)
	_, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_b", n, api.Resources{NetMinRate: math.MaxInt64 - 10e6}))
	if err == nil {
		t.Errorf("redeem of a %d bit/s guarantee on a 100 Mbit/s node with 40 Mbit/s unguaranteed succeeded, want %s", int64(math.MaxInt64-10e6), api.CodeNoCapacity)
	} else if got := api.CodeOf(err); got != api.CodeNoCapacity {
		t.Errorf("redeem of a %d bit/s guarantee = %v (code %s), want %s", int64(math.MaxInt64-10e6), err, got, api.CodeNoCapacity)
	}
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the redemption changed the node (-before +after):\n%s", diff)
	}
	if free := n.n.M.Free().NetMinRate; free != 40e6 {
		t.Errorf("unguaranteed bandwidth = %d, want 40000000", free)
	}
}

// TestAttackMemoryOverflow. Attack: as above, with the memory guarantee:
// MemoryBytes near MaxInt64 wraps the sum of guarantees. Property:
// guarantees are never oversubscribed.
func TestAttackMemoryOverflow(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	w.plc.Slice("ucb_b", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{MemoryBytes: 64 << 20})); err != nil {
		t.Fatal(err)
	}
	freeBefore := n.n.M.Free().MemoryBytes
	before := hostState(t, n)
	_, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_b", n, api.Resources{MemoryBytes: math.MaxInt64 - 32<<20}))
	if err == nil {
		t.Errorf("redeem of an 8 EiB memory guarantee succeeded, want %s", api.CodeNoCapacity)
	} else if got := api.CodeOf(err); got != api.CodeNoCapacity {
		t.Errorf("redeem of an 8 EiB memory guarantee = %v (code %s), want %s", err, got, api.CodeNoCapacity)
	}
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the redemption changed the node (-before +after):\n%s", diff)
	}
	if free := n.n.M.Free().MemoryBytes; free != freeBefore {
		t.Errorf("unpromised memory = %d, want %d", free, freeBefore)
	}
}

// recorder signs like w.client and keeps the headers of the last request,
// so a test can play the attacker who stole it.
type recorder struct {
	mu  sync.Mutex
	hdr http.Header
}

func (w *world) recordingClient(u *plctest.User, n *testNode, rec *recorder) *api.Client {
	c := w.client(u, n)
	sign := c.Sign
	c.Sign = func(r *http.Request) error {
		if err := sign(r); err != nil {
			return err
		}
		rec.mu.Lock()
		rec.hdr = r.Header.Clone()
		rec.mu.Unlock()
		return nil
	}
	return c
}

// replayClient sends requests with exactly the stolen headers.
func (w *world) replayClient(n *testNode, rec *recorder) *api.Client {
	c := w.client(w.alice, n)
	c.Sign = func(r *http.Request) error {
		rec.mu.Lock()
		r.Header = rec.hdr.Clone()
		rec.mu.Unlock()
		return nil
	}
	return c
}

// TestAttackReplayAfterRestart. Attack: steal a signed addkey request
// (say, from a proxy log), wait for the victim to remove the key again and
// for the node to restart, then send the request again within its
// five-minute validity. Property: a stolen signed request cannot be
// replayed; the node's nonce store must outlive a restart as its lease
// database does.
func TestAttackReplayAfterRestart(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	bob := attackUser(t, w, "bob@ucb.test")
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	if err := w.recordingClient(w.alice, n, &rec).Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: bob.Pub}, nil); err != nil {
		t.Fatalf("addkey: %v", err)
	}
	// Without a restart the replay is refused.
	mustErr(t, "replay before a restart", w.replayClient(n, &rec).Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: bob.Pub}, nil), errdefs.ErrConflict)
	if err := w.client(w.alice, n).Do(ctx, "DELETE", "/v1/slivers/ucb_a/keys/"+url.PathEscape(string(bob.Fingerprint())), nil, nil); err != nil {
		t.Fatalf("delkey: %v", err)
	}

	n.stop(t)
	n.start(t, w.clock)
	w.clock.Advance(time.Minute) // still within the signature's validity

	err := w.replayClient(n, &rec).Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: bob.Pub}, nil)
	mustErr(t, "replay of a stolen addkey after a node restart", err, errdefs.ErrConflict)
	if logins, _ := n.n.M.AuthorizedKeys("ucb_a"); slices.Contains(logins, bob.Pub) {
		t.Errorf("the replayed request gave bob's key back its login to ucb_a")
	}
}

// TestAttackSignedForAnotherServer. Attack: take a request signed for
// another node (authority) and send it here. Property: a signed request is
// good only at the server it names.
func TestAttackSignedForAnotherServer(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	c := w.client(w.alice, n)
	sign := c.Sign
	c.Sign = func(r *http.Request) error {
		r.Host = "n2.ucb.test:8140"
		return sign(r)
	}
	mustErr(t, "delete signed for another node", c.Do(ctx, "DELETE", "/v1/slivers/ucb_a", nil, nil), errdefs.ErrDenied)
	if n.sliverState("ucb_a") != string(sliver.Running) {
		t.Errorf("the sliver is gone after a request signed for another node")
	}
}

// TestAttackDeletedSliceKeepsSliver. Attack: alice redeems a ticket of a
// direct slice; PLC deletes the slice (revoking its tickets) and an admin
// makes the name a delegated slice of another member and binds it to the
// node. Properties: a delegated slice's sliver is managed by PLC only,
// and no user can squat a slice name: the node must not keep the old
// direct sliver (and its principal's control) in the delegated slice's
// place.
func TestAttackDeletedSliceKeepsSliver(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	bob := attackUser(t, w, "bob@ucb.test")
	w.plc.Slice("ucb_x", "direct", w.alice, 7*24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_x", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	w.plc.Do(w.plc.Admin, "DELETE", "/v1/slices/ucb_x", nil, nil)
	w.plc.Slice("ucb_x", "delegated", bob, 7*24*time.Hour)
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_x/nodes/"+n.host, nil, nil)

	eventually(t, 5*time.Second, "PLC made ucb_x a delegated slice of bob bound to the node; the node's sliver ucb_x becomes delegated (it still holds alice's direct one)", func() bool {
		st, err := n.n.M.Status(ctx, "ucb_x", "")
		return err == nil && st.Delegated
	})
	if err := w.client(w.alice, n).Do(ctx, "GET", "/v1/slivers/ucb_x", nil, nil); err == nil {
		t.Errorf("alice still acts on sliver ucb_x after PLC deleted her slice and gave the name to another")
	}
}

// TestAttackExpiredLeaseStillGrantsAccess. Attack: keep using a sliver
// after its lease ended (during the grace period before the reaper
// destroys it): add a key, log in. Property: a lease is valid only while
// unexpired.
func TestAttackExpiredLeaseStillGrantsAccess(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{MaxLease: Duration(10 * time.Minute), Grace: Duration(time.Minute)}})
	n := w.node
	bob := attackUser(t, w, "bob@ucb.test")
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	l, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{}))
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(l.NotAfter.Sub(w.clock.Now()) + 5*time.Second)
	err = w.client(w.alice, n).Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: bob.Pub}, nil)
	mustErr(t, "addkey after the lease ended", err, errdefs.ErrExpired)
	if logins, ok := n.n.M.AuthorizedKeys("ucb_a"); ok && len(logins) > 0 {
		t.Errorf("after the lease ended the SSH gateway still accepts %d key(s) for ucb_a", len(logins))
	}
}

// TestAttackRenewOfExpiredLease. Attack: renew a lease that already ran to
// its ticket's end and has expired. Property: renewals cannot resurrect
// an expired lease; the answer must say it expired, not hand back the dead
// lease as a successful renewal.
func TestAttackRenewOfExpiredLease(t *testing.T) {
	w := newWorld(t, worldOpts{}) // no MaxLease: the lease runs to the ticket's end
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, time.Hour)
	l, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{}))
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(l.NotAfter.Sub(w.clock.Now()) + 10*time.Second) // within the one-minute grace
	var r api.Lease
	err = w.client(w.alice, n).Do(ctx, "POST", "/v1/slivers/ucb_a/renew", nil, &r)
	if err == nil {
		t.Errorf("renew of a lease that ended at %s (now %s) succeeded, answering a lease until %s", l.NotAfter, w.clock.Now().UTC(), r.NotAfter)
	}
	mustErr(t, "renew of an expired lease", err, errdefs.ErrExpired)
}

// TestAttackRecoveryRevivesExpiredSliver. Attack (or accident): the node
// is down, with its slivers stopped, past its leases' end and grace; on
// start, recovery starts every leased sliver, expired or not. Property: a
// lease is valid only while unexpired; recovery must not run a sliver
// whose lease is over.
func TestAttackRecoveryRevivesExpiredSliver(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{MaxLease: Duration(10 * time.Minute), Grace: Duration(30 * time.Second)}})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	if err := n.backend.Stop(ctx, "ucb_a"); err != nil { // as after a reboot
		t.Fatal(err)
	}
	n.stop(t)
	w.clock.Advance(time.Hour) // lease and grace long over
	n.start(t, w.clock)
	// Checked at once, before the first reaper tick.
	if got := n.sliverState("ucb_a"); got == string(sliver.Running) {
		t.Errorf("after a restart an hour past its lease's end, recovery started sliver ucb_a again (state %s)", got)
	}
}

// TestAttackRedeemInSkewWindow. Attack: present a ticket just after its
// end, inside the clock-skew allowance. Property: a ticket is redeemable
// only within its window, and bad input gets a clear error: the refusal
// must say the ticket expired, and leave nothing behind.
func TestAttackRedeemInSkewWindow(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, time.Hour)
	issued := w.plc.Tickets(w.alice, "ucb_a", api.Resources{}, n.host)[0]
	before := hostState(t, n)
	w.clock.Advance(issued.NotAfter.Sub(w.clock.Now()) + 30*time.Second)
	_, err := w.redeem(w.alice, n, issued.Ticket)
	mustErr(t, "redeem 30 s after the ticket's end", err, errdefs.ErrExpired)
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
	}
}

// TestAttackRedeemOnceAcrossDeleteAndRestart. Attack: redeem a ticket,
// delete the sliver (so no lease holds the name), restart the node, and
// present the same ticket again. Property: a ticket is redeemable only
// once, durably.
func TestAttackRedeemOnceAcrossDeleteAndRestart(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	tk := w.ticket(w.alice, "ucb_a", n, api.Resources{})
	if _, err := w.redeem(w.alice, n, tk); err != nil {
		t.Fatal(err)
	}
	if err := w.client(w.alice, n).Do(ctx, "DELETE", "/v1/slivers/ucb_a", nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err := w.redeem(w.alice, n, tk)
	mustErr(t, "redeem again after delete", err, errdefs.ErrConflict)
	n.stop(t)
	n.start(t, w.clock)
	_, err = w.redeem(w.alice, n, tk)
	mustErr(t, "redeem again after delete and restart", err, errdefs.ErrConflict)
	if got := n.sliverState("ucb_a"); got != "" {
		t.Errorf("sliver ucb_a = %q after the refused re-redemptions, want none", got)
	}
}

// TestAttackTicketNotYetValid. Attack: redeem a ticket before its
// validity window opens (PLC's clock ahead). Property: a ticket is
// redeemable only within its window; the early attempt does not use it up.
func TestAttackTicketNotYetValid(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	w.plc.Advance(2 * time.Hour)
	tk := w.ticket(w.alice, "ucb_a", n, api.Resources{})
	before := hostState(t, n)
	_, err := w.redeem(w.alice, n, tk)
	mustErr(t, "redeem two hours early", err, errdefs.ErrExpired)
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
	}
	w.clock.Advance(2 * time.Hour)
	if _, err := w.redeem(w.alice, n, tk); err != nil {
		t.Errorf("redeem once the window opened: %v", err)
	}
}

// TestAttackRenewBounds. Attacks on renewlease: renew past the ticket's
// end; renew with someone else's ticket, another node's ticket, another
// slice's ticket; renew as a stranger. Property: renewals never extend
// beyond the ticket's end, and only the lease's principal (or a sliver
// key) renews, with tickets that name them, this node and this slice.
func TestAttackRenewBounds(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: Config{MaxLease: Duration(10 * time.Minute)}})
	n := w.node
	bob := attackUser(t, w, "bob@ucb.test")
	w.plc.Node("n2.ucb.test", "ucb")
	w.plc.Slice("ucb_a", "direct", w.alice, 15*time.Minute)
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_a/members/"+bob.Email, nil, nil)
	w.plc.Slice("ucb_b", "direct", w.alice, 24*time.Hour)
	issued := w.plc.Tickets(w.alice, "ucb_a", api.Resources{}, n.host)[0]
	if _, err := w.redeem(w.alice, n, issued.Ticket); err != nil {
		t.Fatal(err)
	}
	alice := w.client(w.alice, n)

	w.clock.Advance(9 * time.Minute)
	var r api.Lease
	if err := alice.Do(ctx, "POST", "/v1/slivers/ucb_a/renew", nil, &r); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if r.NotAfter.After(issued.NotAfter) {
		t.Errorf("renewed lease ends %s, past its ticket's end %s", r.NotAfter, issued.NotAfter)
	}

	// Longer tickets, but not alice's, not this node's, not this slice's.
	w.plc.Do(w.plc.Admin, "POST", "/v1/slices/ucb_a/renew", api.Renewal{Expires: w.plc.Now().Add(24 * time.Hour)}, nil)
	bobs := w.ticket(bob, "ucb_a", n, api.Resources{})
	otherNode := w.plc.Tickets(w.alice, "ucb_a", api.Resources{}, "n2.ucb.test")[0].Ticket
	otherSlice := w.ticket(w.alice, "ucb_b", n, api.Resources{})
	for _, tc := range []struct {
		name   string
		c      *api.Client
		ticket string
		want   error
	}{
		{"bob's ticket presented by alice", alice, bobs, errdefs.ErrDenied},
		{"another node's ticket", alice, otherNode, errdefs.ErrDenied},
		{"another slice's ticket", alice, otherSlice, errdefs.ErrInvalid},
		{"bob (not a sliver key) with his own ticket", w.client(bob, n), bobs, errdefs.ErrDenied},
	} {
		err := tc.c.Do(ctx, "POST", "/v1/slivers/ucb_a/renew", api.LeaseRenewal{Ticket: tc.ticket}, nil)
		mustErr(t, "renew with "+tc.name, err, tc.want)
	}
	st, err := n.n.M.Status(ctx, "ucb_a", "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Lease.NotAfter.After(issued.NotAfter) {
		t.Errorf("after refused renewals the lease ends %s, past its ticket's end %s", st.Lease.NotAfter, issued.NotAfter)
	}
}

// TestAttackPathTricks. Attack: sliver names and key fingerprints that try
// to leave the node's state (../, encoded slashes, NUL) on every route.
// Property: a user cannot make the node act outside its state; each gets
// a clear refusal and nothing changes.
func TestAttackPathTricks(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	before := hostState(t, n)
	c := w.client(w.alice, n)
	for _, name := range []string{"..%2F..%2Fetc", "ucb_a%2F..%2Fucb_a", "%2e%2e", "ucb_a%00", "UCB_A", "ucb_a%20"} {
		for _, tc := range []struct{ method, path string }{
			{"GET", "/v1/slivers/" + name},
			{"DELETE", "/v1/slivers/" + name},
			{"POST", "/v1/slivers/" + name + "/renew"},
			{"GET", "/v1/slivers/" + name + "/keys"},
		} {
			err := c.Do(ctx, tc.method, tc.path, nil, nil)
			if err == nil || api.CodeOf(err) == api.CodeInternal {
				t.Errorf("%s %s = %v, want a refusal", tc.method, tc.path, err)
			}
		}
	}
	for _, fp := range []string{"..%2F..%2Fetc%2Fpasswd", "SHA256:..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2F..", "SHA256:%00"} {
		err := c.Do(ctx, "DELETE", "/v1/slivers/ucb_a/keys/"+fp, nil, nil)
		mustErr(t, "delkey "+fp, err, errdefs.ErrInvalid)
	}
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("path tricks changed the node (-before +after):\n%s", diff)
	}
	if got := n.sliverState("ucb_a"); got != string(sliver.Running) {
		t.Errorf("ucb_a = %q after the path tricks, want running", got)
	}
}

// TestAttackOversizedBodies. Attack: signed requests with bodies far over
// the limit, on redemption and addkey. Property: oversized bodies get a
// clear refusal and change nothing.
func TestAttackOversizedBodies(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	before := hostState(t, n)
	c := w.client(w.alice, n)
	big := strings.Repeat("A", 4<<20)
	mustErr(t, "redeem with a 4 MiB ticket", c.Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: big}, nil), errdefs.ErrInvalid)
	mustErr(t, "addkey with a 4 MiB key", c.Do(ctx, "POST", "/v1/slivers/ucb_a/keys", api.SSHKey{Key: "ssh-ed25519 " + big}, nil), errdefs.ErrInvalid)
	mustErr(t, "renew with a 4 MiB ticket", c.Do(ctx, "POST", "/v1/slivers/ucb_a/renew", api.LeaseRenewal{Ticket: big}, nil), errdefs.ErrInvalid)
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("oversized requests changed the node (-before +after):\n%s", diff)
	}
	if keys, _ := n.n.M.AuthorizedKeys("ucb_a"); len(keys) != 1 {
		t.Errorf("ucb_a has %d keys, want alice's only", len(keys))
	}
}

// TestAttackSecretsNotEchoed. Attack: users paste a private key where a
// public key belongs (addkey body, Plab-Key header), and send tampered
// signatures and tickets. Property: no secret (private key, request
// signature, ticket signature) appears in an answer or in the node's log.
func TestAttackSecretsNotEchoed(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	tk := w.ticket(w.alice, "ucb_a", n, api.Resources{}) // tampered with below

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(block))
	privLines := strings.Split(strings.TrimSpace(privPEM), "\n")
	privBody := strings.Join(privLines[1:len(privLines)-1], "")

	var logs bytes.Buffer
	var logMu sync.Mutex
	h := (&API{M: n.n.M, Log: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))}).Handler()
	var secrets []string
	do := func(method, path, body string, edit func(*http.Request)) string {
		t.Helper()
		req := httptest.NewRequestWithContext(context.Background(), method, "https://"+n.addr+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set(api.KeyHeader, w.alice.Pub)
		if err := httpsig.Sign(req, w.alice.ID, w.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if sig := req.Header.Get("Signature"); sig != "" {
			s := strings.TrimSuffix(strings.TrimPrefix(sig, "plab=:"), ":")
			secrets = append(secrets, s[:40])
		}
		if edit != nil {
			edit(req)
		}
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		return rr.Body.String()
	}
	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	var answers []string
	answers = append(answers,
		do("POST", "/v1/slivers/ucb_a/keys", `{"key":`+quote(privPEM)+`}`, nil),
		do("POST", "/v1/slivers/ucb_a/keys", `{"key":`+quote(strings.ReplaceAll(privPEM, "\n", " "))+`}`, nil),
		do("GET", "/v1/slivers", "", func(r *http.Request) {
			r.Header.Set(api.KeyHeader, strings.ReplaceAll(strings.TrimSpace(privPEM), "\n", " "))
		}),
		do("GET", "/v1/slivers", "", func(r *http.Request) { r.Header.Set(api.KeyHeader, "ssh-ed25519 "+privBody) }),
		// A changed path: the signature no longer holds.
		do("POST", "/v1/slivers/ucb_a/keys", `{"key":"x"}`, func(r *http.Request) { r.URL.Path = "/v1/slivers/ucb_b/keys" }),
	)
	// A ticket whose signature was changed, and one whose payload was.
	sigStart := strings.LastIndexByte(tk, '.') + 1
	badSig := tk[:sigStart] + flip(tk[sigStart:])
	secrets = append(secrets, tk[sigStart:sigStart+40])
	answers = append(answers,
		do("POST", "/v1/leases", `{"ticket":`+quote(badSig)+`}`, nil),
		do("POST", "/v1/leases", `{"ticket":`+quote(flipAt(tk, strings.IndexByte(tk, '.')+12))+`}`, nil),
	)
	secrets = append(secrets, privBody[20:60])

	logMu.Lock()
	logText := logs.String()
	logMu.Unlock()
	for _, s := range secrets {
		for i, a := range answers {
			if strings.Contains(a, s) {
				t.Errorf("answer %d quotes a secret (%.12s…): %s", i, s, a)
			}
		}
		if strings.Contains(logText, s) {
			t.Errorf("the node's log quotes a secret (%.12s…)", s)
		}
	}
	t.Logf("answers:\n%s", strings.Join(answers, ""))
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// flip changes the first character of s to another base64url character.
func flip(s string) string { return flipAt(s, 0) }

func flipAt(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestAttackDelegatedUserCannotManage. Attack: a member of a delegated
// slice tries, at the node, to delete its sliver, add a key, remove a key,
// and a stranger tries to read it. Property: a delegated slice's sliver is
// managed by PLC only.
func TestAttackDelegatedUserCannotManage(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	mallory := plctest.NewUser(t, "mallory@evil.test")
	w.plc.Slice("ucb_cdn", "delegated", w.alice, 7*24*time.Hour)
	w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/ucb_cdn/nodes/"+n.host, nil, nil)
	eventually(t, 5*time.Second, "delegated sliver running under an active lease", func() bool {
		st, err := n.n.M.Status(ctx, "ucb_cdn", "")
		return err == nil && st.State == string(sliver.Running)
	})
	before := hostState(t, n)
	c := w.client(w.alice, n)
	mustErr(t, "delete by a member", c.Do(ctx, "DELETE", "/v1/slivers/ucb_cdn", nil, nil), errdefs.ErrDenied)
	mustErr(t, "addkey by a member", c.Do(ctx, "POST", "/v1/slivers/ucb_cdn/keys", api.SSHKey{Key: mallory.Pub}, nil), errdefs.ErrDenied)
	mustErr(t, "delkey by a member", c.Do(ctx, "DELETE", "/v1/slivers/ucb_cdn/keys/"+url.PathEscape(string(w.alice.Fingerprint())), nil, nil), errdefs.ErrDenied)
	mustErr(t, "status by a stranger", w.client(mallory, n).Do(ctx, "GET", "/v1/slivers/ucb_cdn", nil, nil), errdefs.ErrDenied)
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("member requests changed the node (-before +after):\n%s", diff)
	}
	if keys, _ := n.n.M.AuthorizedKeys("ucb_cdn"); len(keys) != 1 || keys[0] != w.alice.Pub {
		t.Errorf("delegated sliver keys = %q, want alice's from PLC", keys)
	}
}

// TestAttackUnbuildableResources. Attack: a ticket with resources PLC
// accepts but the host cannot apply (a process limit beyond the kernel's
// pid_max). Property: bad input gets a clear error (not "internal error")
// and leaves nothing half-created.
func TestAttackUnbuildableResources(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	before := hostState(t, n)
	_, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{Pids: 1 << 40}))
	if code := api.CodeOf(err); err == nil || code == api.CodeInternal {
		t.Errorf("redeem with pids=2^40 = %v (code %s), want a clear refusal saying what to change", err, code)
	}
	if diff := cmp.Diff(before, hostState(t, n)); diff != "" {
		t.Errorf("the refused redemption changed the node (-before +after):\n%s", diff)
	}
}

// TestAttackConcurrentAdmission. Attack: race redemptions whose CPU
// reservations each fit alone but not together. Property: guarantees are
// never oversubscribed, however requests interleave.
func TestAttackConcurrentAdmission(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	capa := n.n.M.Capacity()
	each := capa.CPUReserve / 3
	names := []string{"ucb_r1", "ucb_r2", "ucb_r3", "ucb_r4", "ucb_r5", "ucb_r6"}
	tickets := map[string]string{}
	for _, s := range names {
		w.plc.Slice(s, "direct", w.alice, 24*time.Hour)
		tickets[s] = w.ticket(w.alice, s, n, api.Resources{CPUReserve: each})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for _, s := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.redeem(w.alice, n, tickets[s])
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				admitted++
			} else if api.CodeOf(err) != api.CodeNoCapacity {
				t.Errorf("redeem %s = %v, want success or %s", s, err, api.CodeNoCapacity)
			}
		}()
	}
	wg.Wait()
	if admitted > 3 {
		t.Errorf("%d reservations of %d millicores admitted on a node with %d: oversubscribed", admitted, each, capa.CPUReserve)
	}
	if free := n.n.M.Free().CPUReserve; free < 0 {
		t.Errorf("unreserved CPU = %d, want >= 0", free)
	}
}

// TestAttackConcurrentDoubleRedemption. Attack: present one ticket eight
// times at once. Property: a ticket is redeemable only once.
func TestAttackConcurrentDoubleRedemption(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	tk := w.ticket(w.alice, "ucb_a", n, api.Resources{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var leases []string
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := w.redeem(w.alice, n, tk)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				leases = append(leases, l.ID)
			} else if !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("concurrent redemption = %v, want success or %v", err, errdefs.ErrConflict)
			}
		}()
	}
	wg.Wait()
	if len(leases) != 1 {
		t.Errorf("one ticket presented 8 times at once gave %d leases, want 1", len(leases))
	}
}

// TestAttackSlowBodyDoesNotLockSliver. Attack: send a signed renew of
// alice's sliver whose body never finishes, hoping the node holds the
// sliver's lock while it waits. Property: one request cannot lock a
// sliver: alice's delete still completes at once.
func TestAttackSlowBodyDoesNotLockSliver(t *testing.T) {
	w := newWorld(t, worldOpts{})
	n := w.node
	w.plc.Slice("ucb_a", "direct", w.alice, 24*time.Hour)
	if _, err := w.redeem(w.alice, n, w.ticket(w.alice, "ucb_a", n, api.Resources{})); err != nil {
		t.Fatal(err)
	}
	body := `{"ticket":""}`
	req, err := http.NewRequest("POST", n.url+"/v1/slivers/ucb_a/renew", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.KeyHeader, w.alice.Pub)
	if err := httpsig.Sign(req, w.alice.ID, w.clock.Now()); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req.Body, req.GetBody, req.ContentLength = pr, nil, int64(len(body))
	sent := make(chan struct{})
	go func() { _, _ = pw.Write([]byte(body[:3])); close(sent) }() // and then nothing
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: w.plc.TLSConfigFor(n.host)}}
	go func() {
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-sent // the transport took the start of the body: the request is under way

	done := make(chan error, 1)
	go func() { done <- w.client(w.alice, n).Do(ctx, "DELETE", "/v1/slivers/ucb_a", nil, nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("delete while a slow request is open: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delete did not finish within 10 s while a slow request was open: the sliver is locked")
	}
}
