package plc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// InitOptions describe a new PLC.
type InitOptions struct {
	Settings
	// DSN is the store; Dir/plc.db when empty.
	DSN string
	// AdminEmail, AdminName and AdminKey (an OpenSSH public key line) make
	// the first admin.
	AdminEmail, AdminName, AdminKey string
	// CAValidity is the CA root's lifetime (10 years when 0).
	CAValidity time.Duration
}

// Init creates a PLC in dir: its CA, keys, certificate, settings and store
// with its own site and first admin. It refuses a directory that already
// holds a PLC, and removes what it made when it fails.
func Init(ctx context.Context, dir string, o InitOptions) (err error) {
	if o.Name == "" || len(o.Hosts) == 0 {
		return fmt.Errorf("init PLC: a name and at least one host name are required: %w", errdefs.ErrInvalid)
	}
	if err := checkHostname(o.Name); err != nil {
		return fmt.Errorf("init PLC: name: %w", err)
	}
	if err := checkEmail(o.AdminEmail); err != nil {
		return fmt.Errorf("init PLC: admin: %w", err)
	}
	pub, err := cred.ParseUserKey(o.AdminKey)
	if err != nil {
		return fmt.Errorf("init PLC: admin key: %w", err)
	}
	o.Settings.defaults()
	if err := checkLoginBase(o.SiteLoginBase); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "plc.json")); err == nil {
		return fmt.Errorf("init PLC: %s already holds a PLC; choose another directory: %w", dir, errdefs.ErrConflict)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("init PLC: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	var made []string
	defer func() {
		if err != nil {
			for _, f := range made {
				os.Remove(f)
			}
		}
	}()
	now := time.Now()
	validity := o.CAValidity
	if validity == 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	caKey, err := cred.GenerateKey()
	if err != nil {
		return err
	}
	root, err := ca.New(o.Name+" CA", caKey, validity, now)
	if err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	made = append(made, filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt"))
	if err := root.Save(dir); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	tkey, err := cred.GenerateKey()
	if err != nil {
		return err
	}
	made = append(made, filepath.Join(dir, "ticket.key"))
	if err := cred.WriteKeyFile(filepath.Join(dir, "ticket.key"), tkey); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	tlsKey, err := cred.GenerateKey()
	if err != nil {
		return err
	}
	made = append(made, filepath.Join(dir, "tls.key"))
	if err := cred.WriteKeyFile(filepath.Join(dir, "tls.key"), tlsKey); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	cert, err := root.IssuePLC(tlsKey.Public(), o.Name, certHosts(o.Hosts), validity, now)
	if err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	made = append(made, filepath.Join(dir, "tls.crt"))
	if err := cred.WriteNewFile(filepath.Join(dir, "tls.crt"), ca.MarshalCertificate(cert), 0o644); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	dsn := o.DSN
	if dsn == "" {
		dsn = filepath.Join(dir, "plc.db")
		made = append(made, dsn, dsn+"-wal", dsn+"-shm")
	}
	s, err := store.Open(ctx, dsn, nil)
	if err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	defer s.Close()
	err = s.Update(ctx, func(tx *store.Tx) error {
		site := &store.Site{LoginBase: o.SiteLoginBase, Name: o.Name, MaxSlices: 1000, MaxSlivers: 100000, Enabled: true}
		if err := tx.CreateSite(ctx, site); err != nil {
			return err
		}
		admin := &store.Person{Email: o.AdminEmail, Name: o.AdminName, SiteID: site.ID, Roles: []store.Role{store.RoleAdmin, store.RolePI, store.RoleUser}, Enabled: true}
		if err := tx.CreatePerson(ctx, admin); err != nil {
			return err
		}
		if err := tx.AddKey(ctx, &store.Key{Fingerprint: string(cred.FingerprintSSH(pub)), PersonID: admin.ID, PublicKey: o.AdminKey}); err != nil {
			return err
		}
		return tx.Audit(ctx, store.Event{Actor: "plab plc init", Action: "plc.init", Object: o.Name})
	})
	if err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	js, _ := json.MarshalIndent(o.Settings, "", "  ")
	made = append(made, filepath.Join(dir, "plc.json"))
	if err := cred.WriteNewFile(filepath.Join(dir, "plc.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("init PLC: %w", err)
	}
	return nil
}

// certHosts are the hosts without ports, once each: a certificate names
// hosts, clients sign for host:port.
func certHosts(hosts []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}
