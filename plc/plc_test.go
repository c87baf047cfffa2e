package plc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

var ctx = context.Background()

// TestLifecycle walks the registry as people use it: an admin makes a
// site; its PI registers a tech, a user and a slice; the tech registers a
// node; the user gets a ticket the node would accept; everything is in
// the audit log.
func TestLifecycle(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "princeton", Name: "Princeton", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	pi := w.person(newUser(t, "pi@princeton.edu"), "princeton", "pi")
	tech := newUser(t, "tech@princeton.edu")
	pi.do(t, "POST", "/v1/persons", api.Person{Email: tech.email, Name: "Tech", Site: "princeton", Roles: []string{"tech"}, Enabled: true}, nil)
	pi.do(t, "POST", "/v1/persons/"+tech.email+"/keys", api.Key{PublicKey: tech.pub}, nil)
	techc := w.client(tech)
	alice := newUser(t, "alice@princeton.edu")
	pi.do(t, "POST", "/v1/persons", api.Person{Email: alice.email, Name: "Alice", Site: "princeton", Enabled: true}, nil)
	pi.do(t, "POST", "/v1/persons/"+alice.email+"/keys", api.Key{PublicKey: alice.pub}, nil)
	ac := w.client(alice)

	var who api.Whoami
	ac.do(t, "GET", "/v1/whoami", nil, &who)
	if who.Email != alice.email || who.Site != "princeton" || who.Fingerprint != string(alice.id.Fingerprint()) || strings.Join(who.Roles, ",") != "user" {
		t.Errorf("whoami = %+v", who)
	}

	for _, h := range []string{"n1.princeton.edu", "n2.princeton.edu"} {
		techc.do(t, "POST", "/v1/nodes", api.Node{Hostname: h, Site: "princeton", Addresses: []string{"198.18.0.1"}, Tags: map[string]string{"region": "us"},
			Capacity: &api.Resources{CPUReserve: 2000, MemoryBytes: 4 << 30, NetMaxRate: 100e6}}, nil)
	}
	var sl api.Slice
	pi.do(t, "POST", "/v1/slices", api.Slice{Name: "princeton_codeen", Description: "a CDN", URL: "https://codeen.example"}, &sl)
	if !sl.Expires.Equal(w.now.Add(14*24*time.Hour).UTC().Truncate(time.Second)) || !sl.Enabled || sl.Instantiation != "direct" {
		t.Errorf("new slice = %+v; want enabled, direct, expiring in 2 weeks", sl)
	}
	pi.do(t, "PUT", "/v1/slices/princeton_codeen/members/"+alice.email, nil, nil)

	var ads api.List[api.Ad]
	ac.do(t, "GET", "/v1/ads?min_memory=1000000000&tag=region=us", nil, &ads)
	if len(ads.Items) != 2 || ads.Items[0].Free.MemoryBytes != 4<<30 {
		t.Errorf("ads = %+v, want both nodes with 4 GiB free", ads)
	}
	ac.do(t, "GET", "/v1/ads?min_memory=8000000000", nil, &ads)
	if len(ads.Items) != 0 {
		t.Errorf("ads with 8 GB free = %+v, want none", ads)
	}

	var tk api.Tickets
	ac.do(t, "POST", "/v1/slices/princeton_codeen/tickets", api.TicketRequest{Nodes: []string{"n1.princeton.edu", "n2.princeton.edu"},
		Resources: api.Resources{CPUShares: 2, MemoryBytes: 512 << 20, Ports: []string{"tcp/8080"}}}, &tk)
	if len(tk.Tickets) != 2 {
		t.Fatalf("tickets = %+v, want 2", tk)
	}
	var info api.CA
	if err := (&api.Client{BaseURL: w.url, HTTP: w.admin.HTTP}).Do(ctx, "GET", "/v1/ca", nil, &info); err != nil {
		t.Fatal(err)
	}
	trust, err := ticket.ParseTrust([]byte(strings.Join(info.TicketKeys, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ticket.Verify(tk.Tickets[0].Ticket, trust, ticket.Checks{Now: w.now, Node: "n1.princeton.edu", Principal: alice.id.Fingerprint()})
	if err != nil {
		t.Fatalf("a node would refuse the ticket: %v", err)
	}
	if got.Slice != "princeton_codeen" || got.Resources.MemoryBytes != 512<<20 || got.NotAfter != sl.Expires.Unix() {
		t.Errorf("ticket terms = %+v", got)
	}
	err = w.plc.Store().View(ctx, func(tx *store.Tx) error {
		recs, err := tx.Tickets(ctx, "princeton_codeen")
		if err == nil && len(recs) != 2 {
			t.Errorf("%d tickets recorded, want 2", len(recs))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Renew: a member may, up to the cap.
	var renewed api.Slice
	want := w.now.Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	ac.do(t, "POST", "/v1/slices/princeton_codeen/renew", api.Renewal{Expires: want}, &renewed)
	if !renewed.Expires.Equal(want) {
		t.Errorf("renewed to %s, want %s", renewed.Expires, want)
	}
	err = ac.Do(ctx, "POST", "/v1/slices/princeton_codeen/renew", api.Renewal{Expires: w.now.Add(60 * 24 * time.Hour)}, nil)
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "beyond") {
		t.Errorf("renewal beyond 8 weeks by a user = %v, want invalid", err)
	}

	// Deleting the slice revokes its tickets.
	pi.do(t, "DELETE", "/v1/slices/princeton_codeen", nil, nil)
	_ = w.plc.Store().View(ctx, func(tx *store.Tx) error {
		recs, _ := tx.Tickets(ctx, "princeton_codeen")
		for _, r := range recs {
			if !r.Revoked {
				t.Errorf("ticket %s still valid after its slice was deleted", r.ID)
			}
		}
		return nil
	})

	var evs api.List[api.Event]
	w.admin.do(t, "GET", "/v1/events?limit=1000", nil, &evs)
	actions := map[string]int{}
	for _, e := range evs.Items {
		actions[e.Action+" "+e.Result]++
	}
	for _, want := range []string{"site.create ok", "person.create ok", "key.add ok", "node.create ok", "slice.create ok", "slice.members ok", "slice.tickets ok", "slice.renew ok", "slice.renew invalid", "slice.delete ok"} {
		if actions[want] == 0 {
			t.Errorf("no audit event %q in %v", want, actions)
		}
	}
	if err := ac.Do(ctx, "GET", "/v1/events", nil, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("events read by a user = %v, want denied", err)
	}
}

// TestAuthentication: unsigned, wrongly signed, replayed and unknown-key
// requests are refused with 401.
func TestAuthentication(t *testing.T) {
	w := newWorld(t)
	stranger := w.client(newUser(t, "stranger@example.org"))
	plain := &api.Client{BaseURL: w.url, HTTP: w.admin.HTTP}
	for name, c := range map[string]*api.Client{"unknown key": &stranger.Client, "unsigned": plain} {
		err := c.Do(ctx, "GET", "/v1/sites", nil, nil)
		var re *api.ResponseError
		if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || re.Err.Code != api.CodeUnauthenticated {
			t.Errorf("%s request = %v, want 401 unauthenticated", name, err)
		}
	}
	// A replayed request: the same signed request twice.
	req, _ := http.NewRequest("GET", w.url+"/v1/whoami", nil)
	if err := w.admin.Sign(req); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 401} {
		resp, err := w.admin.HTTP.Do(req.Clone(ctx))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("request %d = %d %s, want %d", i, resp.StatusCode, body, want)
		}
	}
	// A disabled account cannot act.
	u := newUser(t, "gone@plab.test")
	c := w.person(u, "pl", "user")
	w.admin.do(t, "PATCH", "/v1/persons/"+u.email, api.PersonUpdate{Enabled: api.Ptr(false)}, nil)
	if err := c.Do(ctx, "GET", "/v1/whoami", nil, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("disabled account = %v, want refused", err)
	}
}

// TestBadInput: every kind of bad request gets a 4xx with a code and a
// message, and writes nothing.
func TestBadInput(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "mit", Name: "MIT", MaxSlices: 1, MaxSlivers: 10, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "mit_one"}, nil)
	events := func() int {
		var n int
		_ = w.plc.Store().View(ctx, func(tx *store.Tx) error {
			es, err := tx.Events(ctx, store.Page{Limit: 1000})
			for _, e := range es {
				if e.Result == "ok" {
					n++
				}
			}
			return err
		})
		return n
	}
	raw := func(method, path, body string) error {
		req, _ := http.NewRequest(method, w.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if err := w.admin.Sign(req); err != nil {
			return err
		}
		resp, err := w.admin.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var e api.Error
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode < 400 {
			return nil
		}
		if err := json.Unmarshal(data, &e); err != nil || e.Code == "" || e.Message == "" {
			return fmt.Errorf("HTTP %d with body %q: not a typed error", resp.StatusCode, data)
		}
		return &api.ResponseError{Status: resp.StatusCode, Err: e}
	}
	before := events()
	past := w.now.Add(-time.Hour)
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		in           any
		code         string
		msg          string
	}{
		{"malformed JSON", "POST", "/v1/sites", `{"login_base":`, nil, api.CodeInvalid, "malformed JSON"},
		{"not an object", "POST", "/v1/sites", `[1]`, nil, api.CodeInvalid, "should be"},
		{"empty body", "POST", "/v1/sites", ``, nil, api.CodeInvalid, "empty"},
		{"unknown field", "POST", "/v1/sites", `{"login_base":"x1","name":"X","admin":true}`, nil, api.CodeInvalid, `unknown field "admin"`},
		{"trailing data", "POST", "/v1/sites", `{"login_base":"x1","name":"X"} {}`, nil, api.CodeInvalid, "after the JSON"},
		{"oversized", "POST", "/v1/sites", `{"login_base":"x1","name":"` + strings.Repeat("a", MaxBody) + `"}`, nil, api.CodeInvalid, "over"},
		{"bad login base", "POST", "/v1/sites", "", api.Site{LoginBase: "MIT!", Name: "x"}, api.CodeInvalid, "login base"},
		{"duplicate site", "POST", "/v1/sites", "", api.Site{LoginBase: "mit", Name: "again"}, api.CodeConflict, "already exists"},
		{"negative limit", "POST", "/v1/sites", "", api.Site{LoginBase: "neg", Name: "x", MaxSlices: -1}, api.CodeInvalid, "negative"},
		{"bad email", "POST", "/v1/persons", "", api.Person{Email: "nobody", Name: "x"}, api.CodeInvalid, "email"},
		{"unknown role", "POST", "/v1/persons", "", api.Person{Email: "a@b.c", Name: "x", Roles: []string{"root"}}, api.CodeInvalid, "role"},
		{"unknown site", "POST", "/v1/persons", "", api.Person{Email: "a@b.c", Name: "x", Site: "nowhere"}, api.CodeNotFound, "nowhere"},
		{"bad key", "POST", "/v1/persons/admin@plab.test/keys", "", api.Key{PublicKey: "ssh-dss AAAA"}, api.CodeInvalid, "public key"},
		{"bad hostname", "POST", "/v1/nodes", "", api.Node{Hostname: "Node_1", Site: "mit"}, api.CodeInvalid, "hostname"},
		{"bad boot state", "POST", "/v1/nodes", "", api.Node{Hostname: "n1.mit.edu", Site: "mit", BootState: "up"}, api.CodeInvalid, "boot state"},
		{"node at unknown site", "POST", "/v1/nodes", "", api.Node{Hostname: "n1.mit.edu", Site: "nowhere"}, api.CodeNotFound, "nowhere"},
		{"bad slice name", "POST", "/v1/slices", "", api.Slice{Name: "mit-slice"}, api.CodeInvalid, "loginbase"},
		{"slice of unknown site", "POST", "/v1/slices", "", api.Slice{Name: "xyz_one"}, api.CodeNotFound, "login base"},
		{"slice expiry in the past", "POST", "/v1/slices", "", api.Slice{Name: "pl_past", Expires: past}, api.CodeInvalid, "in the past"},
		{"site over its slice limit", "POST", "/v1/slices", "", api.Slice{Name: "mit_two"}, api.CodeNoCapacity, "limit"},
		{"duplicate slice", "POST", "/v1/slices", "", api.Slice{Name: "mit_one"}, api.CodeConflict, "already exists"},
		{"renew into the past", "POST", "/v1/slices/mit_one/renew", "", api.Renewal{Expires: past}, api.CodeInvalid, "in the past"},
		{"member unknown", "PUT", "/v1/slices/mit_one/members/who@x.y", "", nil, api.CodeNotFound, "who@x.y"},
		{"tickets for no node", "POST", "/v1/slices/mit_one/tickets", "", api.TicketRequest{}, api.CodeInvalid, "1 to 1000"},
		{"tickets for an unknown node", "POST", "/v1/slices/mit_one/tickets", "", api.TicketRequest{Nodes: []string{"ghost.mit.edu"}}, api.CodeNotFound, "ghost"},
		{"bad page", "GET", "/v1/sites?limit=0", "", nil, api.CodeInvalid, "limit"},
		{"no such endpoint", "GET", "/v2/sites", "", nil, api.CodeNotFound, "/v1"},
		{"wrong method", "PUT", "/v1/sites", "", nil, api.CodeInvalid, "use GET or POST"},
		{"bind a direct slice", "PUT", "/v1/slices/mit_one/nodes/n1.mit.edu", "", nil, api.CodeInvalid, "directly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if tc.in != nil {
				b, _ := json.Marshal(tc.in)
				body = string(b)
			}
			err := raw(tc.method, tc.path, body)
			var re *api.ResponseError
			if !errors.As(err, &re) || re.Err.Code != tc.code || !strings.Contains(re.Err.Message, tc.msg) || re.Status < 400 || re.Status >= 500 {
				t.Errorf("%s %s = %v; want a 4xx %s saying %q", tc.method, tc.path, err, tc.code, tc.msg)
			}
		})
	}
	if after := events(); after != before {
		t.Errorf("bad requests wrote %d successful events", after-before)
	}
	var sites api.List[api.Site]
	w.admin.do(t, "GET", "/v1/sites", nil, &sites)
	if len(sites.Items) != 2 {
		t.Errorf("sites after bad requests = %+v, want pl and mit only", sites.Items)
	}
}

