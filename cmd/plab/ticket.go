package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/sliver"
	"github.com/spf13/cobra"
)

func newTicketCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ticket",
		Short: "Look inside tickets and leases",
		Long: `Tickets (signed by PLC) and leases (signed by a node) are JSON Web Tokens
signed with EdDSA; any JOSE tool can read them too.`,
	}
	c.AddCommand(newTicketInspectCmd(g))
	return c
}

// inspection is what plab ticket inspect prints.
type inspection struct {
	Type      string            `json:"type"`
	SignedBy  cred.Fingerprint  `json:"signed_by"`
	Ticket    *ticket.Ticket    `json:"ticket,omitempty"`
	Lease     *ticket.Lease     `json:"lease,omitempty"`
	Verified  bool              `json:"verified"`
	Signature string            `json:"signature"`
	Issuer    *inspectionIssuer `json:"issuer,omitempty"`
}

type inspectionIssuer struct {
	Role string `json:"role"`
	Name string `json:"name"`
}

func newTicketInspectCmd(g *globals) *cobra.Command {
	var (
		trustFiles []string
		node       string
		principal  string
		at         string
		skew       time.Duration
		out        = outputFlag("table")
	)
	c := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a ticket's or lease's fields and whether its signature verifies",
		Long: `Print a ticket's or lease's fields. With --trust, also check its signature
against the trusted keys, its validity window (with --skew) and, if given, its
node and principal; the exit status is 1 when a check fails. FILE may be - for
standard input; whitespace around the document is ignored.

A trust file holds one key per line, with the role and name as comment:
  ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... plc:plc.example.org
  ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... node:node1.example.org`,
		Example: `  plab ticket inspect ~/.plab/slices/princeton_codeen/node1.ticket
  plab ticket inspect --trust /var/lib/plab/node/trust lease.jwt
  plab ticket inspect --trust trust --node node1.example.org --at 2026-12-01T00:00:00Z t.jwt`,
		Args: exactArgs(1, "a ticket or lease file (or - for standard input)"),
		RunE: func(c *cobra.Command, args []string) error {
			doc, err := readDocument(g, args[0])
			if err != nil {
				return err
			}
			now := time.Now()
			if at != "" {
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return usageError{fmt.Errorf("--at %q is not a time like 2026-12-01T00:00:00Z\nTry: plab ticket inspect --help", at)}
				}
			}
			var fp cred.Fingerprint
			if principal != "" {
				if fp, err = cred.ParseFingerprint(principal); err != nil {
					return usageError{fmt.Errorf("--principal: %w\nTry: plab ticket inspect --help", err)}
				}
			}
			var trust *ticket.Trust
			if len(trustFiles) > 0 {
				if trust, err = readTrust(trustFiles); err != nil {
					return err
				}
			}
			in, err := inspect(doc, trust, ticket.Checks{Now: now, Skew: skew, Node: node, Principal: fp})
			if err != nil {
				return err
			}
			if out == "json" {
				if err := writeJSON(g.stdout, in); err != nil {
					return err
				}
			} else {
				printInspection(g.stdout, in, now)
			}
			if trust != nil && !in.Verified {
				return exitStatus{exitError}
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&trustFiles, "trust", nil, "trust file of PLC and node keys (repeatable)")
	c.Flags().StringVar(&node, "node", "", "require the ticket to be for (or the lease to be from) this node")
	c.Flags().StringVar(&principal, "principal", "", "require this principal (SHA256:… fingerprint)")
	c.Flags().StringVar(&at, "at", "", "check validity at this time (RFC 3339) instead of now")
	c.Flags().DurationVar(&skew, "skew", 30*time.Second, "clock skew tolerated on the validity window")
	c.Flags().VarP(&out, "output", "o", "output format: table or json")
	return c
}

func readDocument(g *globals, name string) (string, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(g.stdin, ticket.MaxDocumentBytes+1024))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return strings.TrimSpace(string(data)), nil
}

func readTrust(files []string) (*ticket.Trust, error) {
	all, _ := ticket.NewTrust()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read trust file: %w", err)
		}
		t, err := ticket.ParseTrust(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, iss := range t.Issuers() {
			if err := all.Add(iss); err != nil {
				return nil, err
			}
		}
	}
	return all, nil
}

