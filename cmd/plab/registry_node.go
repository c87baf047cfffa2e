package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plab/plab/api"
	"github.com/plab/plab/svcmgr"
)

// Nodes and node groups at PLC. The node commands join the node group,
// beside those that run a node (enroll, serve, cleanup, flows).

// newNodeRegistryCmds are the node group's commands on PLC's records.
func newNodeRegistryCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newNodeListCmd(g), newNodeShowCmd(g), newNodeAddCmd(g), newNodeUpdateCmd(g),
		newNodeDeleteCmd(g), newNodeTokenCmd(g)}
}

func newNodeListCmd(g *globals) *cobra.Command {
	var site, tag, bootState, group string
	c := &cobra.Command{
		Use:   "list [--site LOGIN] [--tag NAME=VALUE] [--boot-state STATE] [--nodegroup NAME]",
		Short: "List the nodes registered at PLC",
		Example: `  plab node list
  plab node list --site ucb --tag arch=x86_64
  plab node list --nodegroup gpu -o json`,
		Args: exactArgs(0, "no arguments (filter with flags)"),
	}
	f := c.Flags()
	f.StringVar(&site, "site", "", "only this site's nodes")
	f.StringVar(&tag, "tag", "", "only nodes with this tag NAME=VALUE")
	f.StringVar(&bootState, "boot-state", "", "only nodes in this boot state (boot, safeboot, reinstall, disabled)")
	f.StringVar(&group, "nodegroup", "", "only this node group's nodes")
	return listCmd(g, c, listing[api.Node]{
		path: nodeKind.path,
		query: func(c *cobra.Command) (url.Values, error) {
			if tag != "" {
				if _, _, err := parseTag(c, tag); err != nil {
					return nil, err
				}
			}
			return filters(map[string]string{"site": site, "tag": tag, "boot_state": bootState, "nodegroup": group}), nil
		},
		hint:   "plab site list shows the sites, plab nodegroup list the node groups",
		header: []any{"HOSTNAME", "SITE", "BOOT STATE", "ADDRESSES", "TAGS", "LAST CONTACT"},
		row: func(n api.Node) []any {
			return []any{n.Hostname, n.Site, n.BootState, orDash(strings.Join(n.Addresses, ",")), tagList(n.Tags), when(n.LastContact)}
		},
	})
}

func newNodeShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Short: "Show a node: site, state, addresses, tags, capacity, SSH host key and ports",
		Long: `Show PLC's record of a node. The SSH host key and the ports are those the
node last reported: plab ssh pins that key; "-" means the node has not
reported yet (a port not reported is the default: SSH 22, API ` + strconv.Itoa(svcmgr.DefaultNodePort) + `).`,
		Example: "  plab node show n1.ucb.edu\n  plab node show n1.ucb.edu -o json",
	}
	return showCmd(g, c, showing[api.Node]{
		kind: nodeKind,
		text: func(w io.Writer, _ *svcmgr.Session, n api.Node) error {
			return fields(w, [][2]string{
				{"hostname", n.Hostname}, {"site", n.Site}, {"boot_state", n.BootState},
				{"addresses", strings.Join(n.Addresses, ", ")}, {"tags", tagList(n.Tags)},
				{"capacity", resourcesString(n.Capacity)},
				{"last_contact", when(n.LastContact)}, {"created", when(n.Created)},
				{"ssh_host_key", n.SSHHostKey}, {"ssh_port", port(n.SSHPort)}, {"api_port", port(n.APIPort)},
			})
		},
	})
}

// port is a reported port for a table: "" (shown "-") when not reported.
func port(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// resourcesString is a node's capacity for a table.
func resourcesString(r *api.Resources) string {
	if r == nil {
		return ""
	}
	var parts []string
	add := func(name string, v int64, format func(int64) string) {
		if v != 0 {
			parts = append(parts, name+" "+format(v))
		}
	}
	num := func(v int64) string { return strconv.FormatInt(v, 10) }
	add("cpu", r.CPUReserve, func(v int64) string { return strconv.FormatFloat(float64(v)/1000, 'f', -1, 64) })
	add("cpu_shares", int64(r.CPUShares), num)
	add("memory", r.MemoryBytes, bytesString)
	add("disk", r.DiskBytes, bytesString)
	add("pids", r.Pids, num)
	add("net_min", r.NetMinRate, rateString)
	add("net_max", r.NetMaxRate, rateString)
	if len(r.Ports) > 0 {
		parts = append(parts, "ports "+strings.Join(r.Ports, ","))
	}
	return strings.Join(parts, ", ")
}

// bytesString writes a size with a binary unit: 512M, 7.5G.
func bytesString(v int64) string {
	const units = "KMGTPE"
	if v < 1024 {
		return strconv.FormatInt(v, 10)
	}
	f, i := float64(v)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f, i = f/1024, i+1
	}
	return strings.TrimSuffix(strconv.FormatFloat(f, 'f', 1, 64), ".0") + units[i:i+1]
}

