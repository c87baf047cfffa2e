package plc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// write runs fn in one transaction with its audit event; a refused or
// failed write is audited too, in a transaction of its own, with the
// error code as result.
func (p *PLC) write(ctx context.Context, c *caller, op Op, object string, fn func(tx *store.Tx) error) error {
	err := p.store.Update(ctx, func(tx *store.Tx) error {
		// The people of a disabled site act no more, but admins.
		if !c.person.Has(store.RoleAdmin) && c.person.SiteID != 0 {
			site, err := tx.SiteByID(ctx, c.person.SiteID)
			if err != nil {
				return err
			}
			if !site.Enabled {
				return fmt.Errorf("%s: site %s is disabled; ask an admin: %w", op, site.LoginBase, errdefs.ErrDenied)
			}
		}
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Audit(ctx, store.Event{At: p.now(), Actor: c.person.Email, Action: string(op), Object: object, Result: "ok"})
	})
	if err != nil {
		aerr := p.store.Update(ctx, func(tx *store.Tx) error {
			return tx.Audit(ctx, store.Event{At: p.now(), Actor: c.person.Email, Action: string(op), Object: object, Result: api.CodeOf(err)})
		})
		if aerr != nil {
			p.log.Error("audit a failed write", "op", op, "err", aerr)
		}
	}
	return err
}

// route is one endpoint: its method and path pattern, who may call it
// (user: a signed request; node: a node certificate; public: anyone), and
// its handler's name.
type route struct {
	method, path, auth string
	h                  http.Handler
}

func (p *PLC) table() []route {
	u, pub := p.user, p.public
	return []route{
		{"GET", "/v1/ca", "public", pub(p.getCA)},
		{"GET", "/v1/openapi.json", "public", http.HandlerFunc(serveOpenAPI)},
		{"GET", "/v1/whoami", "user", u(p.whoami)},
		{"GET", "/v1/sites", "user", u(p.listSites)},
		{"POST", "/v1/sites", "user", u(p.createSite)},
		{"GET", "/v1/sites/{site}", "user", u(p.getSite)},
		{"PATCH", "/v1/sites/{site}", "user", u(p.updateSite)},
		{"DELETE", "/v1/sites/{site}", "user", u(p.deleteSite)},
		{"GET", "/v1/persons", "user", u(p.listPersons)},
		{"POST", "/v1/persons", "user", u(p.createPerson)},
		{"GET", "/v1/persons/{email}", "user", u(p.getPerson)},
		{"PATCH", "/v1/persons/{email}", "user", u(p.updatePerson)},
		{"DELETE", "/v1/persons/{email}", "user", u(p.deletePerson)},
		{"GET", "/v1/persons/{email}/keys", "user", u(p.listKeys)},
		{"POST", "/v1/persons/{email}/keys", "user", u(p.addKey)},
		{"DELETE", "/v1/persons/{email}/keys/{fp}", "user", u(p.deleteKey)},
		{"GET", "/v1/nodes", "user", u(p.listNodes)},
		{"POST", "/v1/nodes", "user", u(p.createNode)},
		{"GET", "/v1/nodes/{host}", "user", u(p.getNode)},
		{"PATCH", "/v1/nodes/{host}", "user", u(p.updateNode)},
		{"DELETE", "/v1/nodes/{host}", "user", u(p.deleteNode)},
		{"GET", "/v1/nodegroups", "user", u(p.listNodeGroups)},
		{"POST", "/v1/nodegroups", "user", u(p.createNodeGroup)},
		{"DELETE", "/v1/nodegroups/{name}", "user", u(p.deleteNodeGroup)},
		{"GET", "/v1/slices", "user", u(p.listSlices)},
		{"POST", "/v1/slices", "user", u(p.createSlice)},
		{"GET", "/v1/slices/{slice}", "user", u(p.getSlice)},
		{"PATCH", "/v1/slices/{slice}", "user", u(p.updateSlice)},
		{"DELETE", "/v1/slices/{slice}", "user", u(p.deleteSlice)},
		{"POST", "/v1/slices/{slice}/renew", "user", u(p.renewSlice)},
		{"PUT", "/v1/slices/{slice}/members/{email}", "user", u(p.addMember)},
		{"DELETE", "/v1/slices/{slice}/members/{email}", "user", u(p.removeMember)},
		{"GET", "/v1/slices/{slice}/attributes", "user", u(p.listAttributes)},
		{"POST", "/v1/slices/{slice}/attributes", "user", u(p.setAttribute)},
		{"DELETE", "/v1/slices/{slice}/attributes/{id}", "user", u(p.deleteAttribute)},
		{"PUT", "/v1/slices/{slice}/nodes/{host}", "user", u(p.bindNode)},
		{"DELETE", "/v1/slices/{slice}/nodes/{host}", "user", u(p.unbindNode)},
		{"GET", "/v1/events", "user", u(p.listEvents)},
		{"POST", "/v1/slices/{slice}/tickets", "user", u(p.issueTickets)},
		{"GET", "/v1/ads", "user", u(p.ads)},
		{"POST", "/v1/nodes/{host}/token", "user", u(p.enrollToken)},
		{"POST", "/v1/enroll", "public", pub(p.enroll)},
		{"POST", "/v1/node/report", "node", p.node(p.report)},
		{"GET", "/v1/node/sync", "node", p.node(p.sync)},
	}
}

