package store

import "context"

// BumpVersionForTest records a schema version beyond this plab's.
func BumpVersionForTest(ctx context.Context, tx *Tx) error {
	_, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (?, 0)`, SchemaVersion+1)
	return err
}

// OpenAtVersionForTest opens dsn migrated only to schema version v, as an
// older plab left it.
func OpenAtVersionForTest(ctx context.Context, dsn string, v int) (*Store, error) {
	return open(ctx, dsn, nil, v)
}

// ExecForTest runs a statement this plab's queries would not, such as
// writing an older schema's rows.
func ExecForTest(ctx context.Context, tx *Tx, query string, args ...any) error {
	_, err := tx.exec(ctx, query, args...)
	return err
}