// TestEnrollAndSync: a node enrolls with a one-time token, reports, and its
// long poll sees a delegated slice bound to it within 2 s.
func TestEnrollAndSync(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ucb", Name: "UCB", MaxSlices: 5, MaxSlivers: 50, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.ucb.edu", Site: "ucb", Tags: map[string]string{"region": "us"}}, nil)
	cert := enroll(t, w, "n1.ucb.edu")
	nc := w.nodeClient(cert)

	// A second use of the token, and a user calling node endpoints, fail.
	var report api.Report
	report.Free.MemoryBytes, report.Slivers = 1<<30, 3
	if err := nc.Do(ctx, "POST", "/v1/node/report", report, nil); err != nil {
		t.Fatalf("report: %v", err)
	}
	if err := w.admin.Do(ctx, "POST", "/v1/node/report", report, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("report by a user = %v, want refused", err)
	}
	var ads api.List[api.Ad]
	w.admin.do(t, "GET", "/v1/ads", nil, &ads)
	if len(ads.Items) != 1 || ads.Items[0].Slivers != 3 || ads.Items[0].Free.MemoryBytes != 1<<30 {
		t.Errorf("ads after the report = %+v", ads.Items)
	}

	var s0 api.Sync
	if err := nc.Do(ctx, "GET", "/v1/node/sync", nil, &s0); err != nil || len(s0.Slices) != 0 {
		t.Fatalf("first sync = %+v, %v", s0, err)
	}
	alice := newUser(t, "alice@ucb.edu")
	w.person(alice, "ucb", "user")
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "ucb_cdn", Instantiation: "delegated"}, nil)
	w.admin.do(t, "PUT", "/v1/slices/ucb_cdn/members/"+alice.email, nil, nil)
	w.admin.do(t, "POST", "/v1/slices/ucb_cdn/attributes", api.Attribute{Name: "memory", Value: "1G"}, nil)

	type result struct {
		s   api.Sync
		err error
		at  time.Duration
	}
	done := make(chan result, 1)
	since := s0.Change
	start := time.Now()
	go func() {
		// The poll gives up after 2 s: the binding must arrive by then.
		c2, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var s api.Sync
		for {
			err := nc.Do(c2, "GET", fmt.Sprintf("/v1/node/sync?since=%d&wait=30", since), nil, &s)
			if err != nil || len(s.Slices) > 0 {
				done <- result{s, err, time.Since(start)}
				return
			}
			since = s.Change
		}
	}()
	w.admin.do(t, "PUT", "/v1/slices/ucb_cdn/nodes/n1.ucb.edu", nil, nil)
	r := <-done
	if r.err != nil {
		t.Fatalf("sync did not see the binding within 2 s: %v", r.err)
	}
	t.Logf("sync saw the binding %s after the poll began", r.at.Round(time.Millisecond))
	ns := r.s.Slices[0]
	if ns.Name != "ucb_cdn" || len(ns.Keys) != 1 || ns.Keys[0] != alice.pub || ns.Attributes["memory"] != "1G" || ns.Ticket == "" {
		t.Fatalf("synced slice = %+v", ns)
	}
	// The ticket names the node's key: the node redeems it itself.
	info := w.plc.caInfo()
	trust, _ := ticket.ParseTrust([]byte(strings.Join(info.TicketKeys, "\n")))
	leaf, _ := ca.ParseCertificate([]byte(pemOf(cert)))
	nodeKey, _ := cred.NewPublicKey(leaf.PublicKey)
	if _, err := ticket.Verify(ns.Ticket, trust, ticket.Checks{Now: w.now, Node: "n1.ucb.edu", Principal: nodeKey.Fingerprint()}); err != nil {
		t.Errorf("delegated ticket: %v", err)
	}
	// Syncing again returns the same ticket, not a new one each time.
	var again api.Sync
	if err := nc.Do(ctx, "GET", "/v1/node/sync", nil, &again); err != nil || len(again.Slices) != 1 || again.Slices[0].Ticket != ns.Ticket {
		t.Errorf("second sync = %+v, %v; want the same ticket", again, err)
	}
}

