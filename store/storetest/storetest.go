// Package storetest is the conformance suite of the PLC store: every back
// end (SQLite, PostgreSQL) must pass Run. It checks what PLC relies on:
// each object's round trip, not-found, conflicts and unknown references as
// the right error kinds, listings with filters and pages, transactions that
// leave nothing behind when they fail, concurrent writers losing nothing,
// and the audit log.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// Open returns a fresh, empty, migrated store for one test; the suite
// closes it.
type Open func(t *testing.T) *store.Store

// Run runs the suite.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *store.Store)
	}{
		{"Migrate", testMigrate},
		{"Sites", testSites},
		{"PersonsAndKeys", testPersons},
		{"Nodes", testNodes},
		{"Slices", testSlices},
		{"Tickets", testTickets},
		{"Rollback", testRollback},
		{"ConcurrentWriters", testConcurrent},
		{"Pages", testPages},
		{"Attributes", testAttributes},
		{"Delegation", testDelegation},
		{"EnrollTokens", testEnrollTokens},
		{"Reports", testReports},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

func update(t *testing.T, s *store.Store, fn func(*store.Tx) error) {
	t.Helper()
	if err := s.Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, s *store.Store, fn func(*store.Tx) error) {
	t.Helper()
	if err := s.View(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s = %v, want %v", what, err, kind)
	}
}

var errFailed = errors.New("this write fails on purpose")

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func site(lb string) *store.Site {
	return &store.Site{LoginBase: lb, Name: "Site " + lb, MaxSlices: 10, MaxSlivers: 100, Enabled: true, Created: t0}
}

func testMigrate(t *testing.T, s *store.Store) {
	v, err := s.Version(ctx)
	if err != nil || v != store.SchemaVersion {
		t.Errorf("Version() = %d, %v; want %d", v, err, store.SchemaVersion)
	}
}

func testSites(t *testing.T, s *store.Store) {
	a := site("princeton")
	update(t, s, func(tx *store.Tx) error { return tx.CreateSite(ctx, a) })
	if a.ID == 0 {
		t.Fatal("CreateSite left ID 0")
	}
	wantKind(t, "CreateSite(duplicate login base)", s.Update(ctx, func(tx *store.Tx) error { return tx.CreateSite(ctx, site("princeton")) }), errdefs.ErrConflict)
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Site(ctx, "princeton")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("Site round trip (-want +got):\n%s", diff)
		}
		_, err = tx.Site(ctx, "mit")
		wantKind(t, "Site(missing)", err, errdefs.ErrNotFound)
		return nil
	})
	a.Name, a.MaxSlices, a.Enabled = "Princeton University", 20, false
	update(t, s, func(tx *store.Tx) error { return tx.UpdateSite(ctx, a) })
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.SiteByID(ctx, a.ID)
		if err == nil && !cmp.Equal(a, got) {
			t.Errorf("after UpdateSite, SiteByID = %+v, want %+v", got, a)
		}
		return err
	})
	wantKind(t, "UpdateSite(missing)", s.Update(ctx, func(tx *store.Tx) error { return tx.UpdateSite(ctx, &store.Site{ID: 9999, LoginBase: "x"}) }), errdefs.ErrNotFound)
	// A site still referred to cannot go.
	update(t, s, func(tx *store.Tx) error {
		return tx.CreateNode(ctx, &store.Node{Hostname: "n1.princeton.edu", SiteID: a.ID, BootState: "boot"})
	})
	wantKind(t, "DeleteSite(with a node)", s.Update(ctx, func(tx *store.Tx) error { return tx.DeleteSite(ctx, "princeton") }), errdefs.ErrNotFound)
	update(t, s, func(tx *store.Tx) error {
		if err := tx.DeleteNode(ctx, "n1.princeton.edu"); err != nil {
			return err
		}
		return tx.DeleteSite(ctx, "princeton")
	})
	wantKind(t, "DeleteSite(gone)", s.Update(ctx, func(tx *store.Tx) error { return tx.DeleteSite(ctx, "princeton") }), errdefs.ErrNotFound)
}

