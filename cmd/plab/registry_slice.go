package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/svcmgr"
)

// Slices at PLC. These commands join the slice group, whose other commands
// (create, status, renew, sync, delete) act on the slice's slivers.

// newSliceRegistryCmds are the slice group's commands on PLC's records.
func newSliceRegistryCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newSliceListCmd(g), newSliceShowCmd(g), newSliceRegisterCmd(g), newSliceMembersCmd(g),
		newSliceNodesCmd(g), newSliceAttrCmd(g), newSliceEnableCmd(g, true), newSliceEnableCmd(g, false), newSliceForgetCmd(g)}
}

func newSliceListCmd(g *globals) *cobra.Command {
	var site string
	var mine bool
	c := &cobra.Command{
		Use:   "list [--site LOGIN] [--mine]",
		Short: "List the slices at PLC",
		Example: `  plab slice list --mine
  plab slice list --site ucb -o json`,
		Args: exactArgs(0, "no arguments (filter with --site or --mine)"),
	}
	c.Flags().StringVar(&site, "site", "", "only this site's slices")
	c.Flags().BoolVar(&mine, "mine", false, "only the slices you are a member of")
	return listCmd(g, c, listing[api.Slice]{
		path: sliceKind.path,
		query: func(*cobra.Command) (url.Values, error) {
			q := filters(map[string]string{"site": site})
			if mine {
				q.Set("mine", "true")
			}
			return q, nil
		},
		hint:   siteKind.hint,
		header: []any{"NAME", "SITE", "INSTANTIATION", "ENABLED", "EXPIRES", "DESCRIPTION"},
		row: func(x api.Slice) []any {
			return []any{x.Name, x.Site, x.Instantiation, yesNo(x.Enabled), when(x.Expires), orDash(x.Description)}
		},
	})
}

// sliceWithAttrs is a slice's record and attributes, as slice show prints
// it.
type sliceWithAttrs struct {
	api.Slice
	Attributes []api.Attribute `json:"attributes"`
}

// getSliceWithAttrs gets the slice with this name, and its attributes.
func getSliceWithAttrs(ctx context.Context, s *svcmgr.Session, name string) (sliceWithAttrs, error) {
	var x sliceWithAttrs
	if err := sliceKind.get(ctx, s, name, &x.Slice); err != nil {
		return x, err
	}
	var err error
	x.Attributes, err = listAll[api.Attribute](ctx, s.PLC, attrsPath(name), nil, 0)
	return x, err
}

func newSliceShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Short: "Show a slice at PLC: members, expiry, nodes, attributes",
		Long: `Show PLC's record of a slice. Its nodes are those PLC binds a delegated
slice to; the slivers of a direct slice are yours: plab slice status NAME.`,
		Example: "  plab slice show ucb_exp\n  plab slice show ucb_exp -o json",
	}
	return showCmd(g, c, showing[sliceWithAttrs]{
		kind: sliceKind,
		get:  getSliceWithAttrs,
		text: func(w io.Writer, s *svcmgr.Session, x sliceWithAttrs) error {
			nodes := strings.Join(x.Nodes, ", ")
			if nodes == "" && x.Instantiation == api.InstantiationDirect {
				nodes = "- (direct: plab slice status " + x.Name + " shows your slivers)"
			}
			if err := fields(w, [][2]string{
				{"name", x.Name}, {"site", x.Site}, {"description", x.Description}, {"url", x.URL},
				{"instantiation", x.Instantiation}, {"enabled", yesNo(x.Enabled)},
				{"expires", expiry(x.Expires, s.Now())}, {"max_nodes", strconv.Itoa(x.MaxNodes)},
				{"created", when(x.Created)}, {"members", strings.Join(x.Members, ", ")}, {"nodes", nodes},
			}); err != nil {
				return err
			}
			if len(x.Attributes) == 0 {
				return nil
			}
			fmt.Fprintln(w)
			return printList(w, "table", x.Attributes, attrHeader, attrRow)
		},
	})
}

