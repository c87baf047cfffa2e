package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/plab/plab/errdefs"
)

// Page selects a slice of a listing: the rows with an id above After, at
// most Limit of them (DefaultLimit when 0, at most MaxLimit), by id.
type Page struct {
	After int64
	Limit int
}

// Limits of a Page.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

func (p Page) limit() int {
	switch {
	case p.Limit <= 0:
		return DefaultLimit
	case p.Limit > MaxLimit:
		return MaxLimit
	}
	return p.Limit
}

// Site is an institution hosting nodes and running slices.
type Site struct {
	ID         int64
	LoginBase  string // prefix of its slices' names
	Name       string
	MaxSlices  int
	MaxSlivers int
	Enabled    bool
	Created    time.Time
}

// Role is what a person may do.
type Role string

// The roles.
const (
	RoleAdmin Role = "admin"
	RolePI    Role = "pi"
	RoleTech  Role = "tech"
	RoleUser  Role = "user"
)

// Person is someone with an account: a site's PI, tech or user, or an
// admin of the testbed.
type Person struct {
	ID      int64
	Email   string
	Name    string
	SiteID  int64 // 0: no site
	Roles   []Role
	Enabled bool
	Created time.Time
}

// Has reports whether p holds role r.
func (p *Person) Has(r Role) bool {
	for _, x := range p.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Key is a person's SSH public key, named by its fingerprint.
type Key struct {
	Fingerprint string
	PersonID    int64
	PublicKey   string // authorized_keys form
	Created     time.Time
}

// Node is a machine of a site.
type Node struct {
	ID        int64
	Hostname  string
	SiteID    int64
	Addresses []string
	BootState string
	// Key is the fingerprint of the key the node enrolled with: only its
	// certificate speaks for this registration. Empty until enrollment.
	Key         string
	Tags        map[string]string
	Capacity    json.RawMessage // the node's resources, as it reports them
	LastContact time.Time
	Created     time.Time
	// SSHHostKey (authorized_keys form) and SSHPort are the node's SSH
	// gateway as it last reported it; "" and 0 until it does.
	SSHHostKey string
	SSHPort    int
	// APIPort is the port of the node's API as it last reported it.
	APIPort int
}

// Slice is a set of slivers across nodes, named <loginbase>_<name>.
type Slice struct {
	ID            int64
	Name          string
	SiteID        int64
	Description   string
	URL           string
	Instantiation string // "direct" or "delegated"
	Enabled       bool
	MaxNodes      int
	Expires       time.Time
	Created       time.Time
}

// TicketRecord is a ticket PLC issued, kept so that it can be revoked and
// so that no ticket a client received is ever unknown to PLC.
type TicketRecord struct {
	ID        string
	Slice     string
	NodeID    int64
	Principal string
	Doc       string
	NotBefore time.Time
	NotAfter  time.Time
	Revoked   bool
	Created   time.Time
}

// Event is one line of the audit log: who did what to which object, when,
// and how it ended.
type Event struct {
	ID     int64
	At     time.Time
	Actor  string
	Action string
	Object string
	Result string
}

func stamp(t *time.Time) int64 {
	if t.IsZero() {
		*t = time.Now().UTC().Truncate(time.Second)
	}
	return t.Unix()
}

func notFound(what, name string) error {
	return fmt.Errorf("%s %q: %w", what, name, errdefs.ErrNotFound)
}

// wrap gives a constraint error the object it concerns.
func wrap(err error, what, name string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %q: %w", what, name, err)
}

// ---- sites

const siteCols = `id, login_base, name, max_slices, max_slivers, enabled, created`

func scanSite(sc interface{ Scan(...any) error }) (*Site, error) {
	var s Site
	var en int
	var created int64
	if err := sc.Scan(&s.ID, &s.LoginBase, &s.Name, &s.MaxSlices, &s.MaxSlivers, &en, &created); err != nil {
		return nil, err
	}
	s.Enabled, s.Created = en != 0, fromUnix(created)
	return &s, nil
}

// CreateSite adds s and sets its ID (and Created when zero).
func (t *Tx) CreateSite(ctx context.Context, s *Site) error {
	id, err := t.insert(ctx, `INSERT INTO sites (login_base, name, max_slices, max_slivers, enabled, created) VALUES (?, ?, ?, ?, ?, ?)`,
		s.LoginBase, s.Name, s.MaxSlices, s.MaxSlivers, boolInt(s.Enabled), stamp(&s.Created))
	if err != nil {
		return wrap(err, "site", s.LoginBase)
	}
	s.ID = id
	return nil
}

// Site returns the site with this login base.
func (t *Tx) Site(ctx context.Context, loginBase string) (*Site, error) {
	s, err := scanSite(t.queryRow(ctx, `SELECT `+siteCols+` FROM sites WHERE login_base = ?`, loginBase))
	if err != nil {
		return nil, wrap(t.d.classify(err), "site", loginBase)
	}
	return s, nil
}

// SiteByID returns the site with this id.
func (t *Tx) SiteByID(ctx context.Context, id int64) (*Site, error) {
	s, err := scanSite(t.queryRow(ctx, `SELECT `+siteCols+` FROM sites WHERE id = ?`, id))
	if err != nil {
		return nil, wrap(t.d.classify(err), "site", fmt.Sprint(id))
	}
	return s, nil
}

// ListSites lists sites by id.
func (t *Tx) ListSites(ctx context.Context, p Page) ([]Site, error) {
	rows, err := t.query(ctx, `SELECT `+siteCols+` FROM sites WHERE id > ? ORDER BY id LIMIT ?`, p.After, p.limit())
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSite)
}