func testPersons(t *testing.T, s *store.Store) {
	a := site("mit")
	p := &store.Person{Email: "pi@mit.edu", Name: "A PI", Roles: []store.Role{store.RolePI, store.RoleUser}, Enabled: true, Created: t0}
	admin := &store.Person{Email: "admin@plab.test", Name: "Admin", Roles: []store.Role{store.RoleAdmin}, Enabled: true, Created: t0}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		p.SiteID = a.ID
		if err := tx.CreatePerson(ctx, p); err != nil {
			return err
		}
		return tx.CreatePerson(ctx, admin)
	})
	wantKind(t, "CreatePerson(duplicate email)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreatePerson(ctx, &store.Person{Email: "pi@mit.edu", Name: "x"})
	}), errdefs.ErrConflict)
	wantKind(t, "CreatePerson(unknown site)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreatePerson(ctx, &store.Person{Email: "x@y.z", Name: "x", SiteID: 424242})
	}), errdefs.ErrNotFound)
	k := &store.Key{Fingerprint: "SHA256:aaaa", PersonID: p.ID, PublicKey: "ssh-ed25519 AAAA", Created: t0}
	update(t, s, func(tx *store.Tx) error { return tx.AddKey(ctx, k) })
	wantKind(t, "AddKey(same fingerprint, other person)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.AddKey(ctx, &store.Key{Fingerprint: "SHA256:aaaa", PersonID: admin.ID, PublicKey: "ssh-ed25519 AAAA"})
	}), errdefs.ErrConflict)
	wantKind(t, "AddKey(unknown person)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.AddKey(ctx, &store.Key{Fingerprint: "SHA256:bbbb", PersonID: 424242, PublicKey: "x"})
	}), errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Person(ctx, "pi@mit.edu")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("Person round trip (-want +got):\n%s", diff)
		}
		if !got.Has(store.RolePI) || got.Has(store.RoleAdmin) {
			t.Errorf("roles %v: Has(pi), !Has(admin) expected", got.Roles)
		}
		gk, owner, err := tx.KeyOwner(ctx, "SHA256:aaaa")
		if err != nil || owner.Email != "pi@mit.edu" || !cmp.Equal(gk, k) {
			t.Errorf("KeyOwner = %+v, %+v, %v", gk, owner, err)
		}
		ps, err := tx.ListPersons(ctx, a.ID, store.Page{})
		if err != nil || len(ps) != 1 || ps[0].Email != "pi@mit.edu" {
			t.Errorf("ListPersons(site mit) = %v, %v", ps, err)
		}
		all, err := tx.ListPersons(ctx, 0, store.Page{})
		if err != nil || len(all) != 2 {
			t.Errorf("ListPersons(all) = %d people, %v; want 2", len(all), err)
		}
		return nil
	})
	// Deleting a person takes their keys along.
	update(t, s, func(tx *store.Tx) error { return tx.DeletePerson(ctx, "pi@mit.edu") })
	view(t, s, func(tx *store.Tx) error {
		_, _, err := tx.KeyOwner(ctx, "SHA256:aaaa")
		wantKind(t, "KeyOwner(after DeletePerson)", err, errdefs.ErrNotFound)
		return nil
	})
}

