package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/svcmgr"
)

// The registry commands are thin wrappers over PLC's API (docs/plc.md):
// each names one object, calls one endpoint (a listing: every page), and
// leaves every decision to PLC, whose refusals they print as they are.
// Listings and shows print a table, or PLC's JSON with -o json.

// addRegistryCmds adds PLC's registry commands (sites, people, keys, nodes,
// node groups, slices, the audit log) to root: new groups, and subcommands
// of the node and slice groups that act on PLC's records.
func addRegistryCmds(g *globals, root *cobra.Command) {
	root.AddCommand(newSiteCmd(g), newPersonCmd(g), newKeyCmd(g), newNodeGroupCmd(g), newEventsCmd(g))
	subgroup(root, "node", "Run and maintain a node").AddCommand(newNodeRegistryCmds(g)...)
	subgroup(root, "slice", "Slices at PLC and across nodes").AddCommand(newSliceRegistryCmds(g)...)
}

// subgroup returns root's command group name, adding it when missing.
func subgroup(root *cobra.Command, name, short string) *cobra.Command {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	c := &cobra.Command{Use: name, Short: short}
	root.AddCommand(c)
	return c
}

// pageSize is how many items a listing asks PLC for at once: PLC's
// largest page.
const pageSize = 1000

// listAll gets the listing at path with query q, every page of it, or its
// first limit items when limit > 0. It never returns a nil slice, so -o
// json prints [] for nothing.
func listAll[T any](ctx context.Context, c *api.Client, path string, q url.Values, limit int) ([]T, error) {
	return listPages[T](ctx, c, path, q, limit, pageSize)
}

// listPages is listAll asking for size items a page.
func listPages[T any](ctx context.Context, c *api.Client, path string, q url.Values, limit, size int) ([]T, error) {
	out := []T{}
	q = maps.Clone(q)
	if q == nil {
		q = url.Values{}
	}
	for {
		n := size
		if limit > 0 {
			n = min(n, limit-len(out))
		}
		q.Set("limit", strconv.Itoa(n))
		var page api.List[T]
		if err := c.Do(ctx, "GET", path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
		if page.Next == "" || len(page.Items) == 0 {
			return out, nil
		}
		q.Set("after", page.Next)
	}
}

// withPLC runs fn with the user's session (plab login made it).
func (g *globals) withPLC(fn func(s *svcmgr.Session) error) error {
	s, err := g.session()
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

// hint adds what to do next to a not-found error: how to see the names
// that exist. An empty next adds nothing.
func hint(err error, next string) error {
	if next != "" && errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("%w; %s", err, next)
	}
	return err
}

// seg escapes one segment of an API path.
func seg(s string) string { return url.PathEscape(s) }

// kind is a kind of PLC object that commands name by its key: a site by
// its login base, a person by email, a node by hostname, a node group or
// a slice by name.
type kind struct {
	noun string // in messages: "node group"
	arg  string // the key in a command's usage: "LOGIN"
	what string // the key in a usage error: "the site's login base"
	path string // the objects' collection in PLC's API: "/v1/sites"
	hint string // for a not-found error: how to see the keys that exist
}

// The kinds of object the registry commands name.
var (
	siteKind = kind{noun: "site", arg: "LOGIN", what: "the site's login base",
		path: "/v1/sites", hint: "plab site list shows the sites"}
	personKind = kind{noun: "person", arg: "EMAIL", what: "the person's email",
		path: "/v1/persons", hint: "plab person list shows the people"}
	nodeKind = kind{noun: "node", arg: "HOST", what: "the node's hostname",
		path: "/v1/nodes", hint: "plab node list shows the nodes"}
	nodeGroupKind = kind{noun: "node group", arg: "NAME", what: "the group's name",
		path: "/v1/nodegroups", hint: "plab nodegroup list shows the node groups"}
	sliceKind = kind{noun: "slice", arg: "NAME", what: "the slice's name",
		path: "/v1/slices", hint: "plab slice list shows the slices"}
)

// url is the API path of the object with key name.
func (k kind) url(name string) string { return k.path + "/" + seg(name) }

// args wants one argument, an object's key.
func (k kind) args() cobra.PositionalArgs { return exactArgs(1, k.what) }

// do sends PLC a request about the object with key name: in, if not nil,
// as the body, and the answer into out, if not nil. A not-found error says
// how to see the keys that exist.
func (k kind) do(ctx context.Context, s *svcmgr.Session, method, name string, in, out any) error {
	return hint(s.PLC.Do(ctx, method, k.url(name), in, out), k.hint)
}

// get reads the object with key name into x.
func (k kind) get(ctx context.Context, s *svcmgr.Session, name string, x any) error {
	return k.do(ctx, s, "GET", name, nil, x)
}

// listing is what a list command gets and how it prints it as a table.
type listing[T any] struct {
	path   string
	query  func(c *cobra.Command) (url.Values, error) // its filters, from c's flags; nil for none
	hint   string                                     // for a not-found error (a filter naming nothing); "" for none
	header []any
	row    func(T) []any
}

// listCmd completes c, which has its usage, help and filter flags, as a
// listing of l: it adds -o and --limit, and gets every page (or --limit
// items) of the listing.
func listCmd[T any](g *globals, c *cobra.Command, l listing[T]) *cobra.Command {
	var out outputFlag
	var limit int
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkLimit(c, limit); err != nil {
			return err
		}
		var q url.Values
		if l.query != nil {
			var err error
			if q, err = l.query(c); err != nil {
				return err
			}
		}
		return g.withPLC(func(s *svcmgr.Session) error {
			xs, err := listAll[T](c.Context(), s.PLC, l.path, q, limit)
			if err != nil {
				return hint(err, l.hint)
			}
			return printList(g.stdout, out, xs, l.header, l.row)
		})
	}
	outFlag(c, &out)
	limitFlag(c, &limit)
	return c
}

