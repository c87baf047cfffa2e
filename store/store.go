// Package store keeps PLC's registry: sites, people and their keys, nodes,
// slices and their members, the tickets PLC has issued, and the audit log of
// every write. SQLite (pure Go, no cgo) is the default; PostgreSQL serves a
// large testbed and several PLC replicas. One set of queries serves both;
// the differences (placeholders, identity columns, error codes) live in a
// small dialect. The schema is versioned and migrated on Open.
//
// All access goes through transactions:
//
//	err := s.Update(ctx, func(tx *store.Tx) error {
//		if err := tx.CreateSite(ctx, &site); err != nil {
//			return err
//		}
//		return tx.Audit(ctx, store.Event{Actor: who, Action: "site.create", Object: site.LoginBase})
//	})
//
// A function that returns an error rolls everything back: nothing half
// written. A nil return from Update means the writes are durable (SQLite
// runs in WAL mode with synchronous=FULL; PostgreSQL commits with its
// defaults).
//
// storetest holds the conformance suite both back ends pass.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/plab/plab/errdefs"
)

// Store is an open registry database.
type Store struct {
	d dialect
	// w runs read-write transactions. For SQLite one goroutine writes,
	// batching the writes that queue meanwhile (batch.go), so writers never
	// meet SQLITE_BUSY and share fsyncs.
	w     *sql.DB
	batch batcher
	// r runs read-only transactions; for PostgreSQL it is w.
	r   *sql.DB
	log *slog.Logger
	// Prepared statements of w and r.
	wStmts, rStmts *stmtCache
}

// Open opens (creating if needed) the database named by dsn and migrates
// it to the current schema. A dsn starting with postgres:// or
// postgresql:// is PostgreSQL; anything else is a SQLite file path
// (optionally sqlite:PATH).
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	return open(ctx, dsn, log, SchemaVersion)
}

// open is Open migrating to schema version v.
func open(ctx context.Context, dsn string, log *slog.Logger, v int) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var s *Store
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s, err = openPostgres(dsn)
	case dsn == "":
		return nil, fmt.Errorf("open store: no database given; use a SQLite file path or a postgres:// URL: %w", errdefs.ErrInvalid)
	default:
		s, err = openSQLite(strings.TrimPrefix(dsn, "sqlite:"))
	}
	if err != nil {
		return nil, err
	}
	s.log = log
	if s.d.name == "sqlite" {
		s.wStmts = &stmtCache{db: s.w, m: map[string]*sql.Stmt{}}
		s.rStmts = &stmtCache{db: s.r, m: map[string]*sql.Stmt{}}
	}
	if err := s.migrate(ctx, v); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open store: SQLite path %q is not a plain file path: %w", path, errdefs.ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	w, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Two connections: one for the write transaction (one at a time, see
	// batch.go), and one free to prepare statements meanwhile.
	w.SetMaxOpenConns(2)
	q.Set("_pragma", "query_only(1)")
	for _, p := range []string{"foreign_keys(1)", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Open both writer connections now: a connection's first pragmas
	// (journal mode) would wait for the lock of a write in progress.
	var conns []*sql.Conn
	for range 2 {
		c, err := w.Conn(context.Background())
		if err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	w.SetMaxIdleConns(2)
	return &Store{d: sqliteDialect, w: w, r: r}, nil
}

func openPostgres(dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: cannot reach PostgreSQL (is the server up and the DSN right?): %w", errdefs.ErrUnavailable)
	}
	return &Store{d: postgresDialect, w: db, r: db}, nil
}

// cache returns the prepared statements of pool db.
func (s *Store) cache(db *sql.DB) *stmtCache {
	if db == s.w {
		return s.wStmts
	}
	return s.rStmts
}

// Close closes the database.
func (s *Store) Close() error {
	s.wStmts.close()
	s.rStmts.close()
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// Kind names the back end: "sqlite" or "postgres".
func (s *Store) Kind() string { return s.d.name }

// Tx is a transaction. Its methods are the store's operations.
type Tx struct {
	tx    *sql.Tx
	d     dialect
	stmts *stmtCache
	// fixed, when set, replaces the callers' contexts: in a batch, one
	// caller hanging up must not interrupt a statement of the shared
	// transaction (SQLite would roll all of it back).
	fixed context.Context
}

func (t *Tx) c(ctx context.Context) context.Context {
	if t.fixed != nil {
		return t.fixed
	}
	return ctx
}

// stmtCache keeps each query prepared once per pool: plab's queries are a
// fixed set, and parsing SQL is a good part of a small transaction's cost.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.m[q] = st
	return st, nil
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// stmt returns q prepared, bound to this transaction, or nil when q is
// to run unprepared: always on PostgreSQL, where pgx keeps its own cache
// of prepared statements per connection, and when preparing on the other
// connection fails (a table this transaction creates is not yet there).
func (t *Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	if t.stmts == nil {
		return nil
	}
	st, err := t.stmts.get(ctx, q)
	if err != nil {
		return nil
	}
	return t.tx.StmtContext(ctx, st)
}

// Update runs fn in a read-write transaction and commits it when fn
// returns nil; otherwise nothing fn wrote remains. On PostgreSQL the
// transaction is READ COMMITTED: a writer that checks before it acts (a
// limit, a count) first locks the row its check depends on (LockSite,
// LockSlice), so concurrent writers take turns instead of aborting each
// other; on a deadlock fn runs again (up to ten times), so fn must do
// nothing but database work. SQLite's single writer needs neither.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	if s.d.name == "sqlite" {
		return s.updateBatched(ctx, fn)
	}
	return s.run(ctx, s.w, false, fn)
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	return s.run(ctx, s.r, true, fn)
}

