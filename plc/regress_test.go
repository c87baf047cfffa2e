package plc

import (
	"errors"
	"testing"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// docs/plc.md: max_nodes_per_slice is "a new slice's node limit (PIs may
// lower it, admins raise it)". A PI must not raise it, at creation or later.
func TestPICannotRaiseMaxNodes(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ucb", Name: "UCB", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	pi := w.person(newUser(t, "pi@ucb.edu"), "ucb", "pi")
	limit := w.plc.settings.MaxNodesPerSlice
	var sl api.Slice
	err := pi.Do(ctx, "POST", "/v1/slices", api.Slice{Name: "ucb_big", MaxNodes: limit * 100}, &sl)
	if err == nil {
		t.Errorf("PI created a slice with max_nodes %d (default limit %d): want denied", sl.MaxNodes, limit)
	}
	pi.do(t, "POST", "/v1/slices", api.Slice{Name: "ucb_small"}, nil)
	err = pi.Do(ctx, "PATCH", "/v1/slices/ucb_small", api.SliceUpdate{MaxNodes: api.Ptr(limit * 100)}, &sl)
	if err == nil {
		t.Errorf("PI raised max_nodes of ucb_small to %d (default limit %d): want denied", sl.MaxNodes, limit)
	}
}

// docs/plc.md: the audit log holds "every write, refused ones included",
// admin-only writes (sites, node groups) too.
func TestRefusedWritesAudited(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ucb", Name: "UCB", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	pi := w.person(newUser(t, "pi@ucb.edu"), "ucb", "pi")
	attempts := []struct {
		method, path, action string
		body                 any
	}{
		{"POST", "/v1/sites", "site.create", api.Site{LoginBase: "evil", Name: "Evil", Enabled: true}},
		{"PATCH", "/v1/sites/ucb", "site.update", api.SiteUpdate{MaxSlivers: api.Ptr(100000)}},
		{"DELETE", "/v1/sites/ucb", "site.delete", nil},
		{"POST", "/v1/nodegroups", "nodegroup.write", api.NodeGroup{Name: "g", Tag: "region", Value: "us"}},
	}
	for _, a := range attempts {
		if err := pi.Do(ctx, a.method, a.path, a.body, nil); !errors.Is(err, errdefs.ErrDenied) {
			t.Fatalf("%s %s by a PI = %v, want denied", a.method, a.path, err)
		}
	}
	var ev api.List[api.Event]
	w.admin.do(t, "GET", "/v1/events?limit=1000", nil, &ev)
	for _, a := range attempts {
		found := false
		for _, e := range ev.Items {
			if e.Actor == "pi@ucb.edu" && e.Action == a.action && e.Result != "ok" {
				found = true
			}
		}
		if !found {
			t.Errorf("refused %s %s (%s) by pi@ucb.edu is not in the audit log", a.method, a.path, a.action)
		}
	}
}

// A disabled site acts no more: no tickets for its slices, no writes by
// its people.
func TestDisabledSiteActsNoMore(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ucb", Name: "UCB", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.ucb.edu", Site: "ucb"}, nil)
	pi := w.person(newUser(t, "pi@ucb.edu"), "ucb", "pi")
	alice := newUser(t, "alice@ucb.edu")
	ac := w.person(alice, "ucb", "user")
	pi.do(t, "POST", "/v1/slices", api.Slice{Name: "ucb_x"}, nil)
	pi.do(t, "PUT", "/v1/slices/ucb_x/members/"+alice.email, nil, nil)

	w.admin.do(t, "PATCH", "/v1/sites/ucb", api.SiteUpdate{Enabled: api.Ptr(false)}, nil)

	var tk api.Tickets
	if err := ac.Do(ctx, "POST", "/v1/slices/ucb_x/tickets", api.TicketRequest{Nodes: []string{"n1.ucb.edu"}}, &tk); err == nil {
		t.Errorf("member of a slice of a DISABLED site got %d ticket(s): want denied", len(tk.Tickets))
	}
	if err := pi.Do(ctx, "POST", "/v1/persons", api.Person{Email: "new@ucb.edu", Name: "New", Site: "ucb", Enabled: true}, nil); err == nil {
		t.Errorf("PI of a DISABLED site created a person: want denied")
	}
}

