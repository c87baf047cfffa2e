package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/plc"
	"github.com/spf13/cobra"
)

const defaultPLCDir = "/var/lib/plab/plc"

func newPLCCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "plc",
		Short: "Run PlanetLab Central: the registry, ticket authority and API",
	}
	c.AddCommand(newPLCInitCmd(g), newPLCServeCmd(g))
	return c
}

func newPLCInitCmd(g *globals) *cobra.Command {
	var (
		dir, name, email, adminName, keyFile, dsn, site string
		hosts                                           []string
	)
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a PLC: its CA, keys, certificate, database and first admin",
		Example: `  plab plc init --dir /var/lib/plab/plc --name plc.example.org --host plc.example.org \
      --admin-email you@example.org --admin-key ~/.ssh/id_ed25519.pub`,
		Args: exactArgs(0, "no arguments (everything is a flag)"),
		RunE: func(c *cobra.Command, args []string) error {
			if name == "" || email == "" || keyFile == "" {
				return usageError{fmt.Errorf("plab plc init needs --name, --admin-email and --admin-key\nTry: plab plc init --help")}
			}
			if len(hosts) == 0 {
				hosts = []string{name}
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read --admin-key: %w", err)
			}
			if adminName == "" {
				adminName = email
			}
			err = plc.Init(c.Context(), dir, plc.InitOptions{
				Settings:   plc.Settings{Name: name, Hosts: hosts, SiteLoginBase: site},
				DSN:        dsn,
				AdminEmail: email, AdminName: adminName, AdminKey: strings.TrimSpace(string(key)),
			})
			if err != nil {
				return err
			}
			root, err := ca.Load(dir)
			if err != nil {
				return err
			}
			pub, err := cred.NewPublicKey(root.Certificate().PublicKey)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "PLC %s created in %s\n", name, dir)
			fmt.Fprintf(g.stdout, "CA key fingerprint: %s (users pin it on first login)\n", pub.Fingerprint())
			fmt.Fprintf(g.stdout, "admin: %s, signing with %s\n", email, keyFile)
			fmt.Fprintf(g.stdout, "next: plab plc serve --dir %s --listen :443\n", dir)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "dir", defaultPLCDir, "PLC directory")
	f.StringVar(&name, "name", "", "PLC's name (a DNS name; the issuer of its tickets)")
	f.StringSliceVar(&hosts, "host", nil, "names and addresses clients reach PLC by (repeatable; default: --name)")
	f.StringVar(&email, "admin-email", "", "the first admin's email")
	f.StringVar(&adminName, "admin-name", "", "the first admin's name")
	f.StringVar(&keyFile, "admin-key", "", "the first admin's SSH public key file (ed25519, or RSA ≥ 2048)")
	f.StringVar(&dsn, "db", "", "PostgreSQL URL (postgres://…); default: SQLite in --dir")
	f.StringVar(&site, "site", "pl", "login base of PLC's own site (its slices are administrative)")
	return c
}

func newPLCServeCmd(g *globals) *cobra.Command {
	var dir, listen, dsn string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the PLC API over HTTPS until interrupted",
		Example: `  plab plc serve --dir /var/lib/plab/plc --listen :443
  plab plc serve --listen 198.18.0.1:8443 --db postgres://plc@db/plc`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			defer ln.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			p, err := plc.Open(c.Context(), plc.Config{Dir: dir, DSN: dsn, Log: g.logger(), Authorities: authorities(ln.Addr(), listen), Port: port})
			if err != nil {
				return err
			}
			defer p.Close()
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(g.stdout, "PLC %s serving https://%s\n", p.Settings().Name, ln.Addr())
			err = p.Serve(ctx, ln)
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "dir", defaultPLCDir, "PLC directory made by plab plc init")
	f.StringVar(&listen, "listen", ":443", "address to serve HTTPS on")
	f.StringVar(&dsn, "db", "", "PostgreSQL URL (postgres://…); default: SQLite in --dir")
	return c
}

// authorities are the host:port forms of the listening address clients
// may sign requests for, besides plc.json's hosts.
func authorities(addr net.Addr, listen string) []string {
	out := []string{addr.String(), listen}
	if _, port, err := net.SplitHostPort(addr.String()); err == nil {
		out = append(out, "localhost:"+port, "127.0.0.1:"+port)
	}
	return out
}
