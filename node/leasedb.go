package node

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	_ "modernc.org/sqlite" // the lease database
)

// The lease database is the truth on the node: what it promised, to whom,
// until when. It is SQLite with a full fsync at every commit, so a lease the
// node answered with survives kill -9 and power loss.
//
// A lease row goes through two states:
//
//	         redeem: verify, admit
//	(none) ─────────────────────────▶ pending ──sliver running──▶ active
//	   ▲                                 │                          │
//	   └──── crash, or creation failed ──┘   expiry, delete ────────┴──▶ (none)
//
// A pending row names a sliver that may be half made and was never
// acknowledged: recovery destroys it and forgets the ticket's redemption, so
// the ticket may be presented again. An active row was (or was about to be)
// acknowledged: recovery makes sure its sliver runs.

const schema = `
CREATE TABLE IF NOT EXISTS leases (
	sliver TEXT PRIMARY KEY,
	slice TEXT NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('pending', 'active')),
	principal TEXT NOT NULL,
	delegated INTEGER NOT NULL,
	ticket_id TEXT NOT NULL,
	ticket_not_after INTEGER NOT NULL,
	lease_id TEXT NOT NULL,
	doc TEXT NOT NULL,
	not_after INTEGER NOT NULL,
	renewals INTEGER NOT NULL,
	resources TEXT NOT NULL,
	attributes TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
	sliver TEXT NOT NULL REFERENCES leases (sliver) ON DELETE CASCADE,
	fingerprint TEXT NOT NULL,
	key TEXT NOT NULL,
	PRIMARY KEY (sliver, fingerprint)
);
CREATE INDEX IF NOT EXISTS keys_by_fingerprint ON keys (fingerprint);
CREATE TABLE IF NOT EXISTS redeemed (
	id TEXT PRIMARY KEY,
	expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
	k TEXT PRIMARY KEY,
	v TEXT NOT NULL
);
`

// leaseState is a lease row's state.
type leaseState string

const (
	statePending leaseState = "pending"
	stateActive  leaseState = "active"
)

// leaseRow is one row of leases, with its keys.
type leaseRow struct {
	Sliver         string
	Slice          string
	State          leaseState
	Principal      string
	Delegated      bool
	TicketID       string
	TicketNotAfter time.Time
	Lease          ticket.Lease
	Doc            string
	Resources      ticket.Resources
	Attributes     map[string]string
	Created        time.Time
	Keys           map[string]string // fingerprint → authorized_keys line
}

// leaseDB is the node's lease database.
type leaseDB struct {
	db *sql.DB
}

func openLeaseDB(path string) (*leaseDB, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open lease database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open lease database %s: %w", path, err)
	}
	return &leaseDB{db: db}, nil
}

func (l *leaseDB) Close() error { return l.db.Close() }

// tx runs fn in a write transaction.
func (l *leaseDB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	// A commit that the caller's cancellation interrupted would leave the
	// caller unsure what happened: the transaction ignores it.
	tx, err := l.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return fmt.Errorf("lease database: %w: %w", err, errdefs.ErrUnavailable)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("lease database: commit: %w: %w", err, errdefs.ErrUnavailable)
	}
	return nil
}

func unix(t time.Time) int64 { return t.Unix() }

// insert adds r (pending) and its keys.
func insertLease(tx *sql.Tx, r *leaseRow) error {
	res, err := json.Marshal(r.Resources)
	if err != nil {
		return err
	}
	attrs, err := json.Marshal(r.Attributes)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO leases (sliver, slice, state, principal, delegated, ticket_id, ticket_not_after,
		lease_id, doc, not_after, renewals, resources, attributes, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.Sliver, r.Slice, r.State, r.Principal, r.Delegated, r.TicketID, unix(r.TicketNotAfter),
		r.Lease.ID, r.Doc, r.Lease.NotAfter, r.Lease.Renewals, string(res), string(attrs), unix(r.Created)); err != nil {
		return fmt.Errorf("record lease of %s: %w", r.Sliver, err)
	}
	return setKeys(tx, r.Sliver, r.Keys)
}

// setKeys replaces the keys of sliver.
func setKeys(tx *sql.Tx, sliver string, keys map[string]string) error {
	if _, err := tx.Exec(`DELETE FROM keys WHERE sliver = ?`, sliver); err != nil {
		return err
	}
	for fp, k := range keys {
		if _, err := tx.Exec(`INSERT INTO keys (sliver, fingerprint, key) VALUES (?,?,?)`, sliver, fp, k); err != nil {
			return fmt.Errorf("record key of %s: %w", sliver, err)
		}
	}
	return nil
}