// PLC's own site's slices are administrative: only admins manage them,
// even against a (non-admin) PI of PLC's own site.
func TestAdminSlicesAreAdminsOnly(t *testing.T) {
	w := newWorld(t)
	lb := w.plc.settings.SiteLoginBase
	name := lb + "_monitor"
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: name}, nil)
	pi := w.person(newUser(t, "pi@plc.test"), lb, "pi")
	if err := pi.Do(ctx, "POST", "/v1/slices", api.Slice{Name: lb + "_mine"}, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Fatalf("PI creating an administrative slice = %v, want denied (as documented)", err)
	}
	mallory := newUser(t, "mallory@plc.test")
	w.person(mallory, lb, "user")
	if err := pi.Do(ctx, "PUT", "/v1/slices/"+name+"/members/"+mallory.email, nil, nil); err == nil {
		t.Errorf("non-admin PI of %s added a member to administrative slice %s: want denied", lb, name)
	}
	if err := pi.Do(ctx, "POST", "/v1/slices/"+name+"/attributes", api.Attribute{Name: "capabilities", Value: "CAP_NET_ADMIN"}, nil); err == nil {
		t.Errorf("non-admin PI of %s set an attribute on administrative slice %s: want denied", lb, name)
	}
	if err := pi.Do(ctx, "DELETE", "/v1/slices/"+name, nil, nil); err == nil {
		t.Errorf("non-admin PI of %s deleted administrative slice %s: want denied", lb, name)
	}
}

// max_slivers is a per-site limit on (slice, node) pairs with valid
// tickets; binding delegated slices counts against it too.
func TestDelegatedRespectsMaxSlivers(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "tiny", Name: "Tiny", MaxSlices: 5, MaxSlivers: 1, Enabled: true}, nil)
	pi := w.person(newUser(t, "pi@tiny.test"), "tiny", "pi")
	hosts := []string{"n1.tiny.test", "n2.tiny.test", "n3.tiny.test"}
	for _, h := range hosts {
		w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: h, Site: "tiny"}, nil)
	}
	pi.do(t, "POST", "/v1/slices", api.Slice{Name: "tiny_d", Instantiation: "delegated"}, nil)
	for i, h := range hosts {
		err := pi.Do(ctx, "PUT", "/v1/slices/tiny_d/nodes/"+h, nil, nil)
		if i > 0 {
			if !errors.Is(err, errdefs.ErrNoCapacity) {
				t.Errorf("binding a second node with max_slivers 1 = %v, want no capacity", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		nc := w.nodeClient(enroll(t, w, h))
		var s api.Sync
		if err := nc.Do(ctx, "GET", "/v1/node/sync", nil, &s); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	_ = w.plc.Store().View(ctx, func(tx *store.Tx) error {
		s, err := tx.Site(ctx, "tiny")
		if err != nil {
			return err
		}
		n, err = tx.CountSlivers(ctx, s.ID, w.now)
		return err
	})
	if n > 1 {
		t.Errorf("site tiny (max_slivers 1) holds %d slivers through a delegated slice its PI bound", n)
	}
}

// A node certificate is for one registration: once the node is deleted
// and its hostname registered again (here at another site, not enrolled
// yet), the old certificate is refused.
func TestNodeCertIsForOneRegistration(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ucb", Name: "UCB", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "mit", Name: "MIT", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.example.org", Site: "ucb"}, nil)
	nc := w.nodeClient(enroll(t, w, "n1.example.org"))
	w.admin.do(t, "DELETE", "/v1/nodes/n1.example.org", nil, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.example.org", Site: "mit"}, nil)
	var rep api.Report
	rep.Slivers = 99
	if err := nc.Do(ctx, "POST", "/v1/node/report", rep, nil); err == nil {
		t.Errorf("certificate of the deleted registration reported for the new, never enrolled n1.example.org at mit: want unauthenticated")
	}
}

// Tickets and delegated bindings share a site's max_slivers: a binding
// whose node has not synced yet counts.
func TestTicketsCountUnsyncedBindings(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "one", Name: "One", MaxSlices: 5, MaxSlivers: 1, Enabled: true}, nil)
	for _, h := range []string{"n1.one.test", "n2.one.test"} {
		w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: h, Site: "one"}, nil)
	}
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "one_dlg", Instantiation: "delegated"}, nil)
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "one_direct"}, nil)
	w.admin.do(t, "PUT", "/v1/slices/one_dlg/nodes/n1.one.test", nil, nil)
	err := w.admin.Do(ctx, "POST", "/v1/slices/one_direct/tickets", api.TicketRequest{Nodes: []string{"n2.one.test"}}, nil)
	if !errors.Is(err, errdefs.ErrNoCapacity) {
		t.Errorf("a ticket while the only sliver is bound but not synced = %v, want no capacity", err)
	}
}
