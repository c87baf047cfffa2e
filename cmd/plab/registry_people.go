package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/svcmgr"
)

// Sites, people and their keys at PLC.

func newSiteCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "site",
		Short: "Sites at PLC: list, show, create, update, delete",
		Long: `A site is an institution: it hosts nodes and runs slices, whose names
start with its login base (ucb_…). Admins create, change and delete sites;
everyone may list them.`,
	}
	c.AddCommand(newSiteListCmd(g), newSiteShowCmd(g), newSiteCreateCmd(g), newSiteUpdateCmd(g), newSiteDeleteCmd(g))
	return c
}

func newSiteListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the sites",
		Example: "  plab site list\n  plab site list -o json",
		Args:    exactArgs(0, "no arguments"),
	}
	return listCmd(g, c, listing[api.Site]{
		path:   siteKind.path,
		header: []any{"LOGIN", "NAME", "MAX SLICES", "MAX SLIVERS", "ENABLED", "CREATED"},
		row: func(x api.Site) []any {
			return []any{x.LoginBase, x.Name, x.MaxSlices, x.MaxSlivers, yesNo(x.Enabled), when(x.Created)}
		},
	})
}

func newSiteShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Short:   "Show a site",
		Example: "  plab site show ucb\n  plab site show ucb -o json",
	}
	return showCmd(g, c, showing[api.Site]{
		kind: siteKind,
		text: func(w io.Writer, _ *svcmgr.Session, x api.Site) error {
			return fields(w, [][2]string{
				{"login_base", x.LoginBase}, {"name", x.Name},
				{"max_slices", strconv.Itoa(x.MaxSlices)}, {"max_slivers", strconv.Itoa(x.MaxSlivers)},
				{"enabled", yesNo(x.Enabled)}, {"created", when(x.Created)},
			})
		},
	})
}

