package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// ---- nodes

const nodeCols = `id, hostname, site_id, addresses, boot_state, key, capacity, last_contact, created, ssh_host_key, ssh_port, api_port`

func scanNode(sc interface{ Scan(...any) error }) (*Node, error) {
	var n Node
	var addrs, capacity string
	var last, created int64
	if err := sc.Scan(&n.ID, &n.Hostname, &n.SiteID, &addrs, &n.BootState, &n.Key, &capacity, &last, &created, &n.SSHHostKey, &n.SSHPort, &n.APIPort); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(addrs), &n.Addresses); err != nil {
		return nil, fmt.Errorf("node %s: addresses: %w", n.Hostname, err)
	}
	if capacity != "" {
		n.Capacity = json.RawMessage(capacity)
	}
	n.LastContact, n.Created = fromUnix(last), fromUnix(created)
	return &n, nil
}

func nodeJSON(n *Node) (string, string, error) {
	addrs := n.Addresses
	if addrs == nil {
		addrs = []string{}
	}
	a, err := json.Marshal(addrs)
	if err != nil {
		return "", "", err
	}
	c := string(n.Capacity)
	if c != "" && !json.Valid(n.Capacity) {
		return "", "", fmt.Errorf("node %s: capacity is not JSON", n.Hostname)
	}
	return string(a), c, nil
}

// CreateNode adds n with its tags and sets its ID.
func (t *Tx) CreateNode(ctx context.Context, n *Node) error {
	addrs, capacity, err := nodeJSON(n)
	if err != nil {
		return err
	}
	id, err := t.insert(ctx, `INSERT INTO nodes (hostname, site_id, addresses, boot_state, key, capacity, last_contact, created, ssh_host_key, ssh_port, api_port) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		n.Hostname, n.SiteID, addrs, n.BootState, n.Key, capacity, unix(n.LastContact), stamp(&n.Created), n.SSHHostKey, n.SSHPort, n.APIPort)
	if err != nil {
		return wrap(err, "node", n.Hostname)
	}
	n.ID = id
	return t.setTags(ctx, n)
}

func (t *Tx) setTags(ctx context.Context, n *Node) error {
	if _, err := t.exec(ctx, `DELETE FROM node_tags WHERE node_id = ?`, n.ID); err != nil {
		return err
	}
	names := make([]string, 0, len(n.Tags))
	for k := range n.Tags {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if _, err := t.exec(ctx, `INSERT INTO node_tags (node_id, name, value) VALUES (?, ?, ?)`, n.ID, k, n.Tags[k]); err != nil {
			return wrap(err, "node tag", k)
		}
	}
	return nil
}

func (t *Tx) loadTags(ctx context.Context, nodes []Node) error {
	if len(nodes) == 0 {
		return nil
	}
	byID := make(map[int64]*Node, len(nodes))
	for i := range nodes {
		byID[nodes[i].ID] = &nodes[i]
	}
	rows, err := t.query(ctx, `SELECT node_id, name, value FROM node_tags WHERE node_id >= ? AND node_id <= ?`, nodes[0].ID, nodes[len(nodes)-1].ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var k, v string
		if err := rows.Scan(&id, &k, &v); err != nil {
			return err
		}
		if n := byID[id]; n != nil {
			if n.Tags == nil {
				n.Tags = map[string]string{}
			}
			n.Tags[k] = v
		}
	}
	return rows.Err()
}

// Node returns the node with this hostname, with its tags.
func (t *Tx) Node(ctx context.Context, hostname string) (*Node, error) {
	n, err := scanNode(t.queryRow(ctx, `SELECT `+nodeCols+` FROM nodes WHERE hostname = ?`, hostname))
	if err != nil {
		return nil, wrap(t.d.classify(err), "node", hostname)
	}
	ns := []Node{*n}
	if err := t.loadTags(ctx, ns); err != nil {
		return nil, err
	}
	return &ns[0], nil
}

// NodeFilter selects nodes; zero fields select all.
type NodeFilter struct {
	SiteID    int64
	BootState string
	// Tag and Value keep the nodes whose tag Tag is Value.
	Tag, Value string
}

// ListNodes lists nodes by id, with their tags.
func (t *Tx) ListNodes(ctx context.Context, f NodeFilter, p Page) ([]Node, error) {
	rows, err := t.query(ctx, `SELECT `+nodeCols+` FROM nodes WHERE id > ?
		AND (? = 0 OR site_id = ?)
		AND (? = '' OR boot_state = ?)
		AND (? = '' OR id IN (SELECT node_id FROM node_tags WHERE name = ? AND value = ?))
		ORDER BY id LIMIT ?`,
		p.After, f.SiteID, f.SiteID, f.BootState, f.BootState, f.Tag, f.Tag, f.Value, p.limit())
	if err != nil {
		return nil, err
	}
	nodes, err := collect(rows, scanNode)
	if err != nil {
		return nil, err
	}
	return nodes, t.loadTags(ctx, nodes)
}

// UpdateNode writes every field of n but its ID and Created, and replaces
// its tags.
func (t *Tx) UpdateNode(ctx context.Context, n *Node) error {
	addrs, capacity, err := nodeJSON(n)
	if err != nil {
		return err
	}
	res, err := t.exec(ctx, `UPDATE nodes SET hostname = ?, site_id = ?, addresses = ?, boot_state = ?, key = ?, capacity = ?, last_contact = ?, ssh_host_key = ?, ssh_port = ?, api_port = ? WHERE id = ?`,
		n.Hostname, n.SiteID, addrs, n.BootState, n.Key, capacity, unix(n.LastContact), n.SSHHostKey, n.SSHPort, n.APIPort, n.ID)
	if err := changed(res, err, "node", n.Hostname); err != nil {
		return err
	}
	return t.setTags(ctx, n)
}

// TouchNode records that the node was heard from at.
func (t *Tx) TouchNode(ctx context.Context, hostname string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE nodes SET last_contact = ? WHERE hostname = ?`, unix(at), hostname)
	return changed(res, err, "node", hostname)
}