func testNodes(t *testing.T, s *store.Store) {
	a := site("ucb")
	n := &store.Node{Hostname: "n1.ucb.edu", Addresses: []string{"198.18.0.1"}, BootState: "boot", Key: "SHA256:k",
		Tags: map[string]string{"arch": "x86_64", "region": "us-west"}, Capacity: json.RawMessage(`{"cpus":2}`), Created: t0,
		SSHHostKey: "ssh-ed25519 AAAAold", SSHPort: 22, APIPort: 8140}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		n.SiteID = a.ID
		if err := tx.CreateNode(ctx, n); err != nil {
			return err
		}
		return tx.CreateNode(ctx, &store.Node{Hostname: "n2.ucb.edu", SiteID: a.ID, BootState: "safeboot", Tags: map[string]string{"region": "us-east"}})
	})
	wantKind(t, "CreateNode(duplicate hostname)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateNode(ctx, &store.Node{Hostname: "n1.ucb.edu", SiteID: a.ID, BootState: "boot"})
	}), errdefs.ErrConflict)
	wantKind(t, "CreateNode(unknown site)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateNode(ctx, &store.Node{Hostname: "n9.ucb.edu", SiteID: 424242, BootState: "boot"})
	}), errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Node(ctx, "n1.ucb.edu")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(n, got); diff != "" {
			t.Errorf("Node round trip (-want +got):\n%s", diff)
		}
		for _, tc := range []struct {
			f    store.NodeFilter
			want int
		}{
			{store.NodeFilter{}, 2},
			{store.NodeFilter{SiteID: a.ID}, 2},
			{store.NodeFilter{BootState: "boot"}, 1},
			{store.NodeFilter{Tag: "region", Value: "us-east"}, 1},
			{store.NodeFilter{Tag: "arch", Value: "x86_64", BootState: "safeboot"}, 0},
			{store.NodeFilter{Tag: "region", Value: "mars"}, 0},
		} {
			got, err := tx.ListNodes(ctx, tc.f, store.Page{})
			if err != nil || len(got) != tc.want {
				t.Errorf("ListNodes(%+v) = %d nodes, %v; want %d", tc.f, len(got), err, tc.want)
			}
		}
		return nil
	})
	n.BootState, n.Tags = "disabled", map[string]string{"arch": "arm64"}
	n.LastContact = t0.Add(time.Hour)
	update(t, s, func(tx *store.Tx) error { return tx.UpdateNode(ctx, n) })
	update(t, s, func(tx *store.Tx) error { return tx.TouchNode(ctx, "n1.ucb.edu", t0.Add(2*time.Hour)) })
	update(t, s, func(tx *store.Tx) error { return tx.SetNodeSSH(ctx, "n1.ucb.edu", "ssh-ed25519 AAAAnew", 2222) })
	update(t, s, func(tx *store.Tx) error { return tx.SetNodeAPIPort(ctx, "n1.ucb.edu", 8443) })
	n.LastContact = t0.Add(2 * time.Hour)
	n.SSHHostKey, n.SSHPort, n.APIPort = "ssh-ed25519 AAAAnew", 2222, 8443
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Node(ctx, "n1.ucb.edu")
		if err == nil && !cmp.Equal(n, got) {
			t.Errorf("after UpdateNode, TouchNode, SetNodeSSH and SetNodeAPIPort: %s", cmp.Diff(n, got))
		}
		return err
	})
	wantKind(t, "TouchNode(missing)", s.Update(ctx, func(tx *store.Tx) error { return tx.TouchNode(ctx, "nope", t0) }), errdefs.ErrNotFound)
	wantKind(t, "SetNodeSSH(missing)", s.Update(ctx, func(tx *store.Tx) error { return tx.SetNodeSSH(ctx, "nope", "", 0) }), errdefs.ErrNotFound)
	wantKind(t, "SetNodeAPIPort(missing)", s.Update(ctx, func(tx *store.Tx) error { return tx.SetNodeAPIPort(ctx, "nope", 1) }), errdefs.ErrNotFound)
}