// inspect decodes doc as a ticket or a lease (its typ says which) and,
// given trust, verifies it.
func inspect(doc string, trust *ticket.Trust, c ticket.Checks) (*inspection, error) {
	in := &inspection{Signature: "not checked (give --trust FILE)"}
	var verr error
	switch typ := ticket.UnverifiedType(doc); typ {
	case ticket.TypeTicket:
		t, kid, err := ticket.UnverifiedTicket(doc)
		if err != nil {
			return nil, err
		}
		in.Type, in.Ticket, in.SignedBy = "ticket", t, kid
		if trust != nil {
			_, verr = ticket.Verify(doc, trust, c)
		}
	case ticket.TypeLease:
		l, kid, err := ticket.UnverifiedLease(doc)
		if err != nil {
			return nil, err
		}
		in.Type, in.Lease, in.SignedBy = "lease", l, kid
		if trust != nil {
			_, verr = ticket.VerifyLease(doc, trust, c)
		}
	default:
		return nil, fmt.Errorf("not a plab ticket or lease (a JWS whose typ is %s or %s)", ticket.TypeTicket, ticket.TypeLease)
	}
	if trust == nil {
		return in, nil
	}
	if verr != nil {
		in.Signature = "REFUSED: " + strings.TrimPrefix(strings.TrimPrefix(verr.Error(), "verify ticket: "), "verify lease: ")
		return in, nil
	}
	for _, iss := range trust.Issuers() {
		if iss.Key.Fingerprint() == in.SignedBy {
			in.Issuer = &inspectionIssuer{Role: string(iss.Role), Name: iss.Name}
		}
	}
	in.Verified = true
	in.Signature = fmt.Sprintf("verified: signed by %s %s", in.Issuer.Role, in.Issuer.Name)
	return in, nil
}

func printInspection(w io.Writer, in *inspection, now time.Time) {
	var rows [][2]string
	add := func(k, v string) { rows = append(rows, [2]string{k, v}) }
	window := func(nbf, exp int64) string {
		from, to := time.Unix(nbf, 0).UTC(), time.Unix(exp, 0).UTC()
		s := from.Format(time.RFC3339) + " to " + to.Format(time.RFC3339)
		switch {
		case now.Before(from):
			s += " (not yet valid)"
		case now.Before(to):
			s += fmt.Sprintf(" (%s left)", to.Sub(now).Round(time.Second))
		default:
			s += " (expired)"
		}
		return s
	}
	add("type", in.Type)
	if t := in.Ticket; t != nil {
		add("id", t.ID)
		add("issuer", t.Issuer)
		add("principal", string(t.Principal))
		add("node", t.Node)
		add("slice", t.Slice)
		add("resources", formatResources(t.Resources))
		add("issued", time.Unix(t.IssuedAt, 0).UTC().Format(time.RFC3339))
		add("valid", window(t.NotBefore, t.NotAfter))
	}
	if l := in.Lease; l != nil {
		add("id", l.ID)
		add("node", l.Issuer)
		add("principal", string(l.Principal))
		add("slice", l.Slice)
		add("sliver", l.Sliver)
		add("ticket", l.TicketID)
		add("resources", formatResources(l.Resources))
		add("renewals", fmt.Sprint(l.Renewals))
		add("issued", time.Unix(l.IssuedAt, 0).UTC().Format(time.RFC3339))
		add("valid", window(l.NotBefore, l.NotAfter))
	}
	add("key", string(in.SignedBy))
	add("signature", in.Signature)
	for _, r := range rows {
		fmt.Fprintf(w, "%-10s %s\n", r[0]+":", r[1])
	}
}

func formatResources(r ticket.Resources) string {
	var parts []string
	add := func(name string, v int64, format func(int64) string) {
		if v != 0 {
			parts = append(parts, name+"="+format(v))
		}
	}
	plain := func(v int64) string { return fmt.Sprint(v) }
	bytes := func(v int64) string { return sliver.FormatBytes(v) }
	milli := func(v int64) string { return fmt.Sprintf("%gcpu", float64(v)/1000) }
	rate := func(v int64) string { return fmt.Sprintf("%gMbit/s", float64(v)/1e6) }
	add("cpu_shares", int64(r.CPUShares), plain)
	add("cpu_reserve", r.CPUReserve, milli)
	add("cpu_limit", r.CPULimit, milli)
	add("memory", r.MemoryBytes, bytes)
	add("pids", r.Pids, plain)
	add("disk", r.DiskBytes, bytes)
	add("net_min", r.NetMinRate, rate)
	add("net_max", r.NetMaxRate, rate)
	if len(r.Ports) > 0 {
		parts = append(parts, "ports="+strings.Join(r.Ports, ","))
	}
	if len(parts) == 0 {
		return "node defaults"
	}
	return strings.Join(parts, " ")
}