func newSiteCreateCmd(g *globals) *cobra.Command {
	var out outputFlag
	var disabled bool
	in := api.Site{MaxSlices: 10, MaxSlivers: 1000}
	c := &cobra.Command{
		Use:   "create LOGIN --name NAME [--max-slices N] [--max-slivers N]",
		Short: "Create a site (admins)",
		Long: `Create a site. LOGIN, its login base, is 2 to 20 lowercase letters and
digits starting with a letter; its slices' names start with it. The site
may hold --max-slices slices and --max-slivers slivers at once (0: none).`,
		Example: `  plab site create ucb --name "University of California, Berkeley"
  plab site create mit --name MIT --max-slices 20 --max-slivers 2000`,
		Args: siteKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			if in.Name == "" {
				return usageError{fmt.Errorf("plab site create needs --name, the institution's name\nTry: plab site create --help")}
			}
			in.LoginBase, in.Enabled = args[0], !disabled
			return g.withPLC(func(s *svcmgr.Session) error {
				var x api.Site
				if err := s.PLC.Do(c.Context(), "POST", siteKind.path, in, &x); err != nil {
					return err
				}
				return g.report(out, x, "site %s created (%d slices, %d slivers at most); add its people with plab person create EMAIL --site %s", x.LoginBase, x.MaxSlices, x.MaxSlivers, x.LoginBase)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&in.Name, "name", "", "the institution's name")
	f.IntVar(&in.MaxSlices, "max-slices", in.MaxSlices, "most slices the site may hold")
	f.IntVar(&in.MaxSlivers, "max-slivers", in.MaxSlivers, "most slivers the site's slices may hold at once")
	f.BoolVar(&disabled, "disabled", false, "create it disabled")
	outFlag(c, &out)
	return c
}

func newSiteUpdateCmd(g *globals) *cobra.Command {
	var out outputFlag
	var name string
	var maxSlices, maxSlivers int
	var en enableFlags
	c := &cobra.Command{
		Use:   "update LOGIN [--name NAME] [--max-slices N] [--max-slivers N] [--enable|--disable]",
		Short: "Change a site (admins)",
		Long: `Change a site; what no flag names stays as it is. Disabling a site revokes
its slices' tickets, and its people (admins aside) can change nothing at
PLC until it is enabled again.`,
		Example: `  plab site update ucb --max-slices 20
  plab site update ucb --disable`,
		Args: siteKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			var in api.SiteUpdate
			var err error
			if in.Enabled, err = en.value(c); err != nil {
				return err
			}
			in.Name = changed(c, "name", &name)
			in.MaxSlices = changed(c, "max-slices", &maxSlices)
			in.MaxSlivers = changed(c, "max-slivers", &maxSlivers)
			if in == (api.SiteUpdate{}) {
				return nothingToChange(c)
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				var x api.Site
				if err := siteKind.do(c.Context(), s, "PATCH", args[0], in, &x); err != nil {
					return err
				}
				return g.report(out, x, "site %s updated", x.LoginBase)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "the institution's name")
	f.IntVar(&maxSlices, "max-slices", 0, "most slices the site may hold")
	f.IntVar(&maxSlivers, "max-slivers", 0, "most slivers the site's slices may hold at once")
	en.add(c, "site")
	outFlag(c, &out)
	return c
}

func newSiteDeleteCmd(g *globals) *cobra.Command {
	return deleteCmd(g, siteKind, &cobra.Command{
		Short:   "Delete a site that has no people, nodes or slices left (admins)",
		Example: `  plab site delete oldsite`,
	})
}

// ---- people

func newPersonCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "person",
		Short: "People at PLC: list, show, create, update, delete",
		Long: `A person is an account at PLC, signing in with SSH keys (plab key), with
roles: user (belongs to slices), pi (manages the site's people and slices),
tech (manages the site's nodes), admin (anything). PIs manage their own
site's people; admins anyone's.`,
	}
	c.AddCommand(newPersonListCmd(g), newPersonShowCmd(g), newPersonCreateCmd(g), newPersonUpdateCmd(g), newPersonDeleteCmd(g))
	return c
}

func newPersonListCmd(g *globals) *cobra.Command {
	var site string
	c := &cobra.Command{
		Use:     "list [--site LOGIN]",
		Short:   "List people",
		Example: "  plab person list\n  plab person list --site ucb -o json",
		Args:    exactArgs(0, "no arguments (filter with --site)"),
	}
	c.Flags().StringVar(&site, "site", "", "only this site's people")
	return listCmd(g, c, listing[api.Person]{
		path: personKind.path,
		query: func(*cobra.Command) (url.Values, error) {
			return filters(map[string]string{"site": site}), nil
		},
		hint:   siteKind.hint,
		header: []any{"EMAIL", "NAME", "SITE", "ROLES", "ENABLED"},
		row: func(x api.Person) []any {
			return []any{x.Email, orDash(x.Name), orDash(x.Site), orDash(strings.Join(x.Roles, ",")), yesNo(x.Enabled)}
		},
	})
}

// personWithKeys is a person's record and keys, as person show prints it.
type personWithKeys struct {
	api.Person
	Keys []api.Key `json:"keys"`
}

// getPersonWithKeys gets the person with this email, and their keys.
func getPersonWithKeys(ctx context.Context, s *svcmgr.Session, email string) (personWithKeys, error) {
	var x personWithKeys
	if err := personKind.get(ctx, s, email, &x.Person); err != nil {
		return x, err
	}
	var err error
	x.Keys, err = listAll[api.Key](ctx, s.PLC, keysPath(email), nil, 0)
	return x, err
}

func newPersonShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Short:   "Show a person and their keys",
		Example: "  plab person show alice@ucb.edu\n  plab person show alice@ucb.edu -o json",
	}
	return showCmd(g, c, showing[personWithKeys]{
		kind: personKind,
		get:  getPersonWithKeys,
		text: func(w io.Writer, _ *svcmgr.Session, x personWithKeys) error {
			rows := [][2]string{
				{"email", x.Email}, {"name", x.Name}, {"site", x.Site}, {"roles", strings.Join(x.Roles, ",")},
				{"enabled", yesNo(x.Enabled)}, {"created", when(x.Created)},
			}
			for _, k := range x.Keys {
				rows = append(rows, [2]string{"key", k.Fingerprint + " " + keyType(k)})
			}
			if len(x.Keys) == 0 {
				rows = append(rows, [2]string{"key", "none; add one with plab key add " + x.Email + " FILE.pub"})
			}
			return fields(w, rows)
		},
	})
}

