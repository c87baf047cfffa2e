package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/plab/plab/errdefs"
)

// migrations are the schema's versions, in order; version i+1 is
// migrations[i]. A released migration never changes: add a new one.
// {{id}} is the dialect's auto-numbered primary key. Times are Unix
// seconds (0 = never), booleans 0/1, lists and maps JSON text: the same
// on both back ends.
var migrations = []string{
	`CREATE TABLE sites (
		id {{id}},
		login_base TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL,
		max_slices INTEGER NOT NULL CHECK (max_slices >= 0),
		max_slivers INTEGER NOT NULL CHECK (max_slivers >= 0),
		enabled INTEGER NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE TABLE persons (
		id {{id}},
		email TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL,
		site_id BIGINT REFERENCES sites(id),
		roles TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE TABLE keys (
		fingerprint TEXT PRIMARY KEY,
		person_id BIGINT NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
		public_key TEXT NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE INDEX keys_person ON keys(person_id);
	CREATE TABLE nodes (
		id {{id}},
		hostname TEXT NOT NULL UNIQUE,
		site_id BIGINT NOT NULL REFERENCES sites(id),
		addresses TEXT NOT NULL,
		boot_state TEXT NOT NULL,
		key TEXT NOT NULL,
		capacity TEXT NOT NULL,
		last_contact BIGINT NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE INDEX nodes_site ON nodes(site_id);
	CREATE TABLE node_tags (
		node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (node_id, name)
	);
	CREATE INDEX node_tags_value ON node_tags(name, value);
	CREATE TABLE slices (
		id {{id}},
		name TEXT NOT NULL UNIQUE,
		site_id BIGINT NOT NULL REFERENCES sites(id),
		description TEXT NOT NULL,
		url TEXT NOT NULL,
		instantiation TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		max_nodes INTEGER NOT NULL CHECK (max_nodes >= 0),
		expires BIGINT NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE INDEX slices_site ON slices(site_id);
	CREATE TABLE slice_members (
		slice_id BIGINT NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
		person_id BIGINT NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
		PRIMARY KEY (slice_id, person_id)
	);
	CREATE INDEX slice_members_person ON slice_members(person_id);
	CREATE TABLE tickets (
		id TEXT PRIMARY KEY,
		slice_name TEXT NOT NULL,
		node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		principal TEXT NOT NULL,
		doc TEXT NOT NULL,
		not_before BIGINT NOT NULL,
		not_after BIGINT NOT NULL,
		revoked INTEGER NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE INDEX tickets_slice ON tickets(slice_name, node_id);
	CREATE INDEX tickets_node ON tickets(node_id);
	CREATE TABLE grants (
		slice_name TEXT NOT NULL,
		node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		site_id BIGINT NOT NULL,
		not_after BIGINT NOT NULL,
		PRIMARY KEY (slice_name, node_id)
	);
	CREATE INDEX grants_site ON grants(site_id, not_after);
	CREATE TABLE node_groups (
		id {{id}},
		name TEXT NOT NULL UNIQUE,
		tag TEXT NOT NULL,
		value TEXT NOT NULL,
		created BIGINT NOT NULL
	);
	CREATE TABLE slice_attributes (
		id {{id}},
		slice_id BIGINT NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		value TEXT NOT NULL,
		node_id BIGINT REFERENCES nodes(id) ON DELETE CASCADE,
		node_group_id BIGINT REFERENCES node_groups(id) ON DELETE CASCADE,
		CHECK (node_id IS NULL OR node_group_id IS NULL)
	);
	CREATE UNIQUE INDEX slice_attributes_scope ON slice_attributes(slice_id, name, COALESCE(node_id, 0), COALESCE(node_group_id, 0));
	CREATE TABLE slice_nodes (
		slice_id BIGINT NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
		node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		PRIMARY KEY (slice_id, node_id)
	);
	CREATE INDEX slice_nodes_node ON slice_nodes(node_id);
	CREATE TABLE enroll_tokens (
		hash TEXT PRIMARY KEY,
		node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		expires BIGINT NOT NULL,
		used INTEGER NOT NULL
	);
	CREATE TABLE node_reports (
		node_id BIGINT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
		at BIGINT NOT NULL,
		body TEXT NOT NULL
	);
	CREATE TABLE changes (
		id {{id}},
		node_id BIGINT NOT NULL,
		at BIGINT NOT NULL
	);
	CREATE INDEX changes_node ON changes(node_id, id);
	CREATE TABLE events (
		id {{id}},
		at BIGINT NOT NULL,
		actor TEXT NOT NULL,
		action TEXT NOT NULL,
		object TEXT NOT NULL,
		result TEXT NOT NULL
	);`,
	// 2: the host key and port of each node's SSH gateway, and its API's
	// port, as it reports them ('' and 0 until it does).
	`ALTER TABLE nodes ADD COLUMN ssh_host_key TEXT NOT NULL DEFAULT '';
	ALTER TABLE nodes ADD COLUMN ssh_port INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE nodes ADD COLUMN api_port INTEGER NOT NULL DEFAULT 0`,
}

// SchemaVersion is the version Open migrates to.
var SchemaVersion = len(migrations)

// migrate brings the schema to version to (SchemaVersion but in tests),
// one transaction per version. It refuses a database from a newer plab.
func (s *Store) migrate(ctx context.Context, to int) error {
	ddl := `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`
	if _, err := s.w.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("open store: create schema_migrations: %w", err)
	}
	return s.Update(ctx, func(tx *Tx) error {
		// On PostgreSQL a lock keeps two PLC replicas from migrating at
		// once; SQLite's writer is already exclusive.
		if s.d.name == "postgres" {
			if err := tx.execOnce(ctx, `LOCK TABLE schema_migrations IN EXCLUSIVE MODE`); err != nil {
				return fmt.Errorf("open store: lock schema: %w", err)
			}
		}
		var have int
		if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("open store: read schema version: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("open store: the database has schema version %d, newer than this plab's %d; run a newer plab: %w", have, len(migrations), errdefs.ErrConflict)
		}
		for v := have + 1; v <= to; v++ {
			for _, stmt := range strings.Split(migrations[v-1], ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if err := tx.execOnce(ctx, strings.ReplaceAll(stmt, "{{id}}", s.d.id)); err != nil {
					return fmt.Errorf("open store: migrate to version %d: %w", v, err)
				}
			}
			if _, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (?, ?)`, v, time.Now().Unix()); err != nil {
				return fmt.Errorf("open store: record version %d: %w", v, err)
			}
			s.log.Info("migrated store schema", "version", v, "kind", s.d.name)
		}
		return nil
	})
}

// Version returns the schema version of the open database.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	err := s.View(ctx, func(tx *Tx) error {
		return tx.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	})
	return v, err
}