// printList prints a listing: PLC's JSON with -o json, else a table under
// header with a row for each item.
func printList[T any](w io.Writer, out outputFlag, xs []T, header []any, row func(T) []any) error {
	if out == "json" {
		return writeJSON(w, xs)
	}
	rows := make([][]any, 0, len(xs))
	for _, x := range xs {
		rows = append(rows, row(x))
	}
	return table(w, header, rows)
}

// filters is a listing's query: each name with its value, but for those
// whose value is "".
func filters(values map[string]string) url.Values {
	q := url.Values{}
	for k, v := range values {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// showing is what a show command gets and how it prints it as text.
type showing[T any] struct {
	kind kind
	// get fetches the object with key name; nil: PLC's record of it.
	get func(ctx context.Context, s *svcmgr.Session, name string) (T, error)
	// text prints the object without -o json.
	text func(w io.Writer, s *svcmgr.Session, x T) error
}

// showCmd completes c, which has its help, as "show KEY" of an object of
// kind sh.kind, with -o.
func showCmd[T any](g *globals, c *cobra.Command, sh showing[T]) *cobra.Command {
	var out outputFlag
	c.Use = "show " + sh.kind.arg
	c.Args = sh.kind.args()
	c.RunE = func(c *cobra.Command, args []string) error {
		return g.withPLC(func(s *svcmgr.Session) error {
			var x T
			var err error
			if sh.get != nil {
				x, err = sh.get(c.Context(), s, args[0])
			} else {
				err = sh.kind.get(c.Context(), s, args[0], &x)
			}
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(g.stdout, x)
			}
			return sh.text(g.stdout, s, x)
		})
	}
	outFlag(c, &out)
	return c
}

// deleteCmd completes c, which has its help, as "delete KEY" of an object
// of kind k.
func deleteCmd(g *globals, k kind, c *cobra.Command) *cobra.Command {
	c.Use = "delete " + k.arg
	c.Args = k.args()
	c.RunE = func(c *cobra.Command, args []string) error {
		return g.withPLC(func(s *svcmgr.Session) error {
			if err := k.do(c.Context(), s, "DELETE", args[0], nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s %s deleted\n", k.noun, args[0])
			return nil
		})
	}
	return c
}

// report ends a write: PLC's answer with -o json, else a line saying what
// was done.
func (g *globals) report(out outputFlag, v any, format string, a ...any) error {
	if out == "json" {
		return writeJSON(g.stdout, v)
	}
	_, err := fmt.Fprintf(g.stdout, format+"\n", a...)
	return err
}

// limitFlag adds --limit to a listing.
func limitFlag(c *cobra.Command, limit *int) {
	c.Flags().IntVar(limit, "limit", 0, "list at most this many (0: all)")
}

// outFlag adds -o to a command.
func outFlag(c *cobra.Command, out *outputFlag) {
	*out = "table"
	c.Flags().VarP(out, "output", "o", "table or json")
}

// checkLimit refuses a negative --limit.
func checkLimit(c *cobra.Command, limit int) error {
	if limit < 0 {
		return usageError{fmt.Errorf("--limit %d: want a positive count, or 0 for all\nTry: %s --help", limit, c.CommandPath())}
	}
	return nil
}

// fields writes name/value lines in aligned columns: a show's form.
func fields(w io.Writer, rows [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		v := r[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], v)
	}
	return tw.Flush()
}

// when formats a time for a table: UTC, to the second; "-" when unset.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// yesNo is a boolean for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// tagList formats tags as sorted k=v pairs.
func tagList(tags map[string]string) string {
	var kv []string
	for k, v := range tags {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return orDash(strings.Join(kv, ","))
}

// parseTag reads a --tag k=v.
func parseTag(c *cobra.Command, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", usageError{fmt.Errorf("--tag %q: want NAME=VALUE, e.g. --tag arch=x86_64\nTry: %s --help", s, c.CommandPath())}
	}
	return k, v, nil
}

// enableFlags are --enable and --disable of an update.
type enableFlags struct{ enable, disable bool }

func (e *enableFlags) add(c *cobra.Command, what string) {
	c.Flags().BoolVar(&e.enable, "enable", false, "enable the "+what)
	c.Flags().BoolVar(&e.disable, "disable", false, "disable the "+what)
}

// value is the change asked for: nil for none.
func (e *enableFlags) value(c *cobra.Command) (*bool, error) {
	switch {
	case e.enable && e.disable:
		return nil, usageError{fmt.Errorf("give --enable or --disable, not both\nTry: %s --help", c.CommandPath())}
	case e.enable:
		return api.Ptr(true), nil
	case e.disable:
		return api.Ptr(false), nil
	}
	return nil, nil
}

// changed is an update's field from c's flag name: v when the flag was
// given, else nil (no change).
func changed[T any](c *cobra.Command, name string, v *T) *T {
	if c.Flags().Changed(name) {
		return v
	}
	return nil
}

// nothingToChange is an update without a change.
func nothingToChange(c *cobra.Command) error {
	return usageError{fmt.Errorf("%s: say what to change\nTry: %s --help", c.CommandPath(), c.CommandPath())}
}

func newEventsCmd(g *globals) *cobra.Command {
	var after int64
	c := &cobra.Command{
		Use:   "events [--limit N] [--after ID]",
		Short: "PLC's audit log: who did what to which object, and the result (admins)",
		Long: `List PLC's audit log, oldest first: every write, refused ones included,
with who made it, the object and the result ("ok" or the error code).
Only admins may read it. --after ID continues after the last event seen.`,
		Example: `  plab events --limit 50
  plab events --after 1200 -o json`,
		Args: exactArgs(0, "no arguments"),
	}
	c.Flags().Int64Var(&after, "after", 0, "only events after this ID")
	return listCmd(g, c, listing[api.Event]{
		path: "/v1/events",
		query: func(*cobra.Command) (url.Values, error) {
			if after < 0 {
				return nil, usageError{fmt.Errorf("--after %d: want an event ID from an earlier listing\nTry: plab events --help", after)}
			}
			q := url.Values{}
			if after > 0 {
				q.Set("after", strconv.FormatInt(after, 10))
			}
			return q, nil
		},
		header: []any{"ID", "AT", "ACTOR", "ACTION", "OBJECT", "RESULT"},
		row: func(e api.Event) []any {
			return []any{e.ID, when(e.At), e.Actor, e.Action, e.Object, e.Result}
		},
	})
}