// expiry is a slice's expiry with how far away it is.
func expiry(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	if d <= 0 {
		return when(t) + " (expired; plab slice renew renews it)"
	}
	days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	return fmt.Sprintf("%s (in %dd%dh)", when(t), days, hours)
}

// attrsPath is the API path of a slice's attributes.
func attrsPath(name string) string { return sliceKind.url(name) + "/attributes" }

// attrHeader and attrRow make a table of a slice's attributes.
var attrHeader = []any{"ATTR ID", "NAME", "VALUE", "SCOPE"}

func attrRow(a api.Attribute) []any {
	scope := "all nodes"
	switch {
	case a.Node != "":
		scope = "node " + a.Node
	case a.NodeGroup != "":
		scope = "nodegroup " + a.NodeGroup
	}
	return []any{a.ID, a.Name, a.Value, scope}
}

func newSliceMembersCmd(g *globals) *cobra.Command {
	return newSliceSetCmd(g, sliceSet{
		use: "members", item: "EMAIL", header: "MEMBER", path: "members",
		short: "List a slice's members, or add or remove one (PIs, admins)",
		long: `Without add or rm, list the slice's members. Members get into the slice's
slivers with their keys, and may renew it and get its tickets. A PI of the
slice's site or an admin adds and removes them.`,
		example: `  plab slice members ucb_exp
  plab slice members ucb_exp add bob@ucb.edu
  plab slice members ucb_exp rm bob@ucb.edu`,
		hint: sliceKind.hint + ", plab person list the people",
		list: func(x api.Slice) []string { return x.Members },
	})
}

func newSliceNodesCmd(g *globals) *cobra.Command {
	return newSliceSetCmd(g, sliceSet{
		use: "nodes", item: "HOST", header: "NODE", path: "nodes",
		short: "List a delegated slice's nodes, or bind or unbind one (PIs, admins)",
		long: `Without add or rm, list the nodes PLC binds a delegated slice to. Each
bound node learns the slice at its next sync with PLC and makes its sliver
itself; an unbound one destroys it. A direct slice has no bound nodes: its
members get slivers with plab slice create.`,
		example: `  plab slice nodes ucb_svc
  plab slice nodes ucb_svc add n1.ucb.edu
  plab slice nodes ucb_svc rm n1.ucb.edu`,
		hint: sliceKind.hint + ", plab node list the nodes",
		list: func(x api.Slice) []string { return x.Nodes },
	})
}

// sliceSet describes a slice's set of people or nodes, listed, added to
// and removed from alike.
type sliceSet struct {
	use, item, header, path string
	short, long, example    string
	hint                    string
	list                    func(api.Slice) []string
}

func newSliceSetCmd(g *globals, set sliceSet) *cobra.Command {
	var out outputFlag
	c := &cobra.Command{
		Use:     set.use + " NAME [add|rm " + set.item + "]",
		Short:   set.short,
		Long:    set.long,
		Example: set.example,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 1 || (len(args) == 3 && (args[1] == "add" || args[1] == "rm")) {
				return nil
			}
			return usageError{fmt.Errorf("%s needs a slice, then nothing, add %s or rm %s\nTry: %s --help", c.CommandPath(), set.item, set.item, c.CommandPath())}
		},
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			return g.withPLC(func(s *svcmgr.Session) error {
				if len(args) == 1 {
					var x api.Slice
					if err := sliceKind.get(c.Context(), s, name, &x); err != nil {
						return err
					}
					items := set.list(x)
					if items == nil {
						items = []string{}
					}
					return printList(g.stdout, out, items, []any{set.header}, func(m string) []any { return []any{m} })
				}
				method, done := "PUT", "added to"
				if args[1] == "rm" {
					method, done = "DELETE", "removed from"
				}
				if err := s.PLC.Do(c.Context(), method, sliceKind.url(name)+"/"+set.path+"/"+seg(args[2]), nil, nil); err != nil {
					return hint(err, set.hint)
				}
				fmt.Fprintf(g.stdout, "%s %s slice %s\n", args[2], done, name)
				return nil
			})
		},
	}
	outFlag(c, &out)
	return c
}