func testSlices(t *testing.T, s *store.Store) {
	a := site("cmu")
	p := &store.Person{Email: "u@cmu.edu", Name: "U", Roles: []store.Role{store.RoleUser}, Enabled: true}
	sl := &store.Slice{Name: "cmu_exp", Description: "an experiment", URL: "https://cmu.edu/exp", Instantiation: "direct",
		Enabled: true, MaxNodes: 100, Expires: t0.Add(14 * 24 * time.Hour), Created: t0}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		p.SiteID, sl.SiteID = a.ID, a.ID
		if err := tx.CreatePerson(ctx, p); err != nil {
			return err
		}
		if err := tx.CreateSlice(ctx, sl); err != nil {
			return err
		}
		return tx.AddMember(ctx, sl.ID, p.ID)
	})
	wantKind(t, "CreateSlice(duplicate)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateSlice(ctx, &store.Slice{Name: "cmu_exp", SiteID: a.ID, Instantiation: "direct"})
	}), errdefs.ErrConflict)
	wantKind(t, "AddMember(twice)", s.Update(ctx, func(tx *store.Tx) error { return tx.AddMember(ctx, sl.ID, p.ID) }), errdefs.ErrConflict)
	wantKind(t, "AddMember(unknown person)", s.Update(ctx, func(tx *store.Tx) error { return tx.AddMember(ctx, sl.ID, 424242) }), errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Slice(ctx, "cmu_exp")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(sl, got); diff != "" {
			t.Errorf("Slice round trip (-want +got):\n%s", diff)
		}
		ms, err := tx.Members(ctx, sl.ID)
		if err != nil || len(ms) != 1 || ms[0].Email != "u@cmu.edu" {
			t.Errorf("Members = %v, %v", ms, err)
		}
		mine, err := tx.ListSlices(ctx, store.SliceFilter{MemberID: p.ID}, store.Page{})
		if err != nil || len(mine) != 1 {
			t.Errorf("ListSlices(member) = %v, %v", mine, err)
		}
		n, err := tx.CountSlices(ctx, a.ID)
		if err != nil || n != 1 {
			t.Errorf("CountSlices = %d, %v; want 1", n, err)
		}
		return nil
	})
	sl.Enabled, sl.Expires = false, t0.Add(28*24*time.Hour)
	update(t, s, func(tx *store.Tx) error { return tx.UpdateSlice(ctx, sl) })
	update(t, s, func(tx *store.Tx) error { return tx.RemoveMember(ctx, sl.ID, p.ID) })
	wantKind(t, "RemoveMember(not a member)", s.Update(ctx, func(tx *store.Tx) error { return tx.RemoveMember(ctx, sl.ID, p.ID) }), errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Slice(ctx, "cmu_exp")
		if err == nil && !cmp.Equal(sl, got) {
			t.Errorf("after UpdateSlice: %s", cmp.Diff(sl, got))
		}
		return err
	})
}

func testTickets(t *testing.T, s *store.Store) {
	a := site("uw")
	n := &store.Node{Hostname: "n1.uw.edu", BootState: "boot"}
	sl := &store.Slice{Name: "uw_x", Instantiation: "direct", Enabled: true, Expires: t0.Add(time.Hour)}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		n.SiteID, sl.SiteID = a.ID, a.ID
		if err := tx.CreateNode(ctx, n); err != nil {
			return err
		}
		return tx.CreateSlice(ctx, sl)
	})
	var recs []*store.TicketRecord
	for i := range 3 {
		r := &store.TicketRecord{ID: fmt.Sprintf("t%d", i), Slice: "uw_x", NodeID: n.ID, Principal: "SHA256:p", Doc: "doc",
			NotBefore: t0, NotAfter: t0.Add(time.Hour), Created: t0.Add(time.Duration(i) * time.Second)}
		recs = append(recs, r)
		update(t, s, func(tx *store.Tx) error { return tx.InsertTicket(ctx, r) })
	}
	wantKind(t, "InsertTicket(same id)", s.Update(ctx, func(tx *store.Tx) error { return tx.InsertTicket(ctx, recs[0]) }), errdefs.ErrConflict)
	wantKind(t, "InsertTicket(unknown node)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.InsertTicket(ctx, &store.TicketRecord{ID: "tx", Slice: "uw_x", NodeID: 424242})
	}), errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.Ticket(ctx, "t1")
		if err == nil && !cmp.Equal(recs[1], got) {
			t.Errorf("Ticket round trip: %s", cmp.Diff(recs[1], got))
		}
		all, err := tx.Tickets(ctx, "uw_x")
		if err != nil || len(all) != 3 || all[0].ID != "t0" {
			t.Errorf("Tickets(uw_x) = %v, %v", all, err)
		}
		return nil
	})
	view(t, s, func(tx *store.Tx) error {
		for _, tc := range []struct {
			at   time.Time
			want int
		}{{t0, 1}, {t0.Add(2 * time.Hour), 0}} {
			n, err := tx.CountSlivers(ctx, a.ID, tc.at)
			if err != nil || n != tc.want {
				t.Errorf("CountSlivers at %s = %d, %v; want %d (three tickets, one node)", tc.at, n, err, tc.want)
			}
		}
		return nil
	})
	// Deleting the slice revokes its tickets, which stay for the nodes.
	update(t, s, func(tx *store.Tx) error { return tx.DeleteSlice(ctx, "uw_x") })
	view(t, s, func(tx *store.Tx) error {
		all, err := tx.Tickets(ctx, "uw_x")
		if err != nil || len(all) != 3 {
			t.Fatalf("Tickets after DeleteSlice = %v, %v", all, err)
		}
		if n, err := tx.CountSlivers(ctx, a.ID, t0); err != nil || n != 0 {
			t.Errorf("CountSlivers after DeleteSlice = %d, %v; want 0", n, err)
		}
		for _, r := range all {
			if !r.Revoked {
				t.Errorf("ticket %s not revoked after its slice was deleted", r.ID)
			}
		}
		return nil
	})
}