// maxRetries bounds how often a transaction PostgreSQL refused runs again.
const maxRetries = 10

func (s *Store) run(ctx context.Context, db *sql.DB, ro bool, fn func(*Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: ro && s.d.name == "postgres"}
	for attempt := 0; ; attempt++ {
		sqlTx, err := db.BeginTx(ctx, opts)
		if err != nil {
			return fmt.Errorf("store: begin: %w", s.d.classify(err))
		}
		err = fn(&Tx{tx: sqlTx, d: s.d, stmts: s.cache(db)})
		if err == nil {
			err = sqlTx.Commit()
			if err != nil {
				err = s.d.classify(err)
			}
		} else {
			_ = sqlTx.Rollback()
		}
		// PostgreSQL breaks a deadlock by refusing one transaction;
		// running it again, after a short random pause so the two do not
		// collide again, is the documented answer.
		if err != nil && s.d.retryable(err) && attempt >= maxRetries {
			return fmt.Errorf("%w (%w)", errBusy, err)
		}
		if err != nil && s.d.retryable(err) {
			pause := time.Duration(1+rand.IntN(1<<min(attempt, 6))) * time.Millisecond
			select {
			case <-time.After(pause):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return err
	}
}

func (t *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = t.c(ctx)
	var res sql.Result
	var err error
	if st := t.stmt(ctx, q); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = t.tx.ExecContext(ctx, t.d.rebind(q), args...)
	}
	return res, t.d.classify(err)
}

// execOnce runs a statement that is not worth keeping prepared (schema).
func (t *Tx) execOnce(ctx context.Context, q string) error {
	ctx = t.c(ctx)
	_, err := t.tx.ExecContext(ctx, t.d.rebind(q))
	return t.d.classify(err)
}

func (t *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = t.c(ctx)
	var rows *sql.Rows
	var err error
	if st := t.stmt(ctx, q); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = t.tx.QueryContext(ctx, t.d.rebind(q), args...)
	}
	return rows, t.d.classify(err)
}

func (t *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = t.c(ctx)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.d.rebind(q), args...)
}

// insert runs an INSERT … RETURNING id.
func (t *Tx) insert(ctx context.Context, q string, args ...any) (int64, error) {
	var id int64
	err := t.queryRow(ctx, q+" RETURNING id", args...).Scan(&id)
	return id, t.d.classify(err)
}

// dialect is what differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// id is the DDL of an auto-numbered primary key.
	id string
}

var (
	sqliteDialect   = dialect{name: "sqlite", id: "INTEGER PRIMARY KEY AUTOINCREMENT"}
	postgresDialect = dialect{name: "postgres", id: "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"}
)

// rebind turns ? placeholders into $1, $2, … for PostgreSQL. plab's
// queries hold no ? in literals.
func (d dialect) rebind(q string) string {
	if d.name != "postgres" || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// errConstraint wraps a kind with what the database said, for the log.
type errConstraint struct {
	kind error
	msg  string
}

func (e *errConstraint) Error() string { return e.msg }
func (e *errConstraint) Unwrap() error { return e.kind }

// classify maps the drivers' errors onto errdefs kinds: a unique
// violation is a conflict, a foreign key violation an unknown reference,
// no rows not found.
func (d dialect) classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return errdefs.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &errConstraint{errdefs.ErrConflict, "already exists"}
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return &errConstraint{errdefs.ErrNotFound, "refers to something that does not exist, or is still referred to"}
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return &errConstraint{errdefs.ErrInvalid, "breaks a rule of the schema"}
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return &errConstraint{errdefs.ErrConflict, "already exists"}
		case "23503":
			return &errConstraint{errdefs.ErrNotFound, "refers to something that does not exist, or is still referred to"}
		case "23514", "23502":
			return &errConstraint{errdefs.ErrInvalid, "breaks a rule of the schema"}
		}
	}
	return err
}

// errBusy marks a transaction PostgreSQL refused for a conflict, after
// the retries ran out.
var errBusy = fmt.Errorf("the database is busy with conflicting writes; try again: %w", errdefs.ErrUnavailable)

// retryable reports a PostgreSQL deadlock or serialization failure.
func (d dialect) retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