func newSliceRegisterCmd(g *globals) *cobra.Command {
	var out outputFlag
	var in api.Slice
	var delegated bool
	var forD string
	c := &cobra.Command{
		Use:   "register NAME [--description TEXT] [--url URL] [--delegated] [--max-nodes N] [--for DURATION]",
		Short: "Create a slice at PLC only, without slivers (PIs, admins)",
		Long: `Create a slice's record at PLC. Its name is its site's login base, an
underscore and a name (ucb_exp). Add its members with plab slice members
NAME add EMAIL. A direct slice (the default) gets slivers when a member
runs plab slice create NAME; a delegated one on the nodes PLC binds it to
(plab slice nodes NAME add HOST). It expires after PLC's slice lifetime
(two weeks unless the operator changed it), or --for.`,
		Example: `  plab slice register ucb_exp --description "Latency study"
  plab slice register ucb_svc --delegated --for 28d`,
		Args: sliceKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			var d time.Duration
			if forD != "" {
				var err error
				if d, err = parseDays(forD); err != nil {
					return usageError{fmt.Errorf("--for %q: %w\nTry: plab slice register --help", forD, err)}
				}
			}
			in.Name, in.Instantiation = args[0], api.InstantiationDirect
			if delegated {
				in.Instantiation = api.InstantiationDelegated
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				if d > 0 {
					in.Expires = s.Now().Add(d)
				}
				var x api.Slice
				if err := s.PLC.Do(c.Context(), "POST", sliceKind.path, in, &x); err != nil {
					return hint(err, siteKind.hint)
				}
				next := "get slivers with plab slice create " + x.Name + " --nodes N"
				if x.Instantiation == api.InstantiationDelegated {
					next = "bind nodes with plab slice nodes " + x.Name + " add HOST"
				}
				return g.report(out, x, "slice %s registered at PLC (%s), expires %s; add members with plab slice members %s add EMAIL, %s",
					x.Name, x.Instantiation, when(x.Expires), x.Name, next)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&in.Description, "description", "", "what the slice is for")
	f.StringVar(&in.URL, "url", "", "a page about the slice")
	f.BoolVar(&delegated, "delegated", false, "PLC puts the slice on the nodes bound to it")
	f.IntVar(&in.MaxNodes, "max-nodes", 0, "most nodes the slice may be on (0: PLC's default)")
	f.StringVar(&forD, "for", "", "its life from now (e.g. 14d, 36h; default: PLC's slice lifetime)")
	outFlag(c, &out)
	return c
}

func newSliceAttrCmd(g *globals) *cobra.Command {
	var out outputFlag
	var node, group string
	c := &cobra.Command{
		Use:   "attr NAME [set KEY VALUE [--node HOST | --nodegroup GROUP] | rm ATTR_ID]",
		Short: "List a slice's attributes, or set or remove one (PIs, admins)",
		Long: `Without set or rm, list the slice's attributes. An attribute applies on
every node, or only on one node (--node) or node group (--nodegroup); the
nodes apply it to the slice's slivers. rm takes the ID the listing shows.`,
		Example: `  plab slice attr ucb_exp
  plab slice attr ucb_exp set initscript 'apt-get install -y iperf3'
  plab slice attr ucb_exp set cpu_share 4 --node n1.ucb.edu
  plab slice attr ucb_exp rm 12`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 1 || (len(args) == 4 && args[1] == "set") || (len(args) == 3 && args[1] == "rm") {
				return nil
			}
			return usageError{fmt.Errorf("plab slice attr needs a slice, then nothing, set KEY VALUE or rm ATTR_ID\nTry: plab slice attr --help")}
		},
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			if (node != "" || group != "") && (len(args) == 1 || args[1] != "set") {
				return usageError{fmt.Errorf("--node and --nodegroup scope an attribute being set\nTry: plab slice attr --help")}
			}
			if node != "" && group != "" {
				return usageError{fmt.Errorf("scope an attribute to --node or --nodegroup, not both\nTry: plab slice attr --help")}
			}
			var id int64
			if len(args) == 3 {
				var err error
				if id, err = strconv.ParseInt(args[2], 10, 64); err != nil || id <= 0 {
					return usageError{fmt.Errorf("attribute ID %q: want the number plab slice attr %s shows\nTry: plab slice attr --help", args[2], name)}
				}
			}
			path := attrsPath(name)
			return g.withPLC(func(s *svcmgr.Session) error {
				switch {
				case len(args) == 4:
					var a api.Attribute
					in := api.Attribute{Name: args[2], Value: args[3], Node: node, NodeGroup: group}
					if err := s.PLC.Do(c.Context(), "POST", path, in, &a); err != nil {
						return hint(err, sliceKind.hint+", plab node list the nodes, plab nodegroup list the groups")
					}
					return g.report(out, a, "attribute %d set on slice %s: %s=%s", a.ID, name, a.Name, a.Value)
				case len(args) == 3:
					if err := s.PLC.Do(c.Context(), "DELETE", path+"/"+strconv.FormatInt(id, 10), nil, nil); err != nil {
						return hint(err, "plab slice attr "+name+" shows its attributes")
					}
					fmt.Fprintf(g.stdout, "attribute %d removed from slice %s\n", id, name)
					return nil
				}
				as, err := listAll[api.Attribute](c.Context(), s.PLC, path, nil, 0)
				if err != nil {
					return hint(err, sliceKind.hint)
				}
				return printList(g.stdout, out, as, attrHeader, attrRow)
			})
		},
	}
	c.Flags().StringVar(&node, "node", "", "set the attribute on this node only")
	c.Flags().StringVar(&group, "nodegroup", "", "set the attribute on this node group only")
	outFlag(c, &out)
	return c
}