// Routes lists the API's endpoints as "METHOD /path", for the OpenAPI
// document's test.
func Routes() []string {
	var out []string
	for _, r := range (&PLC{}).table() {
		out = append(out, r.method+" "+r.path)
	}
	return out
}

func (p *PLC) routes() http.Handler {
	m := http.NewServeMux()
	for _, r := range p.table() {
		m.Handle(r.method+" "+r.path, r.h)
	}
	m.HandleFunc("GET /status", p.status)
	// The same paths without methods tell a wrong method (405) from an
	// unknown path (404).
	paths := http.NewServeMux()
	allowed := map[string][]string{}
	for _, r := range p.table() {
		if allowed[r.path] == nil {
			paths.Handle(r.path, http.NotFoundHandler())
		}
		allowed[r.path] = append(allowed[r.path], r.method)
	}
	m.Handle("/", p.public(func(w http.ResponseWriter, r *http.Request) (any, error) {
		if _, pattern := paths.Handler(r); pattern != "" {
			w.Header().Set("Allow", strings.Join(allowed[pattern], ", "))
			return nil, fmt.Errorf("%s %s: use %s: %w", r.Method, r.URL.Path, strings.Join(allowed[pattern], " or "), errMethod)
		}
		return nil, fmt.Errorf("no endpoint %s %s; the API is under /v1 (GET /v1/openapi.json lists it): %w", r.Method, r.URL.Path, errdefs.ErrNotFound)
	}))
	return m
}

func (p *PLC) getCA(w http.ResponseWriter, r *http.Request) (any, error) { return p.caInfo(), nil }

// caInfo is what PLC publishes: its CA root and ticket keys.
func (p *PLC) caInfo() api.CA {
	out := api.CA{Name: p.settings.Name, RootPEM: string(ca.MarshalCertificate(p.ca.Certificate()))}
	for _, iss := range p.tickets.Issuers() {
		out.TicketKeys = append(out.TicketKeys, ticket.TrustLine(iss))
	}
	return out
}

func (p *PLC) whoami(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	out := api.Whoami{Email: c.person.Email, Roles: roleNames(c.person.Roles), Fingerprint: string(c.fp)}
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		var err error
		out.Site, err = siteName(r.Context(), tx, c.person.SiteID)
		return err
	})
	return out, err
}

// ---- sites

func toSite(s *store.Site) api.Site {
	return api.Site{LoginBase: s.LoginBase, Name: s.Name, MaxSlices: s.MaxSlices, MaxSlivers: s.MaxSlivers, Enabled: s.Enabled, Created: s.Created}
}

func checkSite(in *api.Site) error {
	if err := checkLoginBase(in.LoginBase); err != nil {
		return err
	}
	if in.Name == "" {
		return fmt.Errorf("site %s: a name is required: %w", in.LoginBase, errdefs.ErrInvalid)
	}
	if in.MaxSlices < 0 || in.MaxSlivers < 0 {
		return fmt.Errorf("site %s: limits must not be negative: %w", in.LoginBase, errdefs.ErrInvalid)
	}
	return checkText("site name", in.Name, 200)
}

