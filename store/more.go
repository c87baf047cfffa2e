package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/plab/plab/errdefs"
)

// NodeGroup names the nodes whose tag Tag has value Value.
type NodeGroup struct {
	ID      int64
	Name    string
	Tag     string
	Value   string
	Created time.Time
}

// CreateNodeGroup adds g and sets its ID.
func (t *Tx) CreateNodeGroup(ctx context.Context, g *NodeGroup) error {
	id, err := t.insert(ctx, `INSERT INTO node_groups (name, tag, value, created) VALUES (?, ?, ?, ?)`, g.Name, g.Tag, g.Value, stamp(&g.Created))
	if err != nil {
		return wrap(err, "node group", g.Name)
	}
	g.ID = id
	return nil
}

func scanGroup(sc interface{ Scan(...any) error }) (*NodeGroup, error) {
	var g NodeGroup
	var created int64
	if err := sc.Scan(&g.ID, &g.Name, &g.Tag, &g.Value, &created); err != nil {
		return nil, err
	}
	g.Created = fromUnix(created)
	return &g, nil
}

// NodeGroup returns the node group with this name.
func (t *Tx) NodeGroup(ctx context.Context, name string) (*NodeGroup, error) {
	g, err := scanGroup(t.queryRow(ctx, `SELECT id, name, tag, value, created FROM node_groups WHERE name = ?`, name))
	if err != nil {
		return nil, wrap(t.d.classify(err), "node group", name)
	}
	return g, nil
}

// ListNodeGroups lists node groups by id.
func (t *Tx) ListNodeGroups(ctx context.Context, p Page) ([]NodeGroup, error) {
	rows, err := t.query(ctx, `SELECT id, name, tag, value, created FROM node_groups WHERE id > ? ORDER BY id LIMIT ?`, p.After, p.limit())
	if err != nil {
		return nil, err
	}
	return collect(rows, scanGroup)
}

// DeleteNodeGroup removes a node group and the slice attributes scoped to it.
func (t *Tx) DeleteNodeGroup(ctx context.Context, name string) error {
	res, err := t.exec(ctx, `DELETE FROM node_groups WHERE name = ?`, name)
	return changed(res, err, "node group", name)
}

// Attribute is a slice attribute: global to the slice, or scoped to one
// node group or one node (the sliver).
type Attribute struct {
	ID          int64
	SliceID     int64
	Name        string
	Value       string
	NodeID      int64 // 0: not node-scoped
	NodeGroupID int64 // 0: not group-scoped
}

// SetAttribute creates or replaces the attribute with a's slice, name and
// scope.
func (t *Tx) SetAttribute(ctx context.Context, a *Attribute) error {
	if a.NodeID != 0 && a.NodeGroupID != 0 {
		return fmt.Errorf("attribute %s: scoped to a node or a node group, not both: %w", a.Name, errdefs.ErrInvalid)
	}
	if _, err := t.exec(ctx, `DELETE FROM slice_attributes WHERE slice_id = ? AND name = ? AND COALESCE(node_id, 0) = ? AND COALESCE(node_group_id, 0) = ?`,
		a.SliceID, a.Name, a.NodeID, a.NodeGroupID); err != nil {
		return err
	}
	id, err := t.insert(ctx, `INSERT INTO slice_attributes (slice_id, name, value, node_id, node_group_id) VALUES (?, ?, ?, ?, ?)`,
		a.SliceID, a.Name, a.Value, nullID(a.NodeID), nullID(a.NodeGroupID))
	if err != nil {
		return wrap(err, "attribute", a.Name)
	}
	a.ID = id
	return nil
}

// DeleteAttribute removes the attribute with this id from a slice.
func (t *Tx) DeleteAttribute(ctx context.Context, sliceID, id int64) error {
	res, err := t.exec(ctx, `DELETE FROM slice_attributes WHERE slice_id = ? AND id = ?`, sliceID, id)
	return changed(res, err, "attribute", fmt.Sprint(id))
}

// Attributes lists a slice's attributes, every scope.
func (t *Tx) Attributes(ctx context.Context, sliceID int64) ([]Attribute, error) {
	rows, err := t.query(ctx, `SELECT id, slice_id, name, value, node_id, node_group_id FROM slice_attributes WHERE slice_id = ? ORDER BY name, id`, sliceID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(sc interface{ Scan(...any) error }) (*Attribute, error) {
		var a Attribute
		var n, g sql.NullInt64
		if err := sc.Scan(&a.ID, &a.SliceID, &a.Name, &a.Value, &n, &g); err != nil {
			return nil, err
		}
		a.NodeID, a.NodeGroupID = n.Int64, g.Int64
		return &a, nil
	})
}