// rateString writes a rate in bit/s with a decimal unit: 100M.
func rateString(v int64) string {
	switch {
	case v >= 1e9 && v%1e7 == 0:
		return strconv.FormatFloat(float64(v)/1e9, 'f', -1, 64) + "G"
	case v >= 1e6 && v%1e4 == 0:
		return strconv.FormatFloat(float64(v)/1e6, 'f', -1, 64) + "M"
	case v >= 1e3 && v%10 == 0:
		return strconv.FormatFloat(float64(v)/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatInt(v, 10)
}

func newNodeAddCmd(g *globals) *cobra.Command {
	var out outputFlag
	var in api.Node
	var tags []string
	c := &cobra.Command{
		Use:   "add HOST --site LOGIN [--address ADDR]... [--tag NAME=VALUE]...",
		Short: "Register a node at PLC (techs: at their site; admins)",
		Long: `Register a machine as a node of a site. Then make its one-time
enrollment token (plab node token HOST) and enroll the machine with it
(plab node enroll on the machine).`,
		Example: `  plab node add n1.ucb.edu --site ucb --address 198.18.0.2 --tag arch=x86_64
  plab node token n1.ucb.edu`,
		Args: nodeKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			if in.Site == "" {
				return usageError{fmt.Errorf("plab node add needs --site, the site the node belongs to\nTry: plab node add --help")}
			}
			in.Hostname = args[0]
			for _, t := range tags {
				k, v, err := parseTag(c, t)
				if err != nil {
					return err
				}
				if in.Tags == nil {
					in.Tags = map[string]string{}
				}
				in.Tags[k] = v
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				var n api.Node
				if err := s.PLC.Do(c.Context(), "POST", nodeKind.path, in, &n); err != nil {
					return hint(err, siteKind.hint)
				}
				return g.report(out, n, "node %s added at site %s; make its enrollment token with plab node token %s", n.Hostname, n.Site, n.Hostname)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&in.Site, "site", "", "the node's site (login base)")
	f.StringSliceVar(&in.Addresses, "address", nil, "the node's address (repeatable; the first is the one clients use)")
	f.StringSliceVar(&tags, "tag", nil, "a tag NAME=VALUE (repeatable)")
	f.StringVar(&in.BootState, "boot-state", "", "boot (the default), safeboot, reinstall or disabled (admins)")
	outFlag(c, &out)
	return c
}

func newNodeUpdateCmd(g *globals) *cobra.Command {
	var out outputFlag
	var bootState string
	var tags, untags, addrs []string
	c := &cobra.Command{
		Use:   "update HOST [--boot-state STATE] [--tag NAME=VALUE]... [--untag NAME]... [--address ADDR]...",
		Short: "Change a node: boot state (admins), tags, addresses (techs, admins)",
		Long: `Change a node; what no flag names stays as it is. --tag sets a tag and
--untag removes one, leaving the others; --address replaces every address.
Boot states are boot, safeboot, reinstall and disabled; only admins change
them. The node learns the change at its next sync with PLC.`,
		Example: `  plab node update n1.ucb.edu --tag arch=arm64 --untag gpu
  plab node update n1.ucb.edu --boot-state safeboot
  plab node update n1.ucb.edu --address 198.18.0.9`,
		Args: nodeKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			var in api.NodeUpdate
			set := map[string]string{}
			for _, t := range tags {
				k, v, err := parseTag(c, t)
				if err != nil {
					return err
				}
				set[k] = v
			}
			in.BootState = changed(c, "boot-state", &bootState)
			if c.Flags().Changed("address") {
				if len(addrs) == 0 {
					return usageError{fmt.Errorf("--address: give at least one address\nTry: plab node update --help")}
				}
				in.Addresses = addrs
			}
			if in.BootState == nil && in.Addresses == nil && len(set) == 0 && len(untags) == 0 {
				return nothingToChange(c)
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				if len(set) > 0 || len(untags) > 0 {
					// PLC replaces all tags at once: start from the node's.
					var n api.Node
					if err := nodeKind.get(c.Context(), s, args[0], &n); err != nil {
						return err
					}
					in.Tags = map[string]string{}
					maps.Copy(in.Tags, n.Tags)
					for _, k := range untags {
						if _, ok := in.Tags[k]; !ok {
							return fmt.Errorf("node %s has no tag %s (its tags: %s)", args[0], k, tagList(n.Tags))
						}
						delete(in.Tags, k)
					}
					maps.Copy(in.Tags, set)
					if len(in.Tags) == 0 {
						// An empty map means "unchanged" to PLC.
						return fmt.Errorf("node %s would be left without tags, which PLC's API cannot express; keep one tag (or set a placeholder with --tag)", args[0])
					}
				}
				var n api.Node
				if err := nodeKind.do(c.Context(), s, "PATCH", args[0], in, &n); err != nil {
					return err
				}
				return g.report(out, n, "node %s updated: boot state %s, tags %s, addresses %s", n.Hostname, n.BootState, tagList(n.Tags), orDash(strings.Join(n.Addresses, ",")))
			})
		},
	}
	f := c.Flags()
	f.StringVar(&bootState, "boot-state", "", "boot, safeboot, reinstall or disabled (admins)")
	f.StringSliceVar(&tags, "tag", nil, "set a tag NAME=VALUE (repeatable)")
	f.StringSliceVar(&untags, "untag", nil, "remove a tag NAME (repeatable)")
	f.StringSliceVar(&addrs, "address", nil, "the node's address (repeatable; replaces all)")
	outFlag(c, &out)
	return c
}

func newNodeDeleteCmd(g *globals) *cobra.Command {
	return deleteCmd(g, nodeKind, &cobra.Command{
		Short: "Remove a node from PLC (techs: at their site; admins)",
		Long: `Remove a node's record at PLC. Its certificate speaks for it no more: to
come back, the node is added again and enrolls again.`,
		Example: `  plab node delete n1.ucb.edu`,
	})
}

func newNodeTokenCmd(g *globals) *cobra.Command {
	var out outputFlag
	c := &cobra.Command{
		Use:   "token HOST",
		Short: "Make a node's one-time enrollment token (techs: at their site; admins)",
		Long: `Make a one-time token that lets the machine enroll as node HOST (valid 24
hours; PLC keeps only its hash). Pass it to the machine's operator over a
private channel; plab node enroll spends it.`,
		Example: `  plab node token n1.ucb.edu
  plab node token n1.ucb.edu -o json`,
		Args: nodeKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withPLC(func(s *svcmgr.Session) error {
				var t api.EnrollToken
				if err := s.PLC.Do(c.Context(), "POST", nodeKind.url(args[0])+"/token", nil, &t); err != nil {
					return hint(err, nodeKind.hint+"; plab node add registers one")
				}
				if out == "json" {
					return writeJSON(g.stdout, t)
				}
				fmt.Fprintf(g.stdout, "enrollment token for %s (one use, until %s):\n  %s\non the machine, as root:\n  plab node enroll --plc %s --hostname %s --ca-fingerprint %s --token %s\n",
					t.Node, when(t.Expires), t.Token, s.Config.PLC, t.Node, s.Config.CAFingerprint, t.Token)
				return nil
			})
		},
	}
	outFlag(c, &out)
	return c
}