func (p *PLC) listSites(w http.ResponseWriter, r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	var out api.List[api.Site]
	out.Items = []api.Site{}
	err = p.store.View(r.Context(), func(tx *store.Tx) error {
		ss, err := tx.ListSites(r.Context(), pg)
		for i := range ss {
			out.Items = append(out.Items, toSite(&ss[i]))
		}
		if len(ss) > 0 {
			out.Next = next(len(ss), pg, ss[len(ss)-1].ID)
		}
		return err
	})
	return out, err
}

func (p *PLC) getSite(w http.ResponseWriter, r *http.Request) (any, error) {
	var out api.Site
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		s, err := tx.Site(r.Context(), r.PathValue("site"))
		if err == nil {
			out = toSite(s)
		}
		return err
	})
	return out, err
}

func (p *PLC) createSite(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.Site
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkSite(&in); err != nil {
		return nil, err
	}
	s := &store.Site{LoginBase: in.LoginBase, Name: in.Name, MaxSlices: in.MaxSlices, MaxSlivers: in.MaxSlivers, Enabled: in.Enabled, Created: p.now()}
	err := p.write(r.Context(), c, OpSiteCreate, in.LoginBase, func(tx *store.Tx) error {
		if err := Allow(c.person, OpSiteCreate, Target{}); err != nil {
			return err
		}
		return tx.CreateSite(r.Context(), s)
	})
	if err != nil {
		return nil, err
	}
	return created{toSite(s)}, nil
}

func (p *PLC) updateSite(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.SiteUpdate
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	var out api.Site
	err := p.write(r.Context(), c, OpSiteUpdate, r.PathValue("site"), func(tx *store.Tx) error {
		if err := Allow(c.person, OpSiteUpdate, Target{}); err != nil {
			return err
		}
		s, err := tx.Site(r.Context(), r.PathValue("site"))
		if err != nil {
			return err
		}
		disabling := s.Enabled && in.Enabled != nil && !*in.Enabled
		next := toSite(s)
		set(&next.Name, in.Name)
		set(&next.MaxSlices, in.MaxSlices)
		set(&next.MaxSlivers, in.MaxSlivers)
		set(&next.Enabled, in.Enabled)
		if err := checkSite(&next); err != nil {
			return err
		}
		s.Name, s.MaxSlices, s.MaxSlivers, s.Enabled = next.Name, next.MaxSlices, next.MaxSlivers, next.Enabled
		out = next
		if err := tx.UpdateSite(r.Context(), s); err != nil {
			return err
		}
		if disabling {
			// A disabled site's slivers lose their tickets.
			if err := tx.RevokeSiteTickets(r.Context(), s.ID); err != nil {
				return err
			}
			_, err = tx.RecordChange(r.Context(), 0)
		}
		return err
	})
	if err == nil {
		p.notify()
	}
	return out, err
}

// set copies *v into *dst when v is given.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (p *PLC) deleteSite(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	name := r.PathValue("site")
	err := p.write(r.Context(), c, OpSiteDelete, name, func(tx *store.Tx) error {
		if err := Allow(c.person, OpSiteDelete, Target{}); err != nil {
			return err
		}
		if err := tx.DeleteSite(r.Context(), name); err != nil {
			return fmt.Errorf("%w (a site with people, nodes or slices cannot be deleted; remove them first)", err)
		}
		return nil
	})
	return nil, err
}

// ---- persons and keys

func roleNames(rs []store.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

func siteName(ctx context.Context, tx *store.Tx, id int64) (string, error) {
	if id == 0 {
		return "", nil
	}
	memo, _ := ctx.Value(keySites).(map[int64]string)
	if name, ok := memo[id]; ok {
		return name, nil
	}
	s, err := tx.SiteByID(ctx, id)
	if err != nil {
		return "", err
	}
	if memo != nil {
		memo[id] = s.LoginBase
	}
	return s.LoginBase, nil
}

// withSiteNames lets a listing look each site up once, not once a row.
func withSiteNames(ctx context.Context) context.Context {
	return context.WithValue(ctx, keySites, map[int64]string{})
}

func toPerson(ctx context.Context, tx *store.Tx, p *store.Person) (api.Person, error) {
	site, err := siteName(ctx, tx, p.SiteID)
	return api.Person{Email: p.Email, Name: p.Name, Site: site, Roles: roleNames(p.Roles), Enabled: p.Enabled, Created: p.Created}, err
}

func hasRole(rs []store.Role, r store.Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func (p *PLC) listPersons(w http.ResponseWriter, r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	out := api.List[api.Person]{Items: []api.Person{}}
	r = r.WithContext(withSiteNames(r.Context()))
	err = p.store.View(r.Context(), func(tx *store.Tx) error {
		var siteID int64
		if lb := r.URL.Query().Get("site"); lb != "" {
			s, err := tx.Site(r.Context(), lb)
			if err != nil {
				return err
			}
			siteID = s.ID
		}
		ps, err := tx.ListPersons(r.Context(), siteID, pg)
		if err != nil {
			return err
		}
		for i := range ps {
			ap, err := toPerson(r.Context(), tx, &ps[i])
			if err != nil {
				return err
			}
			out.Items = append(out.Items, ap)
		}
		if len(ps) > 0 {
			out.Next = next(len(ps), pg, ps[len(ps)-1].ID)
		}
		return nil
	})
	return out, err
}

func (p *PLC) getPerson(w http.ResponseWriter, r *http.Request) (any, error) {
	var out api.Person
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		ps, err := tx.Person(r.Context(), r.PathValue("email"))
		if err != nil {
			return err
		}
		out, err = toPerson(r.Context(), tx, ps)
		return err
	})
	return out, err
}

