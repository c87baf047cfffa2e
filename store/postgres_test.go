package store_test

import (
	"context"
	"testing"

	"github.com/plab/plab/internal/pgtest"
	"github.com/plab/plab/store"
	"github.com/plab/plab/store/storetest"
)

// TestPostgres runs the conformance suite on a real PostgreSQL server
// started for this test from Debian's packages.
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	storetest.Run(t, func(t *testing.T) *store.Store {
		s, err := store.Open(context.Background(), srv.NewDatabase(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind() != "postgres" {
			t.Fatalf("Open(postgres DSN) opened %s", s.Kind())
		}
		return s
	})
	t.Run("Upgrade", func(t *testing.T) { testUpgrade(t, srv.NewDatabase) })
}