func pemOf(c *tls.Certificate) string {
	return string(ca.MarshalCertificate(c.Leaf))
}

// enroll makes a key and CSR for host, gets a token as admin and enrolls.
func enroll(t testing.TB, w *world, host string) *tls.Certificate {
	t.Helper()
	var tok api.EnrollToken
	w.admin.do(t, "POST", "/v1/nodes/"+host+"/token", nil, &tok)
	key, err := cred.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ca.NewCSR(key, host)
	if err != nil {
		t.Fatal(err)
	}
	public := &api.Client{BaseURL: w.url, HTTP: w.admin.HTTP}
	var enr api.Enrollment
	if err := public.Do(ctx, "POST", "/v1/enroll", api.EnrollRequest{Hostname: host, Token: tok.Token, CSR: csr}, &enr); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if err := public.Do(ctx, "POST", "/v1/enroll", api.EnrollRequest{Hostname: host, Token: tok.Token, CSR: csr}, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("second enrollment with the same token = %v, want denied", err)
	}
	cert, err := ca.ParseCertificate([]byte(enr.CertificatePEM))
	if err != nil {
		t.Fatal(err)
	}
	var kp ca.Keypair
	if err := kp.Set(cert, key); err != nil {
		t.Fatal(err)
	}
	c, err := kp.Get()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStatusPage: a read-only HTML page with the registry's counts.
func TestStatusPage(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "ucb", Name: "UCB", MaxSlices: 5, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.ucb.edu", Site: "ucb"}, nil)
	resp, err := w.admin.HTTP.Get(w.url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /status = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"<h1>plc.test</h1>", "<th>sites</th><td>2</td>", "<th>nodes</th><td>1 (0 reported", "n1.ucb.edu", "never"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("status page lacks %q:\n%s", want, body)
		}
	}
	if resp, err := w.admin.HTTP.Post(w.url+"/status", "text/plain", nil); err != nil || resp.StatusCode < 400 {
		t.Errorf("POST /status = %v, %v; want refused (read-only)", resp, err)
	}
}

