package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/plab/plab/store"
)

// TestUpgrade: a SQLite database of every older schema version migrates
// to the current one on Open.
func TestUpgrade(t *testing.T) {
	testUpgrade(t, func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "plc.db") })
}

// testUpgrade opens a database at schema version 1, as a plab of that
// time left it with a node, then with this plab: the node is there, with
// the columns of later versions at their defaults.
func testUpgrade(t *testing.T, newDSN func(tb testing.TB) string) {
	ctx := context.Background()
	dsn := newDSN(t)
	old, err := store.OpenAtVersionForTest(ctx, dsn, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(ctx, func(tx *store.Tx) error {
		site := &store.Site{LoginBase: "old", Name: "Old", Enabled: true}
		if err := tx.CreateSite(ctx, site); err != nil {
			return err
		}
		return store.ExecForTest(ctx, tx, `INSERT INTO nodes (hostname, site_id, addresses, boot_state, key, capacity, last_contact, created) VALUES (?, ?, '[]', 'boot', 'SHA256:k', '', 0, 0)`,
			"n1.old.test", site.ID)
	})
	old.Close()
	if err != nil {
		t.Fatalf("write a version 1 database: %v", err)
	}

	s, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("Open(version 1 database) = %v", err)
	}
	defer s.Close()
	if v, err := s.Version(ctx); err != nil || v != store.SchemaVersion {
		t.Errorf("Version() after upgrade = %d, %v; want %d", v, err, store.SchemaVersion)
	}
	err = s.Update(ctx, func(tx *store.Tx) error {
		n, err := tx.Node(ctx, "n1.old.test")
		if err != nil {
			return err
		}
		if n.Key != "SHA256:k" || n.SSHHostKey != "" || n.SSHPort != 0 || n.APIPort != 0 {
			t.Errorf("upgraded node = %+v; want its key, no SSH host key, SSH and API ports 0", n)
		}
		if err := tx.SetNodeSSH(ctx, n.Hostname, "ssh-ed25519 AAAAk", 22); err != nil {
			return err
		}
		return tx.SetNodeAPIPort(ctx, n.Hostname, 8140)
	})
	if err != nil {
		t.Fatalf("node after upgrade: %v", err)
	}
	err = s.View(ctx, func(tx *store.Tx) error {
		n, err := tx.Node(ctx, "n1.old.test")
		if err == nil && (n.SSHHostKey != "ssh-ed25519 AAAAk" || n.SSHPort != 22 || n.APIPort != 8140) {
			t.Errorf("upgraded node after SetNodeSSH and SetNodeAPIPort = %+v; want key, port 22, API port 8140", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