// updateLease writes r's state, lease, ticket, resources and attributes.
func updateLease(tx *sql.Tx, r *leaseRow) error {
	res, err := json.Marshal(r.Resources)
	if err != nil {
		return err
	}
	attrs, err := json.Marshal(r.Attributes)
	if err != nil {
		return err
	}
	_, err = tx.Exec(`UPDATE leases SET state = ?, ticket_id = ?, ticket_not_after = ?, lease_id = ?, doc = ?, not_after = ?,
		renewals = ?, resources = ?, attributes = ? WHERE sliver = ?`,
		r.State, r.TicketID, unix(r.TicketNotAfter), r.Lease.ID, r.Doc, r.Lease.NotAfter, r.Lease.Renewals,
		string(res), string(attrs), r.Sliver)
	return err
}

func deleteLease(tx *sql.Tx, sliver string) error {
	_, err := tx.Exec(`DELETE FROM leases WHERE sliver = ?`, sliver)
	return err
}

// useOnce records a once-only id (ticket.OnceID of a redeemed ticket); it
// fails with ErrConflict when the id was used before.
func useOnce(tx *sql.Tx, id string, expires time.Time) error {
	res, err := tx.Exec(`INSERT INTO redeemed (id, expires) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, id, unix(expires))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("ticket %s was redeemed before: %w", id, errdefs.ErrConflict)
	}
	return nil
}

// forgetTicket forgets the redemption of ticket id, so it may be redeemed
// again.
func forgetTicket(tx *sql.Tx, id string) error {
	_, err := tx.Exec(`DELETE FROM redeemed WHERE id = ?`, ticket.OnceID(id))
	return err
}

// purgeRedeemed forgets redeemed tickets and request nonces past their
// expiry: the validity check refuses them before the once check.
func (l *leaseDB) purgeRedeemed(ctx context.Context, now time.Time) error {
	return l.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM redeemed WHERE expires < ?`, unix(now))
		return err
	})
}

// dbOnce is the lease database as a once store: the nonces of signed
// requests outlive a restart, as the leases do, so a stolen request cannot
// be replayed to a restarted node.
type dbOnce struct{ l *leaseDB }

func (o dbOnce) Use(ctx context.Context, id string, expires time.Time) error {
	return o.l.tx(ctx, func(tx *sql.Tx) error { return useOnce(tx, id, expires) })
}

// all reads every lease with its keys.
func (l *leaseDB) all(ctx context.Context) ([]*leaseRow, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT sliver, slice, state, principal, delegated, ticket_id, ticket_not_after,
		doc, resources, attributes, created FROM leases ORDER BY sliver`)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	defer rows.Close()
	var out []*leaseRow
	byName := map[string]*leaseRow{}
	for rows.Next() {
		r := &leaseRow{Keys: map[string]string{}}
		var tna, created int64
		var res, attrs string
		if err := rows.Scan(&r.Sliver, &r.Slice, &r.State, &r.Principal, &r.Delegated, &r.TicketID, &tna,
			&r.Doc, &res, &attrs, &created); err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		r.TicketNotAfter, r.Created = time.Unix(tna, 0), time.Unix(created, 0)
		if err := json.Unmarshal([]byte(res), &r.Resources); err != nil {
			return nil, fmt.Errorf("read lease of %s: resources: %w", r.Sliver, err)
		}
		if err := json.Unmarshal([]byte(attrs), &r.Attributes); err != nil {
			return nil, fmt.Errorf("read lease of %s: attributes: %w", r.Sliver, err)
		}
		l, _, err := ticket.UnverifiedLease(r.Doc)
		if err != nil {
			return nil, fmt.Errorf("read lease of %s: %w", r.Sliver, err)
		}
		r.Lease = *l
		out = append(out, r)
		byName[r.Sliver] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	krows, err := l.db.QueryContext(ctx, `SELECT sliver, fingerprint, key FROM keys`)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer krows.Close()
	for krows.Next() {
		var s, fp, k string
		if err := krows.Scan(&s, &fp, &k); err != nil {
			return nil, err
		}
		if r := byName[s]; r != nil {
			r.Keys[fp] = k
		}
	}
	return out, krows.Err()
}

// meta reads a value of the meta table ("" when unset).
func (l *leaseDB) meta(ctx context.Context, k string) (string, error) {
	var v string
	err := l.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = ?`, k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (l *leaseDB) setMeta(ctx context.Context, k, v string) error {
	return l.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, v)
		return err
	})
}