// testRollback: a failing transaction leaves nothing, audit included.
func testRollback(t *testing.T, s *store.Store) {
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, site("rolled")); err != nil {
			return err
		}
		if err := tx.Audit(ctx, store.Event{Actor: "admin", Action: "site.create", Object: "rolled"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	// A constraint failure half way through undoes the first write too.
	err = s.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, site("half")); err != nil {
			return err
		}
		return tx.CreateNode(ctx, &store.Node{Hostname: "x", SiteID: 424242, BootState: "boot"})
	})
	wantKind(t, "Update(second write fails)", err, errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		for _, lb := range []string{"rolled", "half"} {
			_, err := tx.Site(ctx, lb)
			wantKind(t, "Site("+lb+") after rollback", err, errdefs.ErrNotFound)
		}
		evs, err := tx.Events(ctx, store.Page{})
		if err != nil || len(evs) != 0 {
			t.Errorf("events after rollback = %v, %v; want none", evs, err)
		}
		return nil
	})
	update(t, s, func(tx *store.Tx) error {
		return tx.Audit(ctx, store.Event{At: t0, Actor: "admin@plab.test", Action: "site.create", Object: "kept", Result: "ok"})
	})
	view(t, s, func(tx *store.Tx) error {
		evs, err := tx.Events(ctx, store.Page{})
		want := []store.Event{{ID: evs[0].ID, At: t0, Actor: "admin@plab.test", Action: "site.create", Object: "kept", Result: "ok"}}
		if err != nil || !cmp.Equal(evs, want) {
			t.Errorf("Events = %v, %v; want %v", evs, err, want)
		}
		return nil
	})
	wantKind(t, "Audit(no actor)", s.Update(ctx, func(tx *store.Tx) error { return tx.Audit(ctx, store.Event{Action: "x"}) }), errdefs.ErrInvalid)
}