// ---- node groups

func newNodeGroupCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "nodegroup",
		Short: "Node groups at PLC: list, create, delete",
		Long: `A node group names the nodes whose tag NAME has a value: slices select
nodes by group (plab slice create --nodegroup), and slice attributes can be
scoped to one. Admins create and delete groups.`,
	}
	c.AddCommand(newNodeGroupListCmd(g), newNodeGroupCreateCmd(g), newNodeGroupDeleteCmd(g))
	return c
}

func newNodeGroupListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the node groups",
		Example: "  plab nodegroup list\n  plab nodegroup list -o json",
		Args:    exactArgs(0, "no arguments"),
	}
	return listCmd(g, c, listing[api.NodeGroup]{
		path:   nodeGroupKind.path,
		header: []any{"NAME", "TAG", "VALUE"},
		row:    func(x api.NodeGroup) []any { return []any{x.Name, x.Tag, x.Value} },
	})
}

func newNodeGroupCreateCmd(g *globals) *cobra.Command {
	var out outputFlag
	var in api.NodeGroup
	c := &cobra.Command{
		Use:   "create NAME --tag TAG --value VALUE",
		Short: "Create a node group: the nodes whose tag TAG is VALUE (admins)",
		Example: `  plab nodegroup create arm --tag arch --value arm64
  plab node list --nodegroup arm`,
		Args: nodeGroupKind.args(),
		RunE: func(c *cobra.Command, args []string) error {
			if in.Tag == "" || !c.Flags().Changed("value") {
				return usageError{fmt.Errorf("plab nodegroup create needs --tag and --value: the group is the nodes whose tag has that value\nTry: plab nodegroup create --help")}
			}
			in.Name = args[0]
			return g.withPLC(func(s *svcmgr.Session) error {
				var x api.NodeGroup
				if err := s.PLC.Do(c.Context(), "POST", nodeGroupKind.path, in, &x); err != nil {
					return err
				}
				return g.report(out, x, "node group %s created: the nodes with tag %s=%s; plab node list --nodegroup %s lists them", x.Name, x.Tag, x.Value, x.Name)
			})
		},
	}
	c.Flags().StringVar(&in.Tag, "tag", "", "the tag's name")
	c.Flags().StringVar(&in.Value, "value", "", "the tag's value")
	outFlag(c, &out)
	return c
}

func newNodeGroupDeleteCmd(g *globals) *cobra.Command {
	return deleteCmd(g, nodeGroupKind, &cobra.Command{
		Short:   "Delete a node group, and the slice attributes scoped to it (admins)",
		Example: `  plab nodegroup delete arm`,
	})
}