// SetNodeSSH records the host key (authorized_keys form) and port of the
// node's SSH gateway.
func (t *Tx) SetNodeSSH(ctx context.Context, hostname, hostKey string, port int) error {
	res, err := t.exec(ctx, `UPDATE nodes SET ssh_host_key = ?, ssh_port = ? WHERE hostname = ?`, hostKey, port, hostname)
	return changed(res, err, "node", hostname)
}

// SetNodeAPIPort records the port of the node's API.
func (t *Tx) SetNodeAPIPort(ctx context.Context, hostname string, port int) error {
	res, err := t.exec(ctx, `UPDATE nodes SET api_port = ? WHERE hostname = ?`, port, hostname)
	return changed(res, err, "node", hostname)
}

// DeleteNode removes a node, its tags and its tickets.
func (t *Tx) DeleteNode(ctx context.Context, hostname string) error {
	res, err := t.exec(ctx, `DELETE FROM nodes WHERE hostname = ?`, hostname)
	return changed(res, err, "node", hostname)
}

// ---- slices

const sliceCols = `id, name, site_id, description, url, instantiation, enabled, max_nodes, expires, created`

func scanSlice(sc interface{ Scan(...any) error }) (*Slice, error) {
	var s Slice
	var en int
	var expires, created int64
	if err := sc.Scan(&s.ID, &s.Name, &s.SiteID, &s.Description, &s.URL, &s.Instantiation, &en, &s.MaxNodes, &expires, &created); err != nil {
		return nil, err
	}
	s.Enabled, s.Expires, s.Created = en != 0, fromUnix(expires), fromUnix(created)
	return &s, nil
}