func newSliceEnableCmd(g *globals, enable bool) *cobra.Command {
	verb, short, long := "enable", "Enable a slice at PLC again (PIs, admins)",
		`Enable a disabled slice: its members may get tickets again (plab slice
sync NAME brings its slivers back), and nodes host its delegated slivers again.`
	if !enable {
		verb, short, long = "disable", "Disable a slice at PLC: no tickets, its tickets revoked (PIs, admins)",
			`Disable a slice without deleting it: PLC revokes its tickets and issues
no more, and nodes drop its delegated slivers at their next sync. Slivers
its members redeemed directly stay until their leases end; plab slice
delete NAME removes them now. plab slice enable NAME undoes this.`
	}
	return &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Long:    long,
		Example: "  plab slice " + verb + " ucb_exp",
		Args:    sliceKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withPLC(func(s *svcmgr.Session) error {
				var x api.Slice
				if err := sliceKind.do(c.Context(), s, "PATCH", args[0], api.SliceUpdate{Enabled: api.Ptr(enable)}, &x); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "slice %s %sd\n", x.Name, verb)
				return nil
			})
		},
	}
}

func newSliceForgetCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "forget NAME",
		Short: "Remove a slice at PLC (its registry record), not its slivers (PIs, admins)",
		Long: `Remove the slice at PLC: its record, members, attributes and node
bindings; its tickets are revoked and nodes drop its delegated slivers at
their next sync. Slivers redeemed directly are not touched: they go when
their leases end, or destroy them first with plab slice delete NAME. plab
refuses while your plab directory holds leases of the slice, unless --force.`,
		Example: `  plab slice delete ucb_exp && plab slice forget ucb_exp`,
		Args:    sliceKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			return g.withPLC(func(s *svcmgr.Session) error {
				exp, err := s.LeaseExpiry(name)
				if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
					return err
				}
				live := 0
				for _, t := range exp {
					if t.After(s.Now()) {
						live++
					}
				}
				if live > 0 && !force {
					nodes := "nodes"
					if live == 1 {
						nodes = "node"
					}
					return fmt.Errorf("you hold leases of slice %s on %d %s; destroy its slivers first with plab slice delete %s, or give --force to leave them until their leases end", name, live, nodes, name)
				}
				if err := sliceKind.do(c.Context(), s, "DELETE", name, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "slice %s removed at PLC\n", name)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&force, "force", false, "remove it even while you hold leases of its slivers")
	return c
}