// TestDisableRevokes: disabling a slice revokes its outstanding tickets
// and refuses new ones.
func TestDisableRevokes(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "cmu", Name: "CMU", MaxSlices: 5, MaxSlivers: 10, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.cmu.edu", Site: "cmu"}, nil)
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "cmu_x"}, nil)
	w.admin.do(t, "POST", "/v1/slices/cmu_x/tickets", api.TicketRequest{Nodes: []string{"n1.cmu.edu"}}, nil)
	w.admin.do(t, "PATCH", "/v1/slices/cmu_x", api.SliceUpdate{Enabled: api.Ptr(false)}, nil)
	_ = w.plc.Store().View(ctx, func(tx *store.Tx) error {
		recs, _ := tx.Tickets(ctx, "cmu_x")
		if len(recs) != 1 || !recs[0].Revoked {
			t.Errorf("tickets after disabling = %+v, want the one, revoked", recs)
		}
		return nil
	})
	if err := w.admin.Do(ctx, "POST", "/v1/slices/cmu_x/tickets", api.TicketRequest{Nodes: []string{"n1.cmu.edu"}}, nil); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("tickets for a disabled slice = %v, want denied", err)
	}
}

// TestSiteSliverLimit: a site's slices together hold at most max_slivers
// slivers (distinct slice and node pairs with valid tickets).
func TestSiteSliverLimit(t *testing.T) {
	w := newWorld(t)
	w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: "tiny", Name: "Tiny", MaxSlices: 5, MaxSlivers: 2, Enabled: true}, nil)
	for _, h := range []string{"n1.tiny.test", "n2.tiny.test", "n3.tiny.test"} {
		w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: h, Site: "tiny"}, nil)
	}
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "tiny_a"}, nil)
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "tiny_b"}, nil)
	w.admin.do(t, "POST", "/v1/slices/tiny_a/tickets", api.TicketRequest{Nodes: []string{"n1.tiny.test"}}, nil)
	// Another ticket for the same sliver does not count twice.
	w.admin.do(t, "POST", "/v1/slices/tiny_a/tickets", api.TicketRequest{Nodes: []string{"n1.tiny.test"}}, nil)
	w.admin.do(t, "POST", "/v1/slices/tiny_b/tickets", api.TicketRequest{Nodes: []string{"n2.tiny.test"}}, nil)
	err := w.admin.Do(ctx, "POST", "/v1/slices/tiny_b/tickets", api.TicketRequest{Nodes: []string{"n3.tiny.test"}}, nil)
	if !errors.Is(err, errdefs.ErrNoCapacity) || !strings.Contains(err.Error(), "max_slivers") {
		t.Errorf("a third sliver for the site = %v, want no capacity", err)
	}
	// Deleting a slice frees its slivers.
	w.admin.do(t, "DELETE", "/v1/slices/tiny_a", nil, nil)
	w.admin.do(t, "POST", "/v1/slices/tiny_b/tickets", api.TicketRequest{Nodes: []string{"n3.tiny.test"}}, nil)
}