// ResolveAttributes returns the slice's attributes as they apply on node:
// a node-scoped value beats a node-group one, which beats the global one.
// When node groups disagree, the group created first wins.
func (t *Tx) ResolveAttributes(ctx context.Context, sliceID int64, node *Node) (map[string]string, error) {
	attrs, err := t.Attributes(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	groups := map[int64]*NodeGroup{}
	for _, a := range attrs {
		if a.NodeGroupID != 0 && groups[a.NodeGroupID] == nil {
			g, err := t.NodeGroupByID(ctx, a.NodeGroupID)
			if err != nil {
				return nil, err
			}
			groups[g.ID] = g
		}
	}
	type pick struct {
		rank  int // 1 global, 2 node group, 3 node
		group int64
		value string
	}
	best := map[string]pick{}
	for _, a := range attrs {
		p := pick{rank: 1, value: a.Value}
		switch {
		case a.NodeID != 0:
			if a.NodeID != node.ID {
				continue
			}
			p.rank = 3
		case a.NodeGroupID != 0:
			if g := groups[a.NodeGroupID]; node.Tags[g.Tag] != g.Value {
				continue
			}
			p.rank, p.group = 2, a.NodeGroupID
		}
		cur, ok := best[a.Name]
		if !ok || p.rank > cur.rank || (p.rank == 2 && cur.rank == 2 && p.group < cur.group) {
			best[a.Name] = p
		}
	}
	out := make(map[string]string, len(best))
	for k, p := range best {
		out[k] = p.value
	}
	return out, nil
}

// BindNode puts a (delegated) slice on a node; UnbindNode takes it off.
func (t *Tx) BindNode(ctx context.Context, sliceID, nodeID int64) error {
	_, err := t.exec(ctx, `INSERT INTO slice_nodes (slice_id, node_id) VALUES (?, ?)`, sliceID, nodeID)
	return wrap(err, "slice node", fmt.Sprint(nodeID))
}

// UnbindNode takes a slice off a node.
func (t *Tx) UnbindNode(ctx context.Context, sliceID, nodeID int64) error {
	res, err := t.exec(ctx, `DELETE FROM slice_nodes WHERE slice_id = ? AND node_id = ?`, sliceID, nodeID)
	return changed(res, err, "slice node", fmt.Sprint(nodeID))
}

// SliceNodes lists the nodes a slice is bound to.
func (t *Tx) SliceNodes(ctx context.Context, sliceID int64) ([]Node, error) {
	rows, err := t.query(ctx, `SELECT `+nodeCols+` FROM nodes WHERE id IN (SELECT node_id FROM slice_nodes WHERE slice_id = ?) ORDER BY id`, sliceID)
	if err != nil {
		return nil, err
	}
	nodes, err := collect(rows, scanNode)
	if err != nil {
		return nil, err
	}
	return nodes, t.loadTags(ctx, nodes)
}

// NodeSlices lists the slices bound to a node.
func (t *Tx) NodeSlices(ctx context.Context, nodeID int64) ([]Slice, error) {
	rows, err := t.query(ctx, `SELECT `+sliceCols+` FROM slices WHERE id IN (SELECT slice_id FROM slice_nodes WHERE node_id = ?) ORDER BY id`, nodeID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSlice)
}

// CreateEnrollToken records the hash of a one-time enrollment token for a
// node. The token itself is never stored.
func (t *Tx) CreateEnrollToken(ctx context.Context, hash string, nodeID int64, expires time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO enroll_tokens (hash, node_id, expires, used) VALUES (?, ?, ?, 0)`, hash, nodeID, unix(expires))
	return wrap(err, "enrollment token for node", fmt.Sprint(nodeID))
}

// UseEnrollToken spends the token with this hash and returns its node. An
// unknown, used or expired token is refused the same way.
func (t *Tx) UseEnrollToken(ctx context.Context, hash string, now time.Time) (int64, error) {
	var nodeID int64
	err := t.queryRow(ctx, `UPDATE enroll_tokens SET used = 1 WHERE hash = ? AND used = 0 AND expires > ? RETURNING node_id`, hash, unix(now)).Scan(&nodeID)
	if err != nil {
		if err == sql.ErrNoRows {
			return 0, fmt.Errorf("enrollment token unknown, used or expired; ask an operator for a new one: %w", errdefs.ErrDenied)
		}
		return 0, t.d.classify(err)
	}
	return nodeID, nil
}

// PutReport stores a node's latest resource report.
func (t *Tx) PutReport(ctx context.Context, nodeID int64, at time.Time, body json.RawMessage) error {
	if !json.Valid(body) {
		return fmt.Errorf("node report is not JSON: %w", errdefs.ErrInvalid)
	}
	_, err := t.exec(ctx, `INSERT INTO node_reports (node_id, at, body) VALUES (?, ?, ?)
		ON CONFLICT (node_id) DO UPDATE SET at = excluded.at, body = excluded.body`, nodeID, unix(at), string(body))
	return wrap(err, "report of node", fmt.Sprint(nodeID))
}

// Report is a node's latest report.
type Report struct {
	NodeID int64
	At     time.Time
	Body   json.RawMessage
}

// Reports lists the nodes' latest reports by node id.
func (t *Tx) Reports(ctx context.Context, p Page) ([]Report, error) {
	rows, err := t.query(ctx, `SELECT node_id, at, body FROM node_reports WHERE node_id > ? ORDER BY node_id LIMIT ?`, p.After, p.limit())
	if err != nil {
		return nil, err
	}
	return collect(rows, func(sc interface{ Scan(...any) error }) (*Report, error) {
		var r Report
		var at int64
		var body string
		if err := sc.Scan(&r.NodeID, &at, &body); err != nil {
			return nil, err
		}
		r.At, r.Body = fromUnix(at), json.RawMessage(body)
		return &r, nil
	})
}

// RecordChange notes that what node nodeID must host changed (0: every
// node), and returns the change's number. Nodes long-poll for numbers
// above the last they saw.
func (t *Tx) RecordChange(ctx context.Context, nodeID int64) (int64, error) {
	return t.insert(ctx, `INSERT INTO changes (node_id, at) VALUES (?, ?)`, nodeID, time.Now().Unix())
}

// LatestChange returns the number of the latest change concerning node
// nodeID (its own or everyone's), 0 when none.
func (t *Tx) LatestChange(ctx context.Context, nodeID int64) (int64, error) {
	var id int64
	err := t.queryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM changes WHERE node_id = ? OR node_id = 0`, nodeID).Scan(&id)
	return id, t.d.classify(err)
}

