package store

import "context"

// BumpVersionForTest records a schema version beyond this plab's.
func BumpVersionForTest(ctx context.Context, tx *Tx) error {
	_, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (?, 0)`, SchemaVersion+1)
	return err
}