// UpdateSite writes every field of s but its ID and Created.
func (t *Tx) UpdateSite(ctx context.Context, s *Site) error {
	res, err := t.exec(ctx, `UPDATE sites SET login_base = ?, name = ?, max_slices = ?, max_slivers = ?, enabled = ? WHERE id = ?`,
		s.LoginBase, s.Name, s.MaxSlices, s.MaxSlivers, boolInt(s.Enabled), s.ID)
	return changed(res, err, "site", s.LoginBase)
}

// DeleteSite removes a site that no longer has people, nodes or slices.
func (t *Tx) DeleteSite(ctx context.Context, loginBase string) error {
	res, err := t.exec(ctx, `DELETE FROM sites WHERE login_base = ?`, loginBase)
	return changed(res, err, "site", loginBase)
}

// ---- persons and keys

const personCols = `id, email, name, site_id, roles, enabled, created`

func scanPerson(sc interface{ Scan(...any) error }) (*Person, error) {
	var p Person
	var site sql.NullInt64
	var roles string
	var en int
	var created int64
	if err := sc.Scan(&p.ID, &p.Email, &p.Name, &site, &roles, &en, &created); err != nil {
		return nil, err
	}
	p.SiteID, p.Enabled, p.Created = site.Int64, en != 0, fromUnix(created)
	for _, r := range strings.Split(roles, ",") {
		if r != "" {
			p.Roles = append(p.Roles, Role(r))
		}
	}
	return &p, nil
}

func rolesText(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

func nullID(id int64) sql.NullInt64 { return sql.NullInt64{Int64: id, Valid: id != 0} }

// CreatePerson adds p and sets its ID.
func (t *Tx) CreatePerson(ctx context.Context, p *Person) error {
	id, err := t.insert(ctx, `INSERT INTO persons (email, name, site_id, roles, enabled, created) VALUES (?, ?, ?, ?, ?, ?)`,
		p.Email, p.Name, nullID(p.SiteID), rolesText(p.Roles), boolInt(p.Enabled), stamp(&p.Created))
	if err != nil {
		return wrap(err, "person", p.Email)
	}
	p.ID = id
	return nil
}

// Person returns the person with this email.
func (t *Tx) Person(ctx context.Context, email string) (*Person, error) {
	p, err := scanPerson(t.queryRow(ctx, `SELECT `+personCols+` FROM persons WHERE email = ?`, email))
	if err != nil {
		return nil, wrap(t.d.classify(err), "person", email)
	}
	return p, nil
}

// PersonByID returns the person with this id.
func (t *Tx) PersonByID(ctx context.Context, id int64) (*Person, error) {
	p, err := scanPerson(t.queryRow(ctx, `SELECT `+personCols+` FROM persons WHERE id = ?`, id))
	if err != nil {
		return nil, wrap(t.d.classify(err), "person", fmt.Sprint(id))
	}
	return p, nil
}

// ListPersons lists people by id; siteID, when not 0, keeps one site's.
func (t *Tx) ListPersons(ctx context.Context, siteID int64, p Page) ([]Person, error) {
	rows, err := t.query(ctx, `SELECT `+personCols+` FROM persons WHERE id > ? AND (? = 0 OR site_id = ?) ORDER BY id LIMIT ?`, p.After, siteID, siteID, p.limit())
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPerson)
}