// NodeByID returns the node with this id, with its tags.
func (t *Tx) NodeByID(ctx context.Context, id int64) (*Node, error) {
	n, err := scanNode(t.queryRow(ctx, `SELECT `+nodeCols+` FROM nodes WHERE id = ?`, id))
	if err != nil {
		return nil, wrap(t.d.classify(err), "node", fmt.Sprint(id))
	}
	ns := []Node{*n}
	if err := t.loadTags(ctx, ns); err != nil {
		return nil, err
	}
	return &ns[0], nil
}

// NodeGroupByID returns the node group with this id.
func (t *Tx) NodeGroupByID(ctx context.Context, id int64) (*NodeGroup, error) {
	g, err := scanGroup(t.queryRow(ctx, `SELECT id, name, tag, value, created FROM node_groups WHERE id = ?`, id))
	if err != nil {
		return nil, wrap(t.d.classify(err), "node group", fmt.Sprint(id))
	}
	return g, nil
}

// Report returns a node's latest report.
func (t *Tx) Report(ctx context.Context, nodeID int64) (*Report, error) {
	var r Report
	var at int64
	var body string
	err := t.queryRow(ctx, `SELECT node_id, at, body FROM node_reports WHERE node_id = ?`, nodeID).Scan(&r.NodeID, &at, &body)
	if err != nil {
		return nil, wrap(t.d.classify(err), "report of node", fmt.Sprint(nodeID))
	}
	r.At, r.Body = fromUnix(at), json.RawMessage(body)
	return &r, nil
}

// CountSlivers counts the slivers a site's slices may hold at time now:
// the (slice, node) pairs with a valid, unrevoked ticket.
func (t *Tx) CountSlivers(ctx context.Context, siteID int64, now time.Time) (int, error) {
	var n int
	err := t.queryRow(ctx, `SELECT COUNT(*) FROM grants WHERE site_id = ? AND not_after > ?`, siteID, unix(now)).Scan(&n)
	return n, t.d.classify(err)
}

// LockSite and LockSlice make concurrent transactions that check and then
// write about the same site or slice take turns on PostgreSQL (SELECT …
// FOR UPDATE), so a limit read by one is not exceeded by another. On
// SQLite, whose writer is exclusive, they only check existence.
func (t *Tx) LockSite(ctx context.Context, id int64) error {
	return t.lock(ctx, `SELECT id FROM sites WHERE id = ?`, id, "site", fmt.Sprint(id))
}

// LockSlice: see LockSite.
func (t *Tx) LockSlice(ctx context.Context, name string) error {
	return t.lock(ctx, `SELECT id FROM slices WHERE name = ?`, name, "slice", name)
}

func (t *Tx) lock(ctx context.Context, q string, arg any, what, name string) error {
	if t.d.name == "postgres" {
		q += " FOR UPDATE"
	}
	var id int64
	if err := t.queryRow(ctx, q, arg).Scan(&id); err != nil {
		return wrap(t.d.classify(err), what, name)
	}
	return nil
}

// CountUngrantedBindings counts a site's delegated bindings (slice on
// node) that hold no valid grant yet at now: slivers the nodes will ask
// tickets for at their next sync.
func (t *Tx) CountUngrantedBindings(ctx context.Context, siteID int64, now time.Time) (int, error) {
	var n int
	err := t.queryRow(ctx, `SELECT COUNT(*) FROM slice_nodes b JOIN slices s ON s.id = b.slice_id
		WHERE s.site_id = ? AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.slice_name = s.name AND g.node_id = b.node_id AND g.not_after > ?)`,
		siteID, unix(now)).Scan(&n)
	return n, t.d.classify(err)
}
