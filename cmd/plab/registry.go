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
// that exist.
func hint(err error, next string) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("%w; %s", err, next)
	}
	return err
}

// seg escapes one segment of an API path.
func seg(s string) string { return url.PathEscape(s) }

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

// nothingToChange is an update without a change.
func nothingToChange(c *cobra.Command) error {
	return usageError{fmt.Errorf("%s: say what to change\nTry: %s --help", c.CommandPath(), c.CommandPath())}
}

func newEventsCmd(g *globals) *cobra.Command {
	var out outputFlag
	var limit int
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
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkLimit(c, limit); err != nil {
				return err
			}
			if after < 0 {
				return usageError{fmt.Errorf("--after %d: want an event ID from an earlier listing\nTry: plab events --help", after)}
			}
			return g.withPLC(func(s *svcmgr.Session) error {
				q := url.Values{}
				if after > 0 {
					q.Set("after", strconv.FormatInt(after, 10))
				}
				es, err := listAll[api.Event](c.Context(), s.PLC, "/v1/events", q, limit)
				if err != nil {
					return err
				}
				if out == "json" {
					return writeJSON(g.stdout, es)
				}
				rows := make([][]any, 0, len(es))
				for _, e := range es {
					rows = append(rows, []any{e.ID, when(e.At), e.Actor, e.Action, e.Object, e.Result})
				}
				return table(g.stdout, []any{"ID", "AT", "ACTOR", "ACTION", "OBJECT", "RESULT"}, rows)
			})
		},
	}
	outFlag(c, &out)
	limitFlag(c, &limit)
	c.Flags().Int64Var(&after, "after", 0, "only events after this ID")
	return c
}
