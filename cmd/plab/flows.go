package main

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/plab/plab/vnet"
	"github.com/spf13/cobra"
)

func newNodeFlowsCmd(g *globals) *cobra.Command {
	var (
		dst, since string
		port       uint16
		out        = outputFlag("table")
	)
	c := &cobra.Command{
		Use:   "flows --dst ADDR [--since TIME|DURATION] [--port PORT]",
		Short: "Show which slices exchanged traffic with an address (the flow log)",
		Long: `Read the node's flow log (flows.db in the state directory) for the flows
between slivers and a remote address, in either direction: who sent what,
from which node port, when. Open flows have no end; an end marked "~" is
when the log noticed a flow gone that ended while it was not listening.
The log keeps flows for a week after they end.`,
		Example: `  plab node flows --dst 198.51.100.7
  plab node flows --dst 198.51.100.7 --since 2h --port 443
  plab node flows --dst 198.51.100.7 --since 2026-11-23T10:00:00Z -o json`,
		Args: exactArgs(0, "flags only"),
		RunE: func(c *cobra.Command, args []string) error {
			if dst == "" {
				return usageError{fmt.Errorf("plab node flows needs --dst, the remote address to trace\nTry: plab node flows --dst 198.51.100.7")}
			}
			addr, err := netip.ParseAddr(dst)
			if err != nil {
				return usageError{fmt.Errorf("--dst %q is not an IP address; give the remote's address, e.g. --dst 198.51.100.7", dst)}
			}
			q := vnet.FlowQuery{Dst: addr, Port: port}
			if since != "" {
				if q.Since, err = parseSince(since, time.Now()); err != nil {
					return usageError{err}
				}
			}
			flows, err := vnet.QueryFlows(c.Context(), filepath.Join(g.stateDir, vnet.FlowLogName), q)
			if err != nil {
				return err
			}
			if out == "json" {
				if flows == nil {
					flows = []vnet.Flow{}
				}
				return writeJSON(g.stdout, flows)
			}
			rows := make([][]any, 0, len(flows))
			for _, f := range flows {
				end := "open"
				if !f.End.IsZero() {
					end = f.End.UTC().Format(time.RFC3339)
				}
				if f.Missed {
					end = "~" + end
				}
				path := f.Node.String() + " → " + f.Remote.String()
				if f.Inbound {
					path = f.Node.String() + " ← " + f.Remote.String()
				}
				rows = append(rows, []any{f.Start.UTC().Format(time.RFC3339), end, f.Slice, f.Proto, path, f.BytesOut, f.BytesIn})
			}
			return table(g.stdout, []any{"START", "END", "SLICE", "PROTO", "NODE → REMOTE", "BYTES OUT", "BYTES IN"}, rows)
		},
	}
	f := c.Flags()
	f.StringVar(&dst, "dst", "", "the remote address (required)")
	f.StringVar(&since, "since", "", "flows open at or after this time (RFC 3339) or this long ago (e.g. 2h)")
	f.Uint16Var(&port, "port", 0, "only flows with this remote port")
	f.VarP(&out, "output", "o", "output format: table or json")
	return c
}

// parseSince reads --since: an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 && !strings.HasPrefix(s, "-") {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q is neither a time nor a duration; use e.g. --since 2026-11-23T10:00:00Z or --since 2h", s)
}