// testConcurrent: many writers at once; every acknowledged write is there.
func testConcurrent(t *testing.T, s *store.Store) {
	a := site("conc")
	update(t, s, func(tx *store.Tx) error { return tx.CreateSite(ctx, a) })
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := s.Update(ctx, func(tx *store.Tx) error {
					n := &store.Node{Hostname: fmt.Sprintf("n%d-%d.conc", w, i), SiteID: a.ID, BootState: "boot"}
					if err := tx.CreateNode(ctx, n); err != nil {
						return err
					}
					if i%5 == 4 {
						return errFailed // after a write: it must not remain
					}
					return tx.Audit(ctx, store.Event{Actor: "test", Action: "node.create", Object: n.Hostname})
				})
				if i%5 == 4 {
					if !errors.Is(err, errFailed) {
						err = fmt.Errorf("a failing write returned %v", err)
					} else {
						err = nil
					}
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	view(t, s, func(tx *store.Tx) error {
		var total int
		for p := (store.Page{Limit: 50}); ; {
			ns, err := tx.ListNodes(ctx, store.NodeFilter{SiteID: a.ID}, p)
			if err != nil {
				return err
			}
			if len(ns) == 0 {
				break
			}
			total += len(ns)
			p.After = ns[len(ns)-1].ID
		}
		if want := writers * each * 4 / 5; total != want {
			t.Errorf("%d nodes after %d acknowledged creations (and %d failed ones)", total, want, writers*each/5)
		}
		return nil
	})
}

func testPages(t *testing.T, s *store.Store) {
	update(t, s, func(tx *store.Tx) error {
		for i := range 25 {
			if err := tx.CreateSite(ctx, site(fmt.Sprintf("s%02d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx *store.Tx) error {
		var seen []string
		for p := (store.Page{Limit: 10}); ; {
			ss, err := tx.ListSites(ctx, p)
			if err != nil {
				return err
			}
			if len(ss) > 10 {
				t.Fatalf("page of %d, limit 10", len(ss))
			}
			if len(ss) == 0 {
				break
			}
			for _, x := range ss {
				seen = append(seen, x.LoginBase)
			}
			p.After = ss[len(ss)-1].ID
		}
		if len(seen) != 25 || seen[0] != "s00" || seen[24] != "s24" {
			t.Errorf("paged through %v, want s00..s24 in order", seen)
		}
		all, err := tx.ListSites(ctx, store.Page{Limit: 5000})
		if err != nil || len(all) != 25 {
			t.Errorf("ListSites(limit above max) = %d, %v", len(all), err)
		}
		return nil
	})
}

// testAttributes: precedence node > node group > global.
func testAttributes(t *testing.T, s *store.Store) {
	a := site("attr")
	sl := &store.Slice{Name: "attr_x", Instantiation: "direct", Enabled: true}
	n1 := &store.Node{Hostname: "n1.attr", BootState: "boot", Tags: map[string]string{"region": "eu", "gpu": "yes"}}
	n2 := &store.Node{Hostname: "n2.attr", BootState: "boot", Tags: map[string]string{"region": "us"}}
	eu := &store.NodeGroup{Name: "europe", Tag: "region", Value: "eu"}
	gpu := &store.NodeGroup{Name: "gpus", Tag: "gpu", Value: "yes"}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		sl.SiteID, n1.SiteID, n2.SiteID = a.ID, a.ID, a.ID
		for _, n := range []*store.Node{n1, n2} {
			if err := tx.CreateNode(ctx, n); err != nil {
				return err
			}
		}
		for _, g := range []*store.NodeGroup{eu, gpu} {
			if err := tx.CreateNodeGroup(ctx, g); err != nil {
				return err
			}
		}
		if err := tx.CreateSlice(ctx, sl); err != nil {
			return err
		}
		for _, at := range []*store.Attribute{
			{SliceID: sl.ID, Name: "memory", Value: "256M"},
			{SliceID: sl.ID, Name: "memory", Value: "512M", NodeGroupID: eu.ID},
			{SliceID: sl.ID, Name: "memory", Value: "1G", NodeID: n1.ID},
			{SliceID: sl.ID, Name: "disk", Value: "1G"},
			{SliceID: sl.ID, Name: "disk", Value: "2G", NodeGroupID: eu.ID},
			{SliceID: sl.ID, Name: "disk", Value: "4G", NodeGroupID: gpu.ID},
			{SliceID: sl.ID, Name: "cpu", Value: "2", NodeGroupID: eu.ID},
		} {
			if err := tx.SetAttribute(ctx, at); err != nil {
				return err
			}
		}
		// Setting the same name and scope again replaces the value.
		return tx.SetAttribute(ctx, &store.Attribute{SliceID: sl.ID, Name: "memory", Value: "128M"})
	})
	wantKind(t, "SetAttribute(node and group)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.SetAttribute(ctx, &store.Attribute{SliceID: sl.ID, Name: "x", Value: "y", NodeID: n1.ID, NodeGroupID: eu.ID})
	}), errdefs.ErrInvalid)
	wantKind(t, "CreateNodeGroup(duplicate)", s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateNodeGroup(ctx, &store.NodeGroup{Name: "europe", Tag: "x", Value: "y"})
	}), errdefs.ErrConflict)
	view(t, s, func(tx *store.Tx) error {
		for _, tc := range []struct {
			node *store.Node
			want map[string]string
		}{
			{n1, map[string]string{"memory": "1G", "disk": "2G", "cpu": "2"}},
			{n2, map[string]string{"memory": "128M", "disk": "1G"}},
		} {
			got, err := tx.ResolveAttributes(ctx, sl.ID, tc.node)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ResolveAttributes(%s) (-want +got):\n%s", tc.node.Hostname, diff)
			}
		}
		all, err := tx.Attributes(ctx, sl.ID)
		if err != nil || len(all) != 7 {
			t.Errorf("Attributes = %d, %v; want 7", len(all), err)
		}
		return nil
	})
	update(t, s, func(tx *store.Tx) error { return tx.DeleteNodeGroup(ctx, "europe") })
	view(t, s, func(tx *store.Tx) error {
		got, err := tx.ResolveAttributes(ctx, sl.ID, n1)
		if err == nil && !cmp.Equal(got, map[string]string{"memory": "1G", "disk": "4G"}) {
			t.Errorf("after deleting the group, ResolveAttributes(n1) = %v", got)
		}
		return err
	})
}