func (p *PLC) createPerson(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.Person
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkEmail(in.Email); err != nil {
		return nil, err
	}
	if err := checkText("name", in.Name, 200); err != nil {
		return nil, err
	}
	roles, err := checkRoles(in.Roles)
	if err != nil {
		return nil, err
	}
	if len(roles) == 0 {
		roles = []store.Role{store.RoleUser}
	}
	var out api.Person
	err = p.write(r.Context(), c, OpPersonCreate, in.Email, func(tx *store.Tx) error {
		np := &store.Person{Email: in.Email, Name: in.Name, Roles: roles, Enabled: in.Enabled, Created: p.now()}
		if in.Site != "" {
			s, err := tx.Site(r.Context(), in.Site)
			if err != nil {
				return err
			}
			np.SiteID = s.ID
		}
		if err := Allow(c.person, OpPersonCreate, Target{SiteID: np.SiteID, AdminTarget: hasRole(roles, store.RoleAdmin)}); err != nil {
			return err
		}
		if err := tx.CreatePerson(r.Context(), np); err != nil {
			return err
		}
		var err error
		out, err = toPerson(r.Context(), tx, np)
		return err
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

func (p *PLC) updatePerson(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.PersonUpdate
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Name != nil {
		if err := checkText("name", *in.Name, 200); err != nil {
			return nil, err
		}
	}
	roles, err := checkRoles(in.Roles)
	if err != nil {
		return nil, err
	}
	email := r.PathValue("email")
	var out api.Person
	err = p.write(r.Context(), c, OpPersonUpdate, email, func(tx *store.Tx) error {
		ps, err := tx.Person(r.Context(), email)
		if err != nil {
			return err
		}
		t := Target{SiteID: ps.SiteID, Self: ps.ID == c.person.ID, AdminTarget: ps.Has(store.RoleAdmin)}
		if err := Allow(c.person, OpPersonUpdate, t); err != nil {
			return err
		}
		siteID := ps.SiteID
		if in.Site != nil {
			if *in.Site == "" {
				siteID = 0
			} else {
				s, err := tx.Site(r.Context(), *in.Site)
				if err != nil {
					return err
				}
				siteID = s.ID
			}
		}
		// Roles, the account's state and its site are a PI's or an
		// admin's business, not the person's own.
		if (roles != nil && !sameRoles(roles, ps.Roles)) || (in.Enabled != nil && *in.Enabled != ps.Enabled) || siteID != ps.SiteID {
			t.Self = false
			t.AdminTarget = t.AdminTarget || hasRole(roles, store.RoleAdmin)
			if err := Allow(c.person, OpPersonRoles, t); err != nil {
				return err
			}
			if siteID != ps.SiteID {
				if err := Allow(c.person, OpPersonRoles, Target{SiteID: siteID}); err != nil {
					return err
				}
			}
		}
		set(&ps.Name, in.Name)
		set(&ps.Enabled, in.Enabled)
		if roles != nil {
			ps.Roles = roles
		}
		ps.SiteID = siteID
		if err := tx.UpdatePerson(r.Context(), ps); err != nil {
			return err
		}
		out, err = toPerson(r.Context(), tx, ps)
		return err
	})
	return out, err
}

func sameRoles(a, b []store.Role) bool {
	if a == nil {
		return true // not given: unchanged
	}
	if len(a) != len(b) {
		return false
	}
	for _, r := range a {
		if !hasRole(b, r) {
			return false
		}
	}
	return true
}

func (p *PLC) deletePerson(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	email := r.PathValue("email")
	err := p.write(r.Context(), c, OpPersonDelete, email, func(tx *store.Tx) error {
		ps, err := tx.Person(r.Context(), email)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpPersonDelete, Target{SiteID: ps.SiteID, AdminTarget: ps.Has(store.RoleAdmin)}); err != nil {
			return err
		}
		if _, err := tx.RecordChange(r.Context(), 0); err != nil {
			return err
		}
		return tx.DeletePerson(r.Context(), email)
	})
	if err == nil {
		p.notify()
	}
	return nil, err
}

func (p *PLC) listKeys(w http.ResponseWriter, r *http.Request) (any, error) {
	var out api.List[api.Key]
	out.Items = []api.Key{}
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		ps, err := tx.Person(r.Context(), r.PathValue("email"))
		if err != nil {
			return err
		}
		ks, err := tx.Keys(r.Context(), ps.ID)
		for _, k := range ks {
			out.Items = append(out.Items, api.Key{Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, Created: k.Created})
		}
		return err
	})
	return out, err
}

