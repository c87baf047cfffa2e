package plc

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
)

// TestAuthorizationTable runs every write operation through the API as
// every kind of caller and checks it is allowed or refused as the policy
// says. The table is the policy, written out.
func TestAuthorizationTable(t *testing.T) {
	w := newWorld(t)
	w.now = time.Now()
	for _, lb := range []string{"sitea", "siteb"} {
		w.admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: lb, Name: lb, MaxSlices: 1000, MaxSlivers: 1000, Enabled: true}, nil)
	}
	actors := map[string]*client{
		"admin":  w.admin,
		"piA":    w.person(newUser(t, "pi@a.test"), "sitea", "pi"),
		"piB":    w.person(newUser(t, "pi@b.test"), "siteb", "pi"),
		"techA":  w.person(newUser(t, "tech@a.test"), "sitea", "tech"),
		"member": w.person(newUser(t, "member@a.test"), "sitea", "user"),
		"userA":  w.person(newUser(t, "user@a.test"), "sitea", "user"),
	}
	w.admin.do(t, "POST", "/v1/persons", api.Person{Email: "victim@a.test", Name: "V", Site: "sitea", Roles: []string{"user"}, Enabled: true}, nil)
	w.admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: "n1.a.test", Site: "sitea"}, nil)
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "sitea_exp"}, nil)
	w.admin.do(t, "POST", "/v1/slices", api.Slice{Name: "sitea_dlg", Instantiation: "delegated"}, nil)
	w.admin.do(t, "PUT", "/v1/slices/sitea_exp/members/member@a.test", nil, nil)

	admin := w.admin
	n := 0
	uniq := func() int { n++; return n }
	type op struct {
		op Op
		do func(c *client) error
	}
	call := func(c *client, method, path string, in any) error { return c.Do(ctx, method, path, in, nil) }
	ops := []op{
		{OpSiteCreate, func(c *client) error {
			return call(c, "POST", "/v1/sites", api.Site{LoginBase: fmt.Sprintf("new%d", uniq()), Name: "x", Enabled: true})
		}},
		{OpSiteUpdate, func(c *client) error {
			return call(c, "PATCH", "/v1/sites/sitea", api.SiteUpdate{Name: api.Ptr("Site A")})
		}},
		{OpSiteDelete, func(c *client) error {
			lb := fmt.Sprintf("gone%d", uniq())
			admin.do(t, "POST", "/v1/sites", api.Site{LoginBase: lb, Name: "x"}, nil)
			return call(c, "DELETE", "/v1/sites/"+lb, nil)
		}},
		{OpPersonCreate, func(c *client) error {
			return call(c, "POST", "/v1/persons", api.Person{Email: fmt.Sprintf("p%d@a.test", uniq()), Name: "x", Site: "sitea", Enabled: true})
		}},
		{OpPersonUpdate, func(c *client) error {
			return call(c, "PATCH", "/v1/persons/victim@a.test", api.PersonUpdate{Name: api.Ptr(fmt.Sprintf("V%d", uniq()))})
		}},
		{OpPersonRoles, func(c *client) error {
			err := call(c, "PATCH", "/v1/persons/victim@a.test", api.PersonUpdate{Roles: []string{"tech", "user"}})
			admin.do(t, "PATCH", "/v1/persons/victim@a.test", api.PersonUpdate{Roles: []string{"user"}}, nil)
			return err
		}},
		{OpPersonDelete, func(c *client) error {
			e := fmt.Sprintf("d%d@a.test", uniq())
			admin.do(t, "POST", "/v1/persons", api.Person{Email: e, Name: "x", Site: "sitea", Enabled: true}, nil)
			return call(c, "DELETE", "/v1/persons/"+e, nil)
		}},
		{OpKeyAdd, func(c *client) error {
			return call(c, "POST", "/v1/persons/victim@a.test/keys", api.Key{PublicKey: newUser(t, "k@a.test").pub})
		}},
		{OpKeyDelete, func(c *client) error {
			var k api.Key
			admin.do(t, "POST", "/v1/persons/victim@a.test/keys", api.Key{PublicKey: newUser(t, "k@a.test").pub}, &k)
			return call(c, "DELETE", "/v1/persons/victim@a.test/keys/"+url.PathEscape(k.Fingerprint), nil)
		}},
		{OpNodeCreate, func(c *client) error {
			return call(c, "POST", "/v1/nodes", api.Node{Hostname: fmt.Sprintf("n%d.a.test", 100+uniq()), Site: "sitea"})
		}},
		{OpNodeUpdate, func(c *client) error {
			return call(c, "PATCH", "/v1/nodes/n1.a.test", api.NodeUpdate{Tags: map[string]string{"v": fmt.Sprint(uniq())}})
		}},
		{OpNodeBootState, func(c *client) error {
			err := call(c, "PATCH", "/v1/nodes/n1.a.test", api.NodeUpdate{BootState: api.Ptr("safeboot")})
			admin.do(t, "PATCH", "/v1/nodes/n1.a.test", api.NodeUpdate{BootState: api.Ptr("boot")}, nil)
			return err
		}},
		{OpNodeDelete, func(c *client) error {
			h := fmt.Sprintf("d%d.a.test", uniq())
			admin.do(t, "POST", "/v1/nodes", api.Node{Hostname: h, Site: "sitea"}, nil)
			return call(c, "DELETE", "/v1/nodes/"+h, nil)
		}},
		{OpNodeToken, func(c *client) error { return call(c, "POST", "/v1/nodes/n1.a.test/token", nil) }},
		{OpNodeGroupWrite, func(c *client) error {
			return call(c, "POST", "/v1/nodegroups", api.NodeGroup{Name: fmt.Sprintf("g%d", uniq()), Tag: "region", Value: "eu"})
		}},
		{OpSliceCreate, func(c *client) error {
			return call(c, "POST", "/v1/slices", api.Slice{Name: fmt.Sprintf("sitea_s%d", uniq())})
		}},
		{OpSliceAdmin, func(c *client) error {
			return call(c, "POST", "/v1/slices", api.Slice{Name: fmt.Sprintf("pl_s%d", uniq())})
		}},
		{OpSliceUpdate, func(c *client) error {
			return call(c, "PATCH", "/v1/slices/sitea_exp", api.SliceUpdate{Description: api.Ptr(fmt.Sprint(uniq()))})
		}},
		{OpSliceDelete, func(c *client) error {
			s := fmt.Sprintf("sitea_d%d", uniq())
			admin.do(t, "POST", "/v1/slices", api.Slice{Name: s}, nil)
			admin.do(t, "PUT", "/v1/slices/"+s+"/members/member@a.test", nil, nil)
			return call(c, "DELETE", "/v1/slices/"+s, nil)
		}},
		{OpSliceRenew, func(c *client) error {
			return call(c, "POST", "/v1/slices/sitea_exp/renew", api.Renewal{Expires: w.now.Add(time.Duration(20+uniq()%20) * 24 * time.Hour)})
		}},
		{OpSliceMembers, func(c *client) error {
			err := call(c, "PUT", "/v1/slices/sitea_exp/members/victim@a.test", nil)
			if err == nil {
				admin.do(t, "DELETE", "/v1/slices/sitea_exp/members/victim@a.test", nil, nil)
			}
			return err
		}},
		{OpSliceAttrs, func(c *client) error {
			return call(c, "POST", "/v1/slices/sitea_exp/attributes", api.Attribute{Name: "memory", Value: fmt.Sprint(uniq())})
		}},
		{OpSliceNodes, func(c *client) error {
			err := call(c, "PUT", "/v1/slices/sitea_dlg/nodes/n1.a.test", nil)
			if err == nil {
				admin.do(t, "DELETE", "/v1/slices/sitea_dlg/nodes/n1.a.test", nil, nil)
			}
			return err
		}},
		{OpSliceTickets, func(c *client) error {
			return call(c, "POST", "/v1/slices/sitea_exp/tickets", api.TicketRequest{Nodes: []string{"n1.a.test"}})
		}},
		{OpEventsRead, func(c *client) error { return call(c, "GET", "/v1/events", nil) }},
	}
	if len(ops) != len(Ops) {
		t.Fatalf("the table covers %d operations, the policy has %d", len(ops), len(Ops))
	}
	piOps := []Op{OpPersonCreate, OpPersonUpdate, OpPersonRoles, OpPersonDelete, OpKeyAdd, OpKeyDelete,
		OpSliceCreate, OpSliceUpdate, OpSliceDelete, OpSliceRenew, OpSliceMembers, OpSliceAttrs, OpSliceNodes}
	allowed := map[string][]Op{
		"admin":  Ops,
		"piA":    piOps,
		"piB":    nil,
		"techA":  {OpNodeCreate, OpNodeUpdate, OpNodeDelete, OpNodeToken},
		"member": {OpSliceRenew, OpSliceTickets},
		"userA":  nil,
	}
	for _, o := range ops {
		for name, c := range actors {
			want := false
			for _, a := range allowed[name] {
				want = want || a == o.op
			}
			t.Run(string(o.op)+"/"+name, func(t *testing.T) {
				err := o.do(c)
				switch {
				case want && err != nil:
					t.Errorf("%s by %s = %v, want allowed", o.op, name, err)
				case !want && !errors.Is(err, errdefs.ErrDenied):
					t.Errorf("%s by %s = %v, want denied", o.op, name, err)
				}
			})
		}
	}
	// Users manage their own keys and name.
	self := actors["userA"]
	if err := call(self, "POST", "/v1/persons/user@a.test/keys", api.Key{PublicKey: newUser(t, "k2@a.test").pub}); err != nil {
		t.Errorf("a user adding their own key = %v", err)
	}
	if err := call(self, "PATCH", "/v1/persons/user@a.test", api.PersonUpdate{Name: api.Ptr("Me")}); err != nil {
		t.Errorf("a user renaming themselves = %v", err)
	}
	if err := call(self, "PATCH", "/v1/persons/user@a.test", api.PersonUpdate{Roles: []string{"admin"}}); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("a user making themselves admin = %v, want denied", err)
	}
	if err := call(actors["piA"], "PATCH", "/v1/persons/victim@a.test", api.PersonUpdate{Roles: []string{"admin"}}); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("a PI granting admin = %v, want denied", err)
	}
}
