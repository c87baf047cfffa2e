package plc

import (
	"fmt"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// Op is a write (or a read of something private) that policy decides on.
type Op string

// The operations.
const (
	OpSiteCreate     Op = "site.create"
	OpSiteUpdate     Op = "site.update"
	OpSiteDelete     Op = "site.delete"
	OpPersonCreate   Op = "person.create"
	OpPersonUpdate   Op = "person.update"
	OpPersonRoles    Op = "person.roles"
	OpPersonDelete   Op = "person.delete"
	OpKeyAdd         Op = "key.add"
	OpKeyDelete      Op = "key.delete"
	OpNodeCreate     Op = "node.create"
	OpNodeUpdate     Op = "node.update"
	OpNodeBootState  Op = "node.boot_state"
	OpNodeDelete     Op = "node.delete"
	OpNodeToken      Op = "node.token"
	OpNodeGroupWrite Op = "nodegroup.write"
	OpSliceCreate    Op = "slice.create"
	OpSliceAdmin     Op = "slice.create_admin"
	OpSliceUpdate    Op = "slice.update"
	OpSliceDelete    Op = "slice.delete"
	OpSliceRenew     Op = "slice.renew"
	OpSliceMembers   Op = "slice.members"
	OpSliceAttrs     Op = "slice.attributes"
	OpSliceNodes     Op = "slice.nodes"
	OpSliceTickets   Op = "slice.tickets"
	OpEventsRead     Op = "events.read"
)

// Ops lists every operation, for the authorization table and the docs.
var Ops = []Op{
	OpSiteCreate, OpSiteUpdate, OpSiteDelete,
	OpPersonCreate, OpPersonUpdate, OpPersonRoles, OpPersonDelete, OpKeyAdd, OpKeyDelete,
	OpNodeCreate, OpNodeUpdate, OpNodeBootState, OpNodeDelete, OpNodeToken, OpNodeGroupWrite,
	OpSliceCreate, OpSliceAdmin, OpSliceUpdate, OpSliceDelete, OpSliceRenew, OpSliceMembers, OpSliceAttrs, OpSliceNodes, OpSliceTickets,
	OpEventsRead,
}

// Target is what an operation touches, as far as policy cares.
type Target struct {
	// SiteID owns the object (the person's, node's or slice's site).
	SiteID int64
	// Self: the object is the actor (their own account or key).
	Self bool
	// Member: the actor is a member of the slice.
	Member bool
	// AdminTarget: the person acted on is an admin, or the roles granted
	// include admin.
	AdminTarget bool
}

// Allow decides whether actor may do op on t:
//
//   - admins may do anything;
//   - PIs manage their own site's people (not admins, and never granting
//     admin), keys and slices (not administrative ones);
//   - techs manage their own site's nodes, except boot states;
//   - users act on the slices they belong to (renew, tickets) and on their
//     own account's name and keys.
//
// A refusal wraps errdefs.ErrDenied and says who may do it instead.
func Allow(actor *store.Person, op Op, t Target) error {
	if actor == nil || !actor.Enabled {
		return fmt.Errorf("%s: the account is disabled; ask an admin: %w", op, errdefs.ErrDenied)
	}
	if actor.Has(store.RoleAdmin) {
		return nil
	}
	own := t.SiteID != 0 && t.SiteID == actor.SiteID
	pi := actor.Has(store.RolePI) && own
	tech := actor.Has(store.RoleTech) && own
	ok := false
	switch op {
	case OpPersonCreate, OpPersonRoles, OpPersonDelete:
		ok = pi && !t.AdminTarget
	case OpPersonUpdate, OpKeyAdd, OpKeyDelete:
		ok = t.Self || (pi && !t.AdminTarget)
	case OpNodeCreate, OpNodeUpdate, OpNodeDelete, OpNodeToken:
		ok = tech
	case OpSliceCreate, OpSliceUpdate, OpSliceDelete, OpSliceMembers, OpSliceAttrs, OpSliceNodes:
		ok = pi
	case OpSliceRenew:
		ok = pi || t.Member
	case OpSliceTickets:
		ok = t.Member
	}
	if ok {
		return nil
	}
	return fmt.Errorf("%s: %s may not do this; %s: %w", op, actor.Email, whoMay(op), errdefs.ErrDenied)
}

func whoMay(op Op) string {
	switch op {
	case OpPersonCreate, OpPersonRoles, OpPersonDelete:
		return "a PI of the person's site or an admin may"
	case OpPersonUpdate, OpKeyAdd, OpKeyDelete:
		return "the person, a PI of their site or an admin may"
	case OpNodeCreate, OpNodeUpdate, OpNodeDelete, OpNodeToken:
		return "a tech of the node's site or an admin may"
	case OpSliceCreate, OpSliceUpdate, OpSliceDelete, OpSliceMembers, OpSliceAttrs, OpSliceNodes:
		return "a PI of the slice's site or an admin may"
	case OpSliceRenew:
		return "a member of the slice, a PI of its site or an admin may"
	case OpSliceTickets:
		return "members of the slice may"
	}
	return "only admins may"
}