func (p *PLC) addKey(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.Key
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	pub, err := cred.ParseUserKey(in.PublicKey)
	if err != nil {
		return nil, err
	}
	k := &store.Key{Fingerprint: string(cred.FingerprintSSH(pub)), PublicKey: strings.TrimSpace(in.PublicKey), Created: p.now()}
	email := r.PathValue("email")
	err = p.write(r.Context(), c, OpKeyAdd, email+" "+k.Fingerprint, func(tx *store.Tx) error {
		ps, err := tx.Person(r.Context(), email)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpKeyAdd, Target{SiteID: ps.SiteID, Self: ps.ID == c.person.ID, AdminTarget: ps.Has(store.RoleAdmin)}); err != nil {
			return err
		}
		k.PersonID = ps.ID
		if _, err := tx.RecordChange(r.Context(), 0); err != nil {
			return err
		}
		return tx.AddKey(r.Context(), k)
	})
	if err != nil {
		return nil, err
	}
	p.notify()
	return created{api.Key{Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, Created: k.Created}}, nil
}

func (p *PLC) deleteKey(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	email, fp := r.PathValue("email"), r.PathValue("fp")
	err := p.write(r.Context(), c, OpKeyDelete, email+" "+fp, func(tx *store.Tx) error {
		ps, err := tx.Person(r.Context(), email)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpKeyDelete, Target{SiteID: ps.SiteID, Self: ps.ID == c.person.ID, AdminTarget: ps.Has(store.RoleAdmin)}); err != nil {
			return err
		}
		k, owner, err := tx.KeyOwner(r.Context(), fp)
		if err != nil {
			return err
		}
		if owner.ID != ps.ID {
			return fmt.Errorf("key %s is not %s's: %w", fp, email, errdefs.ErrNotFound)
		}
		if _, err := tx.RecordChange(r.Context(), 0); err != nil {
			return err
		}
		return tx.DeleteKey(r.Context(), k.Fingerprint)
	})
	if err == nil {
		p.notify()
	}
	return nil, err
}

// ---- nodes and node groups

func toNode(ctx context.Context, tx *store.Tx, n *store.Node) (api.Node, error) {
	site, err := siteName(ctx, tx, n.SiteID)
	out := api.Node{Hostname: n.Hostname, Site: site, Addresses: n.Addresses, BootState: n.BootState, Tags: n.Tags, LastContact: n.LastContact, Created: n.Created,
		SSHHostKey: n.SSHHostKey, SSHPort: n.SSHPort, APIPort: n.APIPort}
	if len(n.Capacity) > 0 {
		out.Capacity = new(api.Resources)
		if err := json.Unmarshal(n.Capacity, out.Capacity); err != nil {
			return out, err
		}
	}
	return out, err
}

func checkNode(in *api.Node) error {
	if err := checkHostname(in.Hostname); err != nil {
		return err
	}
	if in.BootState == "" {
		in.BootState = api.BootStateBoot
	}
	if err := checkBootState(in.BootState); err != nil {
		return err
	}
	if len(in.Addresses) > 16 || len(in.Tags) > 64 {
		return fmt.Errorf("node %s: at most 16 addresses and 64 tags: %w", in.Hostname, errdefs.ErrInvalid)
	}
	for k, v := range in.Tags {
		if err := checkTag(k); err != nil {
			return err
		}
		if err := checkText("tag value", v, 200); err != nil {
			return err
		}
	}
	return nil
}

