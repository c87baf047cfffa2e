package plc

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

func toSlice(ctx context.Context, tx *store.Tx, s *store.Slice, full bool) (api.Slice, error) {
	site, err := siteName(ctx, tx, s.SiteID)
	out := api.Slice{Name: s.Name, Site: site, Description: s.Description, URL: s.URL, Instantiation: s.Instantiation,
		Enabled: s.Enabled, MaxNodes: s.MaxNodes, Expires: s.Expires, Created: s.Created}
	if err != nil || !full {
		return out, err
	}
	ms, err := tx.Members(ctx, s.ID)
	if err != nil {
		return out, err
	}
	for _, m := range ms {
		out.Members = append(out.Members, m.Email)
	}
	ns, err := tx.SliceNodes(ctx, s.ID)
	for _, n := range ns {
		out.Nodes = append(out.Nodes, n.Hostname)
	}
	return out, err
}

// sliceTarget is what policy needs to know about a slice and the caller.
func sliceTarget(ctx context.Context, tx *store.Tx, s *store.Slice, c *caller) (Target, error) {
	t := Target{SiteID: s.SiteID}
	ms, err := tx.Members(ctx, s.ID)
	for _, m := range ms {
		if m.ID == c.person.ID {
			t.Member = true
		}
	}
	return t, err
}

// sliceOp loads the slice named in the path, checks op and runs fn in a
// write transaction.
func (p *PLC) sliceOp(r *http.Request, op Op, object string, fn func(tx *store.Tx, s *store.Slice) error) error {
	c := actorOf(r)
	name := r.PathValue("slice")
	return p.write(r.Context(), c, op, object, func(tx *store.Tx) error {
		if err := tx.LockSlice(r.Context(), name); err != nil {
			return err
		}
		s, err := tx.Slice(r.Context(), name)
		if err != nil {
			return err
		}
		t, err := sliceTarget(r.Context(), tx, s, c)
		if err != nil {
			return err
		}
		if op != OpSliceRenew && op != OpSliceTickets {
			site, err := tx.SiteByID(r.Context(), s.SiteID)
			if err != nil {
				return err
			}
			if site.LoginBase == p.settings.SiteLoginBase {
				op = OpSliceAdmin // PLC's own slices are the admins' to manage
			}
		}
		if err := Allow(c.person, op, t); err != nil {
			return err
		}
		return fn(tx, s)
	})
}

// sliceChange is sliceOp for the writes nodes must learn of (keys,
// attributes, state, expiry): it records a change for every node in the
// same transaction and, once committed, wakes their long polls.
func (p *PLC) sliceChange(r *http.Request, op Op, object string, fn func(tx *store.Tx, s *store.Slice) error) error {
	err := p.sliceOp(r, op, object, func(tx *store.Tx, s *store.Slice) error {
		if err := fn(tx, s); err != nil {
			return err
		}
		_, err := tx.RecordChange(r.Context(), 0)
		return err
	})
	if err == nil {
		p.notify()
	}
	return err
}

func (p *PLC) listSlices(w http.ResponseWriter, r *http.Request) (any, error) {
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	out := api.List[api.Slice]{Items: []api.Slice{}}
	r = r.WithContext(withSiteNames(r.Context()))
	err = p.store.View(r.Context(), func(tx *store.Tx) error {
		var f store.SliceFilter
		if lb := r.URL.Query().Get("site"); lb != "" {
			s, err := tx.Site(r.Context(), lb)
			if err != nil {
				return err
			}
			f.SiteID = s.ID
		}
		switch mine := r.URL.Query().Get("mine"); mine {
		case "true":
			f.MemberID = actorOf(r).person.ID
		case "", "false":
		default:
			return fmt.Errorf("mine=%q: want true or false: %w", mine, errdefs.ErrInvalid)
		}
		ss, err := tx.ListSlices(r.Context(), f, pg)
		if err != nil {
			return err
		}
		for i := range ss {
			as, err := toSlice(r.Context(), tx, &ss[i], false)
			if err != nil {
				return err
			}
			out.Items = append(out.Items, as)
		}
		if len(ss) > 0 {
			out.Next = next(len(ss), pg, ss[len(ss)-1].ID)
		}
		return nil
	})
	return out, err
}

func (p *PLC) getSlice(w http.ResponseWriter, r *http.Request) (any, error) {
	var out api.Slice
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		s, err := tx.Slice(r.Context(), r.PathValue("slice"))
		if err != nil {
			return err
		}
		out, err = toSlice(r.Context(), tx, s, true)
		return err
	})
	return out, err
}