func newPersonCreateCmd(g *globals) *cobra.Command {
	var out outputFlag
	var disabled bool
	var in api.Person
	c := &cobra.Command{
		Use:   "create EMAIL --name NAME --site LOGIN [--role ROLE]...",
		Short: "Create a person (PIs: at their site; admins)",
		Long: `Create an account. Roles are user (the default), pi, tech and admin; only
admins grant admin. The person signs in once they have a key: plab key add
EMAIL FILE.pub.`,
		Example: `  plab person create bob@ucb.edu --name "Bob Lee" --site ucb
  plab person create carol@ucb.edu --name Carol --site ucb --role user --role tech`,
		Args: personKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			if in.Name == "" {
				return usageError{fmt.Errorf("plab person create needs --name, the person's name\nTry: plab person create --help")}
			}
			in.Email, in.Enabled = args[0], !disabled
			return g.withPLC(func(s *svcmgr.Session) error {
				var x api.Person
				if err := s.PLC.Do(c.Context(), "POST", personKind.path, in, &x); err != nil {
					return hint(err, siteKind.hint)
				}
				return g.report(out, x, "person %s created (%s); add their key with plab key add %s FILE.pub", x.Email, strings.Join(x.Roles, ","), x.Email)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&in.Name, "name", "", "the person's name")
	f.StringVar(&in.Site, "site", "", "the person's site (login base)")
	f.StringSliceVar(&in.Roles, "role", nil, "user, pi, tech or admin (repeatable; default user)")
	f.BoolVar(&disabled, "disabled", false, "create the account disabled")
	outFlag(c, &out)
	return c
}

func newPersonUpdateCmd(g *globals) *cobra.Command {
	var out outputFlag
	var name, site string
	var roles []string
	var en enableFlags
	c := &cobra.Command{
		Use:   "update EMAIL [--name NAME] [--site LOGIN] [--role ROLE]... [--enable|--disable]",
		Short: "Change a person (their name: themselves; the rest: PIs, admins)",
		Long: `Change an account; what no flag names stays as it is. --role replaces
every role. People change their own name; roles, site and state are a PI's
(at their site) or an admin's.`,
		Example: `  plab person update bob@ucb.edu --role user --role pi
  plab person update bob@ucb.edu --disable`,
		Args: personKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			var in api.PersonUpdate
			var err error
			if in.Enabled, err = en.value(c); err != nil {
				return err
			}
			in.Name = changed(c, "name", &name)
			in.Site = changed(c, "site", &site)
			if c.Flags().Changed("role") {
				if len(roles) == 0 {
					return usageError{fmt.Errorf("--role: give at least one role (user, pi, tech or admin)\nTry: plab person update --help")}
				}
				in.Roles = roles
			}
			if in.Name == nil && in.Site == nil && in.Roles == nil && in.Enabled == nil {
				return nothingToChange(c)
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				var x api.Person
				if err := s.PLC.Do(c.Context(), "PATCH", personKind.url(args[0]), in, &x); err != nil {
					return hint(err, personKind.hint+", and plab site list the sites")
				}
				return g.report(out, x, "person %s updated", x.Email)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "the person's name")
	f.StringVar(&site, "site", "", "move the person to this site")
	f.StringSliceVar(&roles, "role", nil, "user, pi, tech or admin (repeatable; replaces every role)")
	en.add(c, "account")
	outFlag(c, &out)
	return c
}

func newPersonDeleteCmd(g *globals) *cobra.Command {
	return deleteCmd(g, personKind, &cobra.Command{
		Short:   "Delete a person and their keys (PIs: at their site; admins)",
		Example: `  plab person delete bob@ucb.edu`,
	})
}

// ---- keys

func newKeyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "key",
		Short: "SSH keys at PLC, yours or a person's: list, add, rm",
		Long: `A person signs requests to PLC, and gets into their slices' slivers, with
the SSH keys PLC holds for them. Without EMAIL, the commands act on your
own keys. People manage their own keys; PIs those of their site's people.`,
	}
	c.AddCommand(newKeyListCmd(g), newKeyAddCmd(g), newKeyRmCmd(g))
	return c
}

// keyOwner is the person a key command acts on: the one named, or the
// logged-in user.
func keyOwner(ctx context.Context, s *svcmgr.Session, args []string) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	var w api.Whoami
	if err := s.PLC.Do(ctx, "GET", "/v1/whoami", nil, &w); err != nil {
		return "", err
	}
	return w.Email, nil
}

// keysPath is the API path of a person's keys.
func keysPath(email string) string { return personKind.url(email) + "/keys" }