// nodeFilter reads a node listing's filters: site, boot_state,
// tag=NAME=VALUE, nodegroup.
func nodeFilter(r *http.Request, tx *store.Tx) (store.NodeFilter, error) {
	q := r.URL.Query()
	f := store.NodeFilter{BootState: q.Get("boot_state")}
	if f.BootState != "" {
		if err := checkBootState(f.BootState); err != nil {
			return f, err
		}
	}
	if tv := q.Get("tag"); tv != "" {
		var ok bool
		if f.Tag, f.Value, ok = strings.Cut(tv, "="); !ok {
			return f, fmt.Errorf("tag=%q: want tag=NAME=VALUE: %w", tv, errdefs.ErrInvalid)
		}
	}
	if lb := q.Get("site"); lb != "" {
		s, err := tx.Site(r.Context(), lb)
		if err != nil {
			return f, err
		}
		f.SiteID = s.ID
	}
	if g := q.Get("nodegroup"); g != "" {
		ng, err := tx.NodeGroup(r.Context(), g)
		if err != nil {
			return f, err
		}
		if f.Tag != "" {
			return f, fmt.Errorf("give tag= or nodegroup=, not both: %w", errdefs.ErrInvalid)
		}
		f.Tag, f.Value = ng.Tag, ng.Value
	}
	return f, nil
}

func (p *PLC) listNodes(w http.ResponseWriter, r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	out := api.List[api.Node]{Items: []api.Node{}}
	ctx := withSiteNames(r.Context())
	err = p.store.View(ctx, func(tx *store.Tx) error {
		ns, nxt, err := pageNodes(ctx, r, tx, pg)
		if err != nil {
			return err
		}
		out.Next = nxt
		for i := range ns {
			an, err := toNode(ctx, tx, &ns[i])
			if err != nil {
				return err
			}
			out.Items = append(out.Items, an)
		}
		return nil
	})
	return out, err
}

// pageNodes lists one page of the nodes the request's filters select,
// with the next page's after= value.
func pageNodes(ctx context.Context, r *http.Request, tx *store.Tx, pg store.Page) ([]store.Node, string, error) {
	f, err := nodeFilter(r, tx)
	if err != nil {
		return nil, "", err
	}
	ns, err := tx.ListNodes(ctx, f, pg)
	if err != nil || len(ns) == 0 {
		return nil, "", err
	}
	return ns, next(len(ns), pg, ns[len(ns)-1].ID), nil
}

func (p *PLC) getNode(w http.ResponseWriter, r *http.Request) (any, error) {
	var out api.Node
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		n, err := tx.Node(r.Context(), r.PathValue("host"))
		if err != nil {
			return err
		}
		out, err = toNode(r.Context(), tx, n)
		return err
	})
	return out, err
}

func capacityJSON(c *api.Resources) (json.RawMessage, error) {
	if c == nil {
		return nil, nil
	}
	return json.Marshal(c)
}