// UpdatePerson writes every field of p but its ID and Created.
func (t *Tx) UpdatePerson(ctx context.Context, p *Person) error {
	res, err := t.exec(ctx, `UPDATE persons SET email = ?, name = ?, site_id = ?, roles = ?, enabled = ? WHERE id = ?`,
		p.Email, p.Name, nullID(p.SiteID), rolesText(p.Roles), boolInt(p.Enabled), p.ID)
	return changed(res, err, "person", p.Email)
}

// DeletePerson removes a person, their keys and slice memberships.
func (t *Tx) DeletePerson(ctx context.Context, email string) error {
	res, err := t.exec(ctx, `DELETE FROM persons WHERE email = ?`, email)
	return changed(res, err, "person", email)
}

// AddKey records k for its person.
func (t *Tx) AddKey(ctx context.Context, k *Key) error {
	_, err := t.exec(ctx, `INSERT INTO keys (fingerprint, person_id, public_key, created) VALUES (?, ?, ?, ?)`,
		k.Fingerprint, k.PersonID, k.PublicKey, stamp(&k.Created))
	return wrap(err, "key", k.Fingerprint)
}

// Keys lists a person's keys.
func (t *Tx) Keys(ctx context.Context, personID int64) ([]Key, error) {
	rows, err := t.query(ctx, `SELECT fingerprint, person_id, public_key, created FROM keys WHERE person_id = ? ORDER BY created, fingerprint`, personID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanKey)
}

func scanKey(sc interface{ Scan(...any) error }) (*Key, error) {
	var k Key
	var created int64
	if err := sc.Scan(&k.Fingerprint, &k.PersonID, &k.PublicKey, &created); err != nil {
		return nil, err
	}
	k.Created = fromUnix(created)
	return &k, nil
}

// KeyOwner returns the key with this fingerprint and its person: how a
// signed request finds who signed it.
func (t *Tx) KeyOwner(ctx context.Context, fingerprint string) (*Key, *Person, error) {
	k, err := scanKey(t.queryRow(ctx, `SELECT fingerprint, person_id, public_key, created FROM keys WHERE fingerprint = ?`, fingerprint))
	if err != nil {
		return nil, nil, wrap(t.d.classify(err), "key", fingerprint)
	}
	p, err := t.PersonByID(ctx, k.PersonID)
	if err != nil {
		return nil, nil, err
	}
	return k, p, nil
}

// DeleteKey removes a key.
func (t *Tx) DeleteKey(ctx context.Context, fingerprint string) error {
	res, err := t.exec(ctx, `DELETE FROM keys WHERE fingerprint = ?`, fingerprint)
	return changed(res, err, "key", fingerprint)
}

// ---- events

// Audit appends e to the audit log (At defaults to now).
func (t *Tx) Audit(ctx context.Context, e Event) error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("audit event without actor or action: %w", errdefs.ErrInvalid)
	}
	if e.Result == "" {
		e.Result = "ok"
	}
	_, err := t.insert(ctx, `INSERT INTO events (at, actor, action, object, result) VALUES (?, ?, ?, ?, ?)`,
		stamp(&e.At), e.Actor, e.Action, e.Object, e.Result)
	return err
}

// Events lists the audit log by id.
func (t *Tx) Events(ctx context.Context, p Page) ([]Event, error) {
	rows, err := t.query(ctx, `SELECT id, at, actor, action, object, result FROM events WHERE id > ? ORDER BY id LIMIT ?`, p.After, p.limit())
	if err != nil {
		return nil, err
	}
	return collect(rows, func(sc interface{ Scan(...any) error }) (*Event, error) {
		var e Event
		var at int64
		if err := sc.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Object, &e.Result); err != nil {
			return nil, err
		}
		e.At = fromUnix(at)
		return &e, nil
	})
}

// ---- helpers

func collect[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (*T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

// changed turns an UPDATE or DELETE that touched no row into not found.
func changed(res sql.Result, err error, what, name string) error {
	if err != nil {
		return wrap(err, what, name)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound(what, name)
	}
	return nil
}