// testDelegation: binding slices to nodes, and the change counter nodes
// long-poll on.
func testDelegation(t *testing.T, s *store.Store) {
	a := site("dlg")
	sl := &store.Slice{Name: "dlg_x", Instantiation: "delegated", Enabled: true}
	n1 := &store.Node{Hostname: "n1.dlg", BootState: "boot"}
	n2 := &store.Node{Hostname: "n2.dlg", BootState: "boot"}
	var c0, c1 int64
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		sl.SiteID, n1.SiteID, n2.SiteID = a.ID, a.ID, a.ID
		for _, n := range []*store.Node{n1, n2} {
			if err := tx.CreateNode(ctx, n); err != nil {
				return err
			}
		}
		if err := tx.CreateSlice(ctx, sl); err != nil {
			return err
		}
		var err error
		c0, err = tx.LatestChange(ctx, n1.ID)
		if err != nil {
			return err
		}
		if err := tx.BindNode(ctx, sl.ID, n1.ID); err != nil {
			return err
		}
		c1, err = tx.RecordChange(ctx, n1.ID)
		return err
	})
	wantKind(t, "BindNode(twice)", s.Update(ctx, func(tx *store.Tx) error { return tx.BindNode(ctx, sl.ID, n1.ID) }), errdefs.ErrConflict)
	view(t, s, func(tx *store.Tx) error {
		if got, _ := tx.LatestChange(ctx, n1.ID); got != c1 || c1 <= c0 {
			t.Errorf("LatestChange(n1) = %d, want %d (> %d)", got, c1, c0)
		}
		if got, _ := tx.LatestChange(ctx, n2.ID); got != c0 {
			t.Errorf("LatestChange(n2) = %d, want %d: n1's change is not n2's", got, c0)
		}
		ns, err := tx.SliceNodes(ctx, sl.ID)
		if err != nil || len(ns) != 1 || ns[0].Hostname != "n1.dlg" {
			t.Errorf("SliceNodes = %v, %v", ns, err)
		}
		ss, err := tx.NodeSlices(ctx, n1.ID)
		if err != nil || len(ss) != 1 || ss[0].Name != "dlg_x" {
			t.Errorf("NodeSlices(n1) = %v, %v", ss, err)
		}
		if n, err := tx.CountUngrantedBindings(ctx, a.ID, t0); err != nil || n != 1 {
			t.Errorf("CountUngrantedBindings before any ticket = %d, %v; want 1", n, err)
		}
		return nil
	})
	var all int64
	update(t, s, func(tx *store.Tx) error {
		var err error
		all, err = tx.RecordChange(ctx, 0)
		if err != nil {
			return err
		}
		// A ticket for the binding grants it: no longer ungranted.
		return tx.InsertTicket(ctx, &store.TicketRecord{ID: "dlg1", Slice: "dlg_x", NodeID: n1.ID, Principal: "SHA256:n", Doc: "d", NotBefore: t0, NotAfter: t0.Add(time.Hour)})
	})
	view(t, s, func(tx *store.Tx) error {
		if n, err := tx.CountUngrantedBindings(ctx, a.ID, t0); err != nil || n != 0 {
			t.Errorf("CountUngrantedBindings after a ticket = %d, %v; want 0", n, err)
		}
		return nil
	})
	view(t, s, func(tx *store.Tx) error {
		if got, _ := tx.LatestChange(ctx, n2.ID); got != all {
			t.Errorf("LatestChange(n2) after a change for every node = %d, want %d", got, all)
		}
		return nil
	})
	update(t, s, func(tx *store.Tx) error { return tx.UnbindNode(ctx, sl.ID, n1.ID) })
	wantKind(t, "UnbindNode(not bound)", s.Update(ctx, func(tx *store.Tx) error { return tx.UnbindNode(ctx, sl.ID, n1.ID) }), errdefs.ErrNotFound)
}