func (p *PLC) createNode(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.Node
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkNode(&in); err != nil {
		return nil, err
	}
	var out api.Node
	err := p.write(r.Context(), c, OpNodeCreate, in.Hostname, func(tx *store.Tx) error {
		s, err := tx.Site(r.Context(), in.Site)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpNodeCreate, Target{SiteID: s.ID}); err != nil {
			return err
		}
		if in.BootState != api.BootStateBoot {
			if err := Allow(c.person, OpNodeBootState, Target{SiteID: s.ID}); err != nil {
				return err
			}
		}
		capacity, err := capacityJSON(in.Capacity)
		if err != nil {
			return err
		}
		n := &store.Node{Hostname: in.Hostname, SiteID: s.ID, Addresses: in.Addresses, BootState: in.BootState, Tags: in.Tags, Capacity: capacity, Created: p.now()}
		if err := tx.CreateNode(r.Context(), n); err != nil {
			return err
		}
		out, err = toNode(r.Context(), tx, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

func (p *PLC) updateNode(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.NodeUpdate
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	host := r.PathValue("host")
	var out api.Node
	err := p.write(r.Context(), c, OpNodeUpdate, host, func(tx *store.Tx) error {
		n, err := tx.Node(r.Context(), host)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpNodeUpdate, Target{SiteID: n.SiteID}); err != nil {
			return err
		}
		if in.BootState != nil && *in.BootState != n.BootState {
			if err := Allow(c.person, OpNodeBootState, Target{SiteID: n.SiteID}); err != nil {
				return err
			}
		}
		next, err := toNode(r.Context(), tx, n)
		if err != nil {
			return err
		}
		if in.Addresses != nil {
			next.Addresses = in.Addresses
		}
		if in.Tags != nil {
			next.Tags = in.Tags
		}
		set(&next.BootState, in.BootState)
		if in.Capacity != nil {
			next.Capacity = in.Capacity
		}
		if err := checkNode(&next); err != nil {
			return err
		}
		capacity, err := capacityJSON(next.Capacity)
		if err != nil {
			return err
		}
		n.Addresses, n.BootState, n.Tags, n.Capacity = next.Addresses, next.BootState, next.Tags, capacity
		if err := tx.UpdateNode(r.Context(), n); err != nil {
			return err
		}
		if _, err := tx.RecordChange(r.Context(), n.ID); err != nil {
			return err
		}
		out, err = toNode(r.Context(), tx, n)
		return err
	})
	if err == nil {
		p.notify()
	}
	return out, err
}

func (p *PLC) deleteNode(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	host := r.PathValue("host")
	err := p.write(r.Context(), c, OpNodeDelete, host, func(tx *store.Tx) error {
		n, err := tx.Node(r.Context(), host)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpNodeDelete, Target{SiteID: n.SiteID}); err != nil {
			return err
		}
		return tx.DeleteNode(r.Context(), host)
	})
	return nil, err
}

func (p *PLC) listNodeGroups(w http.ResponseWriter, r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	out := api.List[api.NodeGroup]{Items: []api.NodeGroup{}}
	err = p.store.View(r.Context(), func(tx *store.Tx) error {
		gs, err := tx.ListNodeGroups(r.Context(), pg)
		for _, g := range gs {
			out.Items = append(out.Items, api.NodeGroup{Name: g.Name, Tag: g.Tag, Value: g.Value})
		}
		if len(gs) > 0 {
			out.Next = next(len(gs), pg, gs[len(gs)-1].ID)
		}
		return err
	})
	return out, err
}

func (p *PLC) createNodeGroup(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.NodeGroup
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkTag(in.Name); err != nil {
		return nil, fmt.Errorf("node group name: %w", err)
	}
	if err := checkTag(in.Tag); err != nil {
		return nil, err
	}
	if err := checkText("value", in.Value, 200); err != nil {
		return nil, err
	}
	err := p.write(r.Context(), c, OpNodeGroupWrite, in.Name, func(tx *store.Tx) error {
		if err := Allow(c.person, OpNodeGroupWrite, Target{}); err != nil {
			return err
		}
		return tx.CreateNodeGroup(r.Context(), &store.NodeGroup{Name: in.Name, Tag: in.Tag, Value: in.Value, Created: p.now()})
	})
	if err != nil {
		return nil, err
	}
	return created{in}, nil
}

func (p *PLC) deleteNodeGroup(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	name := r.PathValue("name")
	err := p.write(r.Context(), c, OpNodeGroupWrite, name, func(tx *store.Tx) error {
		if err := Allow(c.person, OpNodeGroupWrite, Target{}); err != nil {
			return err
		}
		if err := tx.DeleteNodeGroup(r.Context(), name); err != nil {
			return err
		}
		// Attributes scoped to the group went with it.
		_, err := tx.RecordChange(r.Context(), 0)
		return err
	})
	if err == nil {
		p.notify()
	}
	return nil, err
}

func (p *PLC) listEvents(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := Allow(actorOf(r).person, OpEventsRead, Target{}); err != nil {
		return nil, err
	}
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	out := api.List[api.Event]{Items: []api.Event{}}
	err = p.store.View(r.Context(), func(tx *store.Tx) error {
		es, err := tx.Events(r.Context(), pg)
		for _, e := range es {
			out.Items = append(out.Items, api.Event{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Result: e.Result})
		}
		if len(es) > 0 {
			out.Next = next(len(es), pg, es[len(es)-1].ID)
		}
		return err
	})
	return out, err
}