func (p *PLC) createSlice(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	var in api.Slice
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkSliceName(in.Name); err != nil {
		return nil, err
	}
	if err := checkText("description", in.Description, 2000); err != nil {
		return nil, err
	}
	if err := checkText("url", in.URL, 500); err != nil {
		return nil, err
	}
	if in.Instantiation == "" {
		in.Instantiation = api.InstantiationDirect
	}
	if in.Instantiation != api.InstantiationDirect && in.Instantiation != api.InstantiationDelegated {
		return nil, fmt.Errorf("instantiation %q: want direct or delegated: %w", in.Instantiation, errdefs.ErrInvalid)
	}
	if len(in.Members) > 0 || len(in.Nodes) > 0 {
		return nil, fmt.Errorf("members and nodes are added after the slice exists (PUT …/members/EMAIL, …/nodes/HOST): %w", errdefs.ErrInvalid)
	}
	now := p.now()
	lifetime := time.Duration(p.settings.SliceLifetime)
	if in.Expires.IsZero() {
		in.Expires = now.Add(lifetime)
	}
	if in.MaxNodes == 0 {
		in.MaxNodes = p.settings.MaxNodesPerSlice
	}
	if in.MaxNodes < 0 {
		return nil, fmt.Errorf("max_nodes %d: must not be negative: %w", in.MaxNodes, errdefs.ErrInvalid)
	}
	if in.MaxNodes > p.settings.MaxNodesPerSlice && !c.person.Has(store.RoleAdmin) {
		return nil, fmt.Errorf("max_nodes %d: at most %d unless an admin raises it: %w", in.MaxNodes, p.settings.MaxNodesPerSlice, errdefs.ErrDenied)
	}
	lb, _, _ := strings.Cut(in.Name, "_")
	var out api.Slice
	err := p.write(r.Context(), c, OpSliceCreate, in.Name, func(tx *store.Tx) error {
		site, err := tx.Site(r.Context(), lb)
		if err != nil {
			return fmt.Errorf("slice %s: its name must start with its site's login base: %w", in.Name, err)
		}
		if in.Site != "" && in.Site != lb {
			return fmt.Errorf("slice %s belongs to site %s, not %s: %w", in.Name, lb, in.Site, errdefs.ErrInvalid)
		}
		op := OpSliceCreate
		if lb == p.settings.SiteLoginBase {
			op = OpSliceAdmin
		}
		if err := Allow(c.person, op, Target{SiteID: site.ID}); err != nil {
			return err
		}
		if err := p.checkExpiry(c, in.Expires, now); err != nil {
			return err
		}
		if !site.Enabled {
			return fmt.Errorf("site %s is disabled: %w", lb, errdefs.ErrDenied)
		}
		// The slice count is read and raised here: one creation per site
		// at a time.
		if err := tx.LockSite(r.Context(), site.ID); err != nil {
			return err
		}
		if _, err := tx.Slice(r.Context(), in.Name); err == nil {
			return fmt.Errorf("slice %q already exists: %w", in.Name, errdefs.ErrConflict)
		}
		n, err := tx.CountSlices(r.Context(), site.ID)
		if err != nil {
			return err
		}
		if n >= site.MaxSlices {
			return fmt.Errorf("site %s has %d slices, its limit; delete one or ask an admin to raise max_slices: %w", lb, n, errdefs.ErrNoCapacity)
		}
		s := &store.Slice{Name: in.Name, SiteID: site.ID, Description: in.Description, URL: in.URL, Instantiation: in.Instantiation,
			Enabled: true, MaxNodes: in.MaxNodes, Expires: in.Expires.UTC().Truncate(time.Second), Created: now}
		if err := tx.CreateSlice(r.Context(), s); err != nil {
			return err
		}
		out, err = toSlice(r.Context(), tx, s, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

// checkExpiry refuses an expiry in the past, and for non-admins one beyond
// the renewal cap.
func (p *PLC) checkExpiry(c *caller, exp, now time.Time) error {
	if !exp.After(now) {
		return fmt.Errorf("expiry %s is in the past: %w", exp.UTC().Format(time.RFC3339), errdefs.ErrInvalid)
	}
	limit := now.Add(time.Duration(p.settings.MaxRenewal))
	if exp.After(limit) && !c.person.Has(store.RoleAdmin) {
		return fmt.Errorf("expiry %s is beyond %s, the furthest a slice may be renewed to (%s ahead); ask for an earlier date: %w",
			exp.UTC().Format(time.RFC3339), limit.UTC().Format(time.RFC3339), time.Duration(p.settings.MaxRenewal), errdefs.ErrInvalid)
	}
	return nil
}

func (p *PLC) updateSlice(w http.ResponseWriter, r *http.Request) (any, error) {
	var in api.SliceUpdate
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Description != nil {
		if err := checkText("description", *in.Description, 2000); err != nil {
			return nil, err
		}
	}
	if in.URL != nil {
		if err := checkText("url", *in.URL, 500); err != nil {
			return nil, err
		}
	}
	if in.MaxNodes != nil && *in.MaxNodes < 0 {
		return nil, fmt.Errorf("max_nodes %d: must not be negative: %w", *in.MaxNodes, errdefs.ErrInvalid)
	}
	var out api.Slice
	err := p.sliceChange(r, OpSliceUpdate, r.PathValue("slice"), func(tx *store.Tx, s *store.Slice) error {
		disabled := s.Enabled && in.Enabled != nil && !*in.Enabled
		set(&s.Description, in.Description)
		set(&s.URL, in.URL)
		set(&s.Enabled, in.Enabled)
		if in.MaxNodes != nil && *in.MaxNodes > s.MaxNodes && !actorOf(r).person.Has(store.RoleAdmin) {
			return fmt.Errorf("max_nodes %d: only an admin raises a slice's limit (now %d): %w", *in.MaxNodes, s.MaxNodes, errdefs.ErrDenied)
		}
		set(&s.MaxNodes, in.MaxNodes)
		if err := tx.UpdateSlice(r.Context(), s); err != nil {
			return err
		}
		if disabled {
			if _, err := tx.RevokeTickets(r.Context(), s.Name); err != nil {
				return err
			}
		}
		var err error
		out, err = toSlice(r.Context(), tx, s, true)
		return err
	})
	return out, err
}

func (p *PLC) deleteSlice(w http.ResponseWriter, r *http.Request) (any, error) {
	return nil, p.sliceChange(r, OpSliceDelete, r.PathValue("slice"), func(tx *store.Tx, s *store.Slice) error {
		return tx.DeleteSlice(r.Context(), s.Name) // revokes its tickets
	})
}

func (p *PLC) renewSlice(w http.ResponseWriter, r *http.Request) (any, error) {
	var in api.Renewal
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	var out api.Slice
	err := p.sliceChange(r, OpSliceRenew, r.PathValue("slice"), func(tx *store.Tx, s *store.Slice) error {
		if err := p.checkExpiry(actorOf(r), in.Expires, p.now()); err != nil {
			return err
		}
		s.Expires = in.Expires.UTC().Truncate(time.Second)
		if err := tx.UpdateSlice(r.Context(), s); err != nil {
			return err
		}
		var err error
		out, err = toSlice(r.Context(), tx, s, true)
		return err
	})
	return out, err
}

func (p *PLC) addMember(w http.ResponseWriter, r *http.Request) (any, error) {
	return nil, p.member(r, "+", (*store.Tx).AddMember)
}

func (p *PLC) removeMember(w http.ResponseWriter, r *http.Request) (any, error) {
	return nil, p.member(r, "-", (*store.Tx).RemoveMember)
}

// member adds or removes the person named in the path.
func (p *PLC) member(r *http.Request, sign string, change func(*store.Tx, context.Context, int64, int64) error) error {
	email := r.PathValue("email")
	return p.sliceChange(r, OpSliceMembers, r.PathValue("slice")+" "+sign+email, func(tx *store.Tx, s *store.Slice) error {
		m, err := tx.Person(r.Context(), email)
		if err != nil {
			return err
		}
		return change(tx, r.Context(), s.ID, m.ID)
	})
}

func (p *PLC) listAttributes(w http.ResponseWriter, r *http.Request) (any, error) {
	out := api.List[api.Attribute]{Items: []api.Attribute{}}
	err := p.store.View(r.Context(), func(tx *store.Tx) error {
		s, err := tx.Slice(r.Context(), r.PathValue("slice"))
		if err != nil {
			return err
		}
		as, err := tx.Attributes(r.Context(), s.ID)
		if err != nil {
			return err
		}
		for _, a := range as {
			aa := api.Attribute{ID: a.ID, Name: a.Name, Value: a.Value}
			if a.NodeID != 0 {
				n, err := tx.NodeByID(r.Context(), a.NodeID)
				if err != nil {
					return err
				}
				aa.Node = n.Hostname
			}
			if a.NodeGroupID != 0 {
				g, err := tx.NodeGroupByID(r.Context(), a.NodeGroupID)
				if err != nil {
					return err
				}
				aa.NodeGroup = g.Name
			}
			out.Items = append(out.Items, aa)
		}
		return nil
	})
	return out, err
}

func (p *PLC) setAttribute(w http.ResponseWriter, r *http.Request) (any, error) {
	var in api.Attribute
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkTag(in.Name); err != nil {
		return nil, fmt.Errorf("attribute name: %w", err)
	}
	if err := checkText("value", in.Value, 64<<10); err != nil {
		return nil, err
	}
	if in.Node != "" && in.NodeGroup != "" {
		return nil, fmt.Errorf("scope an attribute to a node or a node group, not both: %w", errdefs.ErrInvalid)
	}
	err := p.sliceChange(r, OpSliceAttrs, r.PathValue("slice")+" "+in.Name, func(tx *store.Tx, s *store.Slice) error {
		a := &store.Attribute{SliceID: s.ID, Name: in.Name, Value: in.Value}
		if in.Node != "" {
			n, err := tx.Node(r.Context(), in.Node)
			if err != nil {
				return err
			}
			a.NodeID = n.ID
		}
		if in.NodeGroup != "" {
			g, err := tx.NodeGroup(r.Context(), in.NodeGroup)
			if err != nil {
				return err
			}
			a.NodeGroupID = g.ID
		}
		if err := tx.SetAttribute(r.Context(), a); err != nil {
			return err
		}
		in.ID = a.ID
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created{in}, nil
}

func (p *PLC) deleteAttribute(w http.ResponseWriter, r *http.Request) (any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("attribute id %q: want a number from GET …/attributes: %w", r.PathValue("id"), errdefs.ErrInvalid)
	}
	return nil, p.sliceChange(r, OpSliceAttrs, r.PathValue("slice")+" "+r.PathValue("id"), func(tx *store.Tx, s *store.Slice) error {
		return tx.DeleteAttribute(r.Context(), s.ID, id)
	})
}

func (p *PLC) bindNode(w http.ResponseWriter, r *http.Request) (any, error) {
	host := r.PathValue("host")
	err := p.sliceOp(r, OpSliceNodes, r.PathValue("slice")+" +"+host, func(tx *store.Tx, s *store.Slice) error {
		if s.Instantiation != api.InstantiationDelegated {
			return fmt.Errorf("slice %s is instantiated directly: its users redeem tickets themselves (POST …/tickets): %w", s.Name, errdefs.ErrInvalid)
		}
		n, err := tx.Node(r.Context(), host)
		if err != nil {
			return err
		}
		bound, err := tx.SliceNodes(r.Context(), s.ID)
		if err != nil {
			return err
		}
		if len(bound) >= s.MaxNodes {
			return fmt.Errorf("slice %s is on %d nodes, its limit: %w", s.Name, len(bound), errdefs.ErrNoCapacity)
		}
		site, room, err := p.sliverRoom(r.Context(), tx, s.SiteID)
		if err != nil {
			return err
		}
		if room < 1 {
			return errSliverLimit(site)
		}
		if err := tx.BindNode(r.Context(), s.ID, n.ID); err != nil {
			return err
		}
		_, err = tx.RecordChange(r.Context(), n.ID)
		return err
	})
	if err == nil {
		p.notify()
	}
	return nil, err
}

func (p *PLC) unbindNode(w http.ResponseWriter, r *http.Request) (any, error) {
	host := r.PathValue("host")
	err := p.sliceOp(r, OpSliceNodes, r.PathValue("slice")+" -"+host, func(tx *store.Tx, s *store.Slice) error {
		n, err := tx.Node(r.Context(), host)
		if err != nil {
			return err
		}
		if err := tx.UnbindNode(r.Context(), s.ID, n.ID); err != nil {
			return err
		}
		_, err = tx.RecordChange(r.Context(), n.ID)
		return err
	})
	if err == nil {
		p.notify()
	}
	return nil, err
}

// sliverRoom locks the site row (concurrent checks take turns) and returns
// the site with how many more slivers its max_slivers allows: its slices'
// (slice, node) pairs with a valid ticket, and delegated bindings whose
// node has not synced yet, count.
func (p *PLC) sliverRoom(ctx context.Context, tx *store.Tx, siteID int64) (*store.Site, int, error) {
	if err := tx.LockSite(ctx, siteID); err != nil {
		return nil, 0, err
	}
	site, err := tx.SiteByID(ctx, siteID)
	if err != nil {
		return nil, 0, err
	}
	n, err := tx.CountSlivers(ctx, site.ID, p.now())
	if err != nil {
		return nil, 0, err
	}
	ungranted, err := tx.CountUngrantedBindings(ctx, site.ID, p.now())
	if err != nil {
		return nil, 0, err
	}
	return site, site.MaxSlivers - n - ungranted, nil
}

func errSliverLimit(site *store.Site) error {
	return fmt.Errorf("site %s would hold more than %d slivers, its limit; ask an admin to raise max_slivers: %w", site.LoginBase, site.MaxSlivers, errdefs.ErrNoCapacity)
}