func testEnrollTokens(t *testing.T, s *store.Store) {
	a := site("enr")
	n := &store.Node{Hostname: "n1.enr", BootState: "boot"}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		n.SiteID = a.ID
		if err := tx.CreateNode(ctx, n); err != nil {
			return err
		}
		if err := tx.CreateEnrollToken(ctx, "h1", n.ID, t0.Add(time.Hour)); err != nil {
			return err
		}
		return tx.CreateEnrollToken(ctx, "h2", n.ID, t0.Add(time.Hour))
	})
	use := func(hash string, now time.Time) (int64, error) {
		var id int64
		err := s.Update(ctx, func(tx *store.Tx) error {
			var err error
			id, err = tx.UseEnrollToken(ctx, hash, now)
			return err
		})
		return id, err
	}
	if id, err := use("h1", t0); err != nil || id != n.ID {
		t.Errorf("UseEnrollToken(h1) = %d, %v; want node %d", id, err, n.ID)
	}
	for _, tc := range []struct {
		hash string
		now  time.Time
	}{{"h1", t0}, {"nope", t0}, {"h2", t0.Add(time.Hour)}} {
		_, err := use(tc.hash, tc.now)
		wantKind(t, fmt.Sprintf("UseEnrollToken(%s at %s)", tc.hash, tc.now), err, errdefs.ErrDenied)
	}
}

func testReports(t *testing.T, s *store.Store) {
	a := site("rep")
	n := &store.Node{Hostname: "n1.rep", BootState: "boot"}
	update(t, s, func(tx *store.Tx) error {
		if err := tx.CreateSite(ctx, a); err != nil {
			return err
		}
		n.SiteID = a.ID
		if err := tx.CreateNode(ctx, n); err != nil {
			return err
		}
		if err := tx.PutReport(ctx, n.ID, t0, json.RawMessage(`{"load":1}`)); err != nil {
			return err
		}
		return tx.PutReport(ctx, n.ID, t0.Add(10*time.Second), json.RawMessage(`{"load":2}`))
	})
	wantKind(t, "PutReport(not JSON)", s.Update(ctx, func(tx *store.Tx) error { return tx.PutReport(ctx, n.ID, t0, json.RawMessage(`{`)) }), errdefs.ErrInvalid)
	wantKind(t, "PutReport(unknown node)", s.Update(ctx, func(tx *store.Tx) error { return tx.PutReport(ctx, 424242, t0, json.RawMessage(`{}`)) }), errdefs.ErrNotFound)
	view(t, s, func(tx *store.Tx) error {
		rs, err := tx.Reports(ctx, store.Page{})
		want := []store.Report{{NodeID: n.ID, At: t0.Add(10 * time.Second), Body: json.RawMessage(`{"load":2}`)}}
		if err != nil || !cmp.Equal(rs, want) {
			t.Errorf("Reports = %v, %v; want the latest only, %v", rs, err, want)
		}
		return nil
	})
}