// CreateSlice adds s and sets its ID.
func (t *Tx) CreateSlice(ctx context.Context, s *Slice) error {
	id, err := t.insert(ctx, `INSERT INTO slices (name, site_id, description, url, instantiation, enabled, max_nodes, expires, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Name, s.SiteID, s.Description, s.URL, s.Instantiation, boolInt(s.Enabled), s.MaxNodes, unix(s.Expires), stamp(&s.Created))
	if err != nil {
		return wrap(err, "slice", s.Name)
	}
	s.ID = id
	return nil
}

// Slice returns the slice with this name.
func (t *Tx) Slice(ctx context.Context, name string) (*Slice, error) {
	s, err := scanSlice(t.queryRow(ctx, `SELECT `+sliceCols+` FROM slices WHERE name = ?`, name))
	if err != nil {
		return nil, wrap(t.d.classify(err), "slice", name)
	}
	return s, nil
}

// SliceFilter selects slices; zero fields select all.
type SliceFilter struct {
	SiteID int64
	// MemberID keeps the slices this person belongs to.
	MemberID int64
}

// ListSlices lists slices by id.
func (t *Tx) ListSlices(ctx context.Context, f SliceFilter, p Page) ([]Slice, error) {
	rows, err := t.query(ctx, `SELECT `+sliceCols+` FROM slices WHERE id > ?
		AND (? = 0 OR site_id = ?)
		AND (? = 0 OR id IN (SELECT slice_id FROM slice_members WHERE person_id = ?))
		ORDER BY id LIMIT ?`, p.After, f.SiteID, f.SiteID, f.MemberID, f.MemberID, p.limit())
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSlice)
}

// CountSlices counts a site's slices (for its max_slices limit).
func (t *Tx) CountSlices(ctx context.Context, siteID int64) (int, error) {
	var n int
	err := t.queryRow(ctx, `SELECT COUNT(*) FROM slices WHERE site_id = ?`, siteID).Scan(&n)
	return n, t.d.classify(err)
}

// UpdateSlice writes every field of s but its ID, name, site and Created.
func (t *Tx) UpdateSlice(ctx context.Context, s *Slice) error {
	res, err := t.exec(ctx, `UPDATE slices SET description = ?, url = ?, instantiation = ?, enabled = ?, max_nodes = ?, expires = ? WHERE id = ?`,
		s.Description, s.URL, s.Instantiation, boolInt(s.Enabled), s.MaxNodes, unix(s.Expires), s.ID)
	return changed(res, err, "slice", s.Name)
}

// DeleteSlice removes a slice and its memberships. Its tickets stay,
// revoked, so nodes learn to drop them.
func (t *Tx) DeleteSlice(ctx context.Context, name string) error {
	res, err := t.exec(ctx, `DELETE FROM slices WHERE name = ?`, name)
	if err := changed(res, err, "slice", name); err != nil {
		return err
	}
	_, err = t.RevokeTickets(ctx, name)
	return err
}

// AddMember makes a person a member of a slice.
func (t *Tx) AddMember(ctx context.Context, sliceID, personID int64) error {
	_, err := t.exec(ctx, `INSERT INTO slice_members (slice_id, person_id) VALUES (?, ?)`, sliceID, personID)
	return wrap(err, "slice member", fmt.Sprint(personID))
}

// RemoveMember ends a membership.
func (t *Tx) RemoveMember(ctx context.Context, sliceID, personID int64) error {
	res, err := t.exec(ctx, `DELETE FROM slice_members WHERE slice_id = ? AND person_id = ?`, sliceID, personID)
	return changed(res, err, "slice member", fmt.Sprint(personID))
}

// Members lists a slice's members by id.
func (t *Tx) Members(ctx context.Context, sliceID int64) ([]Person, error) {
	rows, err := t.query(ctx, `SELECT `+personCols+` FROM persons WHERE id IN (SELECT person_id FROM slice_members WHERE slice_id = ?) ORDER BY id`, sliceID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPerson)
}

// ---- tickets

// InsertTicket records a ticket PLC is about to hand out, and the grant it
// gives its slice on its node: the latest expiry of the slice's valid
// tickets there. Grants are what a site's sliver count and a slice's node
// count are made of, whatever the number of tickets.
func (t *Tx) InsertTicket(ctx context.Context, r *TicketRecord) error {
	_, err := t.exec(ctx, `INSERT INTO tickets (id, slice_name, node_id, principal, doc, not_before, not_after, revoked, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Slice, r.NodeID, r.Principal, r.Doc, unix(r.NotBefore), unix(r.NotAfter), boolInt(r.Revoked), stamp(&r.Created))
	if err != nil || r.Revoked {
		return wrap(err, "ticket", r.ID)
	}
	_, err = t.exec(ctx, `INSERT INTO grants (slice_name, node_id, site_id, not_after)
		SELECT ?, ?, COALESCE((SELECT site_id FROM slices WHERE name = ?), 0), ?
		ON CONFLICT (slice_name, node_id) DO UPDATE SET not_after =
			CASE WHEN excluded.not_after > grants.not_after THEN excluded.not_after ELSE grants.not_after END`,
		r.Slice, r.NodeID, r.Slice, unix(r.NotAfter))
	return wrap(err, "ticket", r.ID)
}

// GrantedNodes lists the nodes where a slice holds a valid ticket at now.
func (t *Tx) GrantedNodes(ctx context.Context, slice string, now time.Time) ([]int64, error) {
	rows, err := t.query(ctx, `SELECT node_id FROM grants WHERE slice_name = ? AND not_after > ? ORDER BY node_id`, slice, unix(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// FindTicket returns a valid, unrevoked ticket of slice on node for
// principal expiring exactly at notAfter, or ErrNotFound.
func (t *Tx) FindTicket(ctx context.Context, slice string, nodeID int64, principal string, notAfter time.Time) (*TicketRecord, error) {
	r, err := scanTicket(t.queryRow(ctx, `SELECT `+ticketCols+` FROM tickets
		WHERE slice_name = ? AND node_id = ? AND principal = ? AND revoked = 0 AND not_after = ? ORDER BY created DESC LIMIT 1`,
		slice, nodeID, principal, unix(notAfter)))
	if err != nil {
		return nil, wrap(t.d.classify(err), "ticket of slice", slice)
	}
	return r, nil
}

// Ticket returns the ticket with this id.
func (t *Tx) Ticket(ctx context.Context, id string) (*TicketRecord, error) {
	r, err := scanTicket(t.queryRow(ctx, `SELECT `+ticketCols+` FROM tickets WHERE id = ?`, id))
	if err != nil {
		return nil, wrap(t.d.classify(err), "ticket", id)
	}
	return r, nil
}

const ticketCols = `id, slice_name, node_id, principal, doc, not_before, not_after, revoked, created`

func scanTicket(sc interface{ Scan(...any) error }) (*TicketRecord, error) {
	var r TicketRecord
	var nbf, exp, created int64
	var rev int
	if err := sc.Scan(&r.ID, &r.Slice, &r.NodeID, &r.Principal, &r.Doc, &nbf, &exp, &rev, &created); err != nil {
		return nil, err
	}
	r.NotBefore, r.NotAfter, r.Revoked, r.Created = fromUnix(nbf), fromUnix(exp), rev != 0, fromUnix(created)
	return &r, nil
}

// Tickets lists a slice's tickets (all of them when slice is ""), oldest
// first.
func (t *Tx) Tickets(ctx context.Context, slice string) ([]TicketRecord, error) {
	rows, err := t.query(ctx, `SELECT `+ticketCols+` FROM tickets WHERE (? = '' OR slice_name = ?) ORDER BY created, id`, slice, slice)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanTicket)
}

// RevokeSiteTickets revokes every ticket of a site's slices.
func (t *Tx) RevokeSiteTickets(ctx context.Context, siteID int64) error {
	if _, err := t.exec(ctx, `UPDATE tickets SET revoked = 1 WHERE revoked = 0 AND slice_name IN (SELECT name FROM slices WHERE site_id = ?)`, siteID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `DELETE FROM grants WHERE site_id = ?`, siteID)
	return err
}

// RevokeTickets revokes every ticket of a slice and returns how many were
// not revoked before.
func (t *Tx) RevokeTickets(ctx context.Context, slice string) (int64, error) {
	res, err := t.exec(ctx, `UPDATE tickets SET revoked = 1 WHERE slice_name = ? AND revoked = 0`, slice)
	if err != nil {
		return 0, err
	}
	if _, err := t.exec(ctx, `DELETE FROM grants WHERE slice_name = ?`, slice); err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