// keyType is a key's algorithm and comment, from its authorized_keys line.
func keyType(k api.Key) string {
	f := strings.Fields(k.PublicKey)
	if len(f) == 0 {
		return ""
	}
	return strings.Join(append(f[:1:1], f[min(2, len(f)):]...), " ")
}

func newKeyListCmd(g *globals) *cobra.Command {
	var out outputFlag
	c := &cobra.Command{
		Use:     "list [EMAIL]",
		Short:   "List a person's keys (default: yours)",
		Example: "  plab key list\n  plab key list bob@ucb.edu -o json",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("plab key list takes at most one email (got %d arguments)\nTry: plab key list --help", len(args))}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			return g.withPLC(func(s *svcmgr.Session) error {
				email, err := keyOwner(c.Context(), s, args)
				if err != nil {
					return err
				}
				ks, err := listAll[api.Key](c.Context(), s.PLC, keysPath(email), nil, 0)
				if err != nil {
					return hint(err, personKind.hint)
				}
				return printList(g.stdout, out, ks, []any{"FINGERPRINT", "TYPE", "COMMENT", "ADDED"}, func(k api.Key) []any {
					t, comment, _ := strings.Cut(keyType(k), " ")
					return []any{k.Fingerprint, t, orDash(comment), when(k.Created)}
				})
			})
		},
	}
	outFlag(c, &out)
	return c
}

func newKeyAddCmd(g *globals) *cobra.Command {
	var out outputFlag
	c := &cobra.Command{
		Use:   "add [EMAIL] FILE.pub",
		Short: "Add an SSH public key to a person (default: you)",
		Long: `Add the public key in FILE.pub (one line, as ssh-keygen writes it:
Ed25519, or RSA of 2048 bits or more). The private key never leaves your
machine: plab refuses a private key file.`,
		Example: `  plab key add ~/.ssh/id_ed25519.pub
  plab key add bob@ucb.edu bob.pub`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("plab key add needs a public key file, after an optional email (got %d arguments)\nTry: plab key add --help", len(args))}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			file := args[len(args)-1]
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read the public key: %w", err)
			}
			if strings.Contains(string(data), "PRIVATE KEY") {
				return usageError{fmt.Errorf("%s is a private key, which stays with you; give its public half (%s.pub)", file, strings.TrimSuffix(file, ".pub"))}
			}
			if _, err := cred.ParseUserKey(string(data)); err != nil {
				return usageError{fmt.Errorf("%s: %w", file, err)}
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				email, err := keyOwner(c.Context(), s, args[:len(args)-1])
				if err != nil {
					return err
				}
				var k api.Key
				if err := s.PLC.Do(c.Context(), "POST", keysPath(email), api.Key{PublicKey: strings.TrimSpace(string(data))}, &k); err != nil {
					return hint(err, personKind.hint)
				}
				return g.report(out, k, "key %s added to %s", k.Fingerprint, email)
			})
		},
	}
	outFlag(c, &out)
	return c
}

func newKeyRmCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm [EMAIL] SHA256:…",
		Short: "Remove an SSH key from a person (default: you)",
		Long: `Remove the key with this fingerprint (plab key list shows them). plab
refuses to remove the key you are logged in with unless --force: you would
be locked out until someone adds another key for you.`,
		Example: `  plab key rm SHA256:Vb9Qk…
  plab key rm bob@ucb.edu SHA256:Vb9Qk…`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("plab key rm needs a key fingerprint, after an optional email (got %d arguments)\nTry: plab key rm --help", len(args))}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			fp, err := cred.ParseFingerprint(args[len(args)-1])
			if err != nil {
				return usageError{fmt.Errorf("%w\nTry: plab key list", err)}
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				email, err := keyOwner(c.Context(), s, args[:len(args)-1])
				if err != nil {
					return err
				}
				if fp == s.ID.Fingerprint() && !force {
					return fmt.Errorf("key %s is the one you are logged in with: without it you cannot reach PLC; add another key and log in with it first, or give --force", fp)
				}
				if err := s.PLC.Do(c.Context(), "DELETE", keysPath(email)+"/"+seg(string(fp)), nil, nil); err != nil {
					return hint(err, "plab key list "+email+" shows the keys")
				}
				fmt.Fprintf(g.stdout, "key %s removed from %s\n", fp, email)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&force, "force", false, "remove it even if it is the key you are logged in with")
	return c
}
