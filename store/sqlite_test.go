package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
	"github.com/plab/plab/store/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Store {
		s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "plc.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReopen: a second Open of the same file migrates nothing and sees the
// data; a database from a newer schema is refused.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "plc.db")
	s, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateSite(ctx, &store.Site{LoginBase: "a", Name: "A", Enabled: true})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = store.Open(ctx, "sqlite:"+path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := s.View(ctx, func(tx *store.Tx) error { _, err := tx.Site(ctx, "a"); return err }); err != nil {
		t.Errorf("site after reopen: %v", err)
	}
	// Pretend a newer plab migrated it further.
	if err := s.Update(ctx, func(tx *store.Tx) error { return store.BumpVersionForTest(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := store.Open(ctx, path, nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Open(newer schema) = %v, want ErrConflict", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"", "plc.db?mode=ro"} {
		if _, err := store.Open(ctx, dsn, nil); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Open(%q) = %v, want ErrInvalid", dsn, err)
		}
	}
	if _, err := store.Open(ctx, "postgres://nobody@/none?host=/nonexistent&connect_timeout=2", nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Open(unreachable PostgreSQL) = %v, want ErrUnavailable", err)
	}
}
