package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/svcmgr"
)

// session opens the user's session (plab login made it).
func (g *globals) session() (*svcmgr.Session, error) {
	return svcmgr.Open(g.configDir, nil)
}

func newLoginCmd(g *globals) *cobra.Command {
	var plc, key, caFP, agentKey string
	var agent bool
	c := &cobra.Command{
		Use:   "login --plc URL (--key FILE | --agent) [--ca-fingerprint SHA256:…]",
		Short: "Set up plab for you: PLC, your SSH key, PLC's CA pinned",
		Long: `Check PLC and your SSH key, pin PLC's CA and write your configuration
(~/.plab/config.json, or --config DIR / PLAB_CONFIG). Without
--ca-fingerprint, the CA PLC presents now is pinned (first use) and its
fingerprint printed: compare it with the one your operator published.`,
		Example: `  plab login --plc https://plc.example.org --key ~/.ssh/id_ed25519
  plab login --plc https://plc.example.org --agent --ca-fingerprint SHA256:…`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if plc == "" {
				return usageError{fmt.Errorf("--plc is required (PLC's https URL)\nTry: plab login --help")}
			}
			if (key == "") == !agent {
				return usageError{fmt.Errorf("give one of --key FILE (your SSH private key) or --agent\nTry: plab login --help")}
			}
			id := key
			if agent {
				id = "agent"
			}
			res, err := svcmgr.Login(c.Context(), g.configDir, svcmgr.LoginOptions{PLC: plc, Identity: id,
				AgentKey: cred.Fingerprint(agentKey), CAFingerprint: cred.Fingerprint(caFP)})
			if err != nil {
				return err
			}
			if res.FirstUse {
				fmt.Fprintf(g.stdout, "PLC's CA is %s; pinned on first use: check it with your operator\n", res.Config.CAFingerprint)
			}
			fmt.Fprintf(g.stdout, "logged in to %s as %s (%s), key %s\n", res.Config.PLC, res.Whoami.Email, strings.Join(res.Whoami.Roles, ","), res.Config.Key)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&plc, "plc", "", "PLC's URL (https://…)")
	f.StringVar(&key, "key", "", "your SSH private key file")
	f.BoolVar(&agent, "agent", false, "sign with a key held by ssh-agent")
	f.StringVar(&agentKey, "agent-key", "", "which agent key (SHA256:…; default: the first)")
	f.StringVar(&caFP, "ca-fingerprint", "", "PLC's CA key fingerprint, as your operator published it")
	return c
}

func newConfigCmd(g *globals) *cobra.Command {
	var out outputFlag = "table"
	c := &cobra.Command{
		Use:   "config",
		Short: "Show your plab configuration",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := svcmgr.LoadConfig(g.configDir)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(g.stdout, cfg)
			}
			return table(g.stdout, []any{"SETTING", "VALUE"}, [][]any{
				{"dir", g.configDir}, {"plc", cfg.PLC}, {"plc_name", cfg.PLCName},
				{"ca_fingerprint", cfg.CAFingerprint}, {"identity", cfg.Identity}, {"key", cfg.Key}})
		},
	}
	c.Flags().VarP(&out, "output", "o", "table or json")
	return c
}

// sliceFlags are a slice's node selection and the resources it asks
// for on each node.
type sliceFlags struct {
	nodes                    int
	nodeNames, sites, where  []string
	nodeGroup                string
	spread                   bool
	minMemory, minCPU        string
	cpuShares                int
	cpuReserve, memory, disk string
	netMin, netMax           string
	ports                    []string
	description, lease       string
	parallel                 int
	quiet                    bool
	resources                api.Resources
	selection                svcmgr.Selection
	term                     time.Duration
}

func (r *sliceFlags) add(c *cobra.Command) {
	f := c.Flags()
	f.IntVar(&r.nodes, "nodes", 0, "how many nodes (0 with --node: those named)")
	f.StringSliceVar(&r.nodeNames, "node", nil, "a node by name (repeatable)")
	f.StringSliceVar(&r.sites, "site", nil, "only nodes of this site (repeatable)")
	f.StringSliceVar(&r.where, "where", nil, "only nodes with this tag=value (repeatable)")
	f.StringVar(&r.nodeGroup, "nodegroup", "", "only nodes of this node group")
	f.BoolVar(&r.spread, "spread-sites", false, "take nodes from as many sites as possible")
	f.StringVar(&r.minMemory, "min-free-memory", "", "only nodes with this much memory free (e.g. 1G)")
	f.StringVar(&r.minCPU, "min-free-cpu", "", "only nodes with this much CPU free to reserve (e.g. 0.5)")
	f.IntVar(&r.cpuShares, "cpu-share", 0, "CPU share (weight) on each node")
	f.StringVar(&r.cpuReserve, "cpu-reserve", "", "CPU reserved on each node (e.g. 0.25)")
	f.StringVar(&r.memory, "memory", "", "memory on each node (e.g. 512M)")
	f.StringVar(&r.disk, "disk", "", "disk on each node (e.g. 2G)")
	f.StringVar(&r.netMin, "net-min", "", "guaranteed bandwidth, bit/s (e.g. 10M)")
	f.StringVar(&r.netMax, "net-max", "", "bandwidth ceiling, bit/s (e.g. 100M)")
	f.StringSliceVar(&r.ports, "port", nil, "port to reserve on each node, tcp/8080 or udp/5000-5010 (repeatable)")
	f.StringVar(&r.description, "description", "", "the slice's description at PLC, when this creates it")
	f.StringVar(&r.lease, "lease", "", "lease length on each node (e.g. 2h, 3d; default: as long as the node grants)")
	f.IntVar(&r.parallel, "parallel", 64, "nodes worked on at once")
	f.BoolVarP(&r.quiet, "quiet", "q", false, "no progress lines")
}

func (r *sliceFlags) parse() error {
	res := api.Resources{CPUShares: r.cpuShares, Ports: r.ports}
	var err error
	parse := func(flag, v string, fn func(string) (int64, error), dst *int64) {
		if err != nil || v == "" {
			return
		}
		if *dst, err = fn(v); err != nil {
			err = fmt.Errorf("--%s %q: %w", flag, v, err)
		}
	}
	parse("cpu-reserve", r.cpuReserve, parseMilliCPU, &res.CPUReserve)
	parse("memory", r.memory, parseBytes, &res.MemoryBytes)
	parse("disk", r.disk, parseBytes, &res.DiskBytes)
	parse("net-min", r.netMin, parseRate, &res.NetMinRate)
	parse("net-max", r.netMax, parseRate, &res.NetMaxRate)
	sel := svcmgr.Selection{Count: r.nodes, Nodes: r.nodeNames, Sites: r.sites, NodeGroup: r.nodeGroup, SpreadSites: r.spread, Where: map[string]string{}}
	parse("min-free-memory", r.minMemory, parseBytes, &sel.MinFree.MemoryBytes)
	parse("min-free-cpu", r.minCPU, parseMilliCPU, &sel.MinFree.CPUReserve)
	if err != nil {
		return usageError{err}
	}
	for _, w := range r.where {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return usageError{fmt.Errorf("--where %q: want tag=value", w)}
		}
		sel.Where[k] = v
	}
	if sel.Count == 0 && len(sel.Nodes) == 0 {
		return usageError{errors.New("say which nodes: --nodes N (with filters), or --node NAME")}
	}
	if sel.Count < 0 {
		return usageError{fmt.Errorf("--nodes %d: want a positive count", sel.Count)}
	}
	if r.lease != "" {
		if r.term, err = parseDays(r.lease); err != nil {
			return usageError{fmt.Errorf("--lease %q: %w", r.lease, err)}
		}
	}
	r.resources, r.selection = res, sel
	return nil
}

func parseMilliCPU(s string) (int64, error) {
	v, err := sliver.ParseCPU(s)
	return int64(v), err
}

func parseBytes(s string) (int64, error) { return sliver.ParseBytes(s) }

// parseRate reads a rate in bit/s with an optional k, M or G (powers of
// 1000): "10M" is 10,000,000.
func parseRate(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, errors.New("want a rate in bit/s such as 10M or 1G")
	}
	return int64(v * float64(mult)), nil
}

// progress prints one line per node event unless quiet.
func (g *globals) progress(quiet bool, total int) func(svcmgr.Event) {
	if quiet {
		return nil
	}
	var mu sync.Mutex
	done := 0
	start := time.Now()
	return func(e svcmgr.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.What {
		case "ticket":
			return
		case "failed":
			fmt.Fprintf(g.stderr, "  %-28s FAILED: %v\n", e.Node, e.Err)
		default:
			done++
			fmt.Fprintf(g.stderr, "  %-28s %-8s [%d/%d, %.1fs]\n", e.Node, e.What, done, total, time.Since(start).Seconds())
		}
	}
}

// finish turns a slice operation's result into the command's outcome.
func (g *globals) finish(what string, res svcmgr.Result, err error) error {
	if err != nil && len(res.OK)+len(res.Failed) == 0 {
		return err
	}
	fmt.Fprintf(g.stdout, "slice %s: %s on %d of %d nodes\n", res.Slice, what, len(res.OK), len(res.OK)+len(res.Failed))
	if err == nil {
		err = res.Err()
	}
	if errors.Is(err, svcmgr.ErrPartial) {
		hosts := make([]string, 0, len(res.Failed))
		for h := range res.Failed {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		for _, h := range hosts {
			fmt.Fprintf(g.stderr, "%s: %v\n", h, res.Failed[h])
		}
		fmt.Fprintln(g.stderr, "plab: "+err.Error())
		return exitStatus{exitPartial}
	}
	return err
}

func newSliceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "slice",
		Short: "Slices: their slivers (create, status, sync, renew, delete) and their records at PLC (list, show, members, attr, …)",
		Long: `A slice is a set of slivers on many nodes. plab keeps each slice's tickets
and leases in your plab directory, so any operation can be resumed:
plab slice sync finishes what a failure left.

Exit status: 0 when every node succeeded, 1 on an error, 2 on a usage
error, 3 when some nodes failed (the others are done).`,
	}
	c.AddCommand(newSliceCreateCmd(g), newSliceStatusCmd(g), newSliceRenewCmd(g), newSliceSyncCmd(g), newSliceDeleteCmd(g))
	return c
}

func newSliceCreateCmd(g *globals) *cobra.Command {
	var r sliceFlags
	c := &cobra.Command{
		Use:   "create NAME --nodes N [filters] [resources]",
		Short: "Get a slice onto nodes: pick them, get tickets, redeem them in parallel",
		Example: `  plab slice create princeton_codeen --nodes 20 --spread-sites --memory 512M
  plab slice create ucb_exp --nodes 5 --where arch=x86_64 --cpu-reserve 0.5 --port tcp/8080
  plab slice create ucb_exp --node n1.ucb.edu --node n2.mit.edu`,
		Args: exactArgs(1, "the slice's name"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := r.parse(); err != nil {
				return err
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			total := r.selection.Count
			if total == 0 {
				total = len(r.selection.Nodes)
			}
			res, err := s.Create(c.Context(), args[0], svcmgr.CreateOptions{
				Options: svcmgr.Options{Parallel: r.parallel, Progress: g.progress(r.quiet, total)},
				Select:  r.selection, Resources: r.resources, Lease: r.term, Description: r.description})
			return g.finish("up", res, err)
		},
	}
	r.add(c)
	return c
}

// sliceOpCmd is a command that runs op on every node of a slice, with
// progress lines and the slice commands' exit status; what names the
// outcome ("up", "deleted").
func sliceOpCmd(g *globals, use, short, what string, op func(s *svcmgr.Session, ctx context.Context, name string, o svcmgr.Options) (svcmgr.Result, error)) *cobra.Command {
	var quiet bool
	var parallel int
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "the slice's name"),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := op(s, c.Context(), args[0], svcmgr.Options{Parallel: parallel, Progress: g.progress(quiet, 0)})
			return g.finish(what, res, err)
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	c.Flags().IntVar(&parallel, "parallel", 64, "nodes worked on at once")
	return c
}

func newSliceSyncCmd(g *globals) *cobra.Command {
	return sliceOpCmd(g, "sync NAME", "Finish a slice: retry every node without a running sliver", "up", (*svcmgr.Session).Sync)
}

func newSliceDeleteCmd(g *globals) *cobra.Command {
	return sliceOpCmd(g, "delete NAME", "Destroy a slice's slivers on every node", "deleted", (*svcmgr.Session).Delete)
}

func newSliceStatusCmd(g *globals) *cobra.Command {
	var out outputFlag = "table"
	c := &cobra.Command{
		Use:   "status NAME",
		Short: "Each node's sliver of a slice: state and lease expiry",
		Args:  exactArgs(1, "the slice's name"),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Status(c.Context(), args[0], svcmgr.Options{})
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(g.stdout, st)
			}
			var rows [][]any
			up := 0
			for _, n := range st.Nodes {
				exp := "-"
				if !n.Expires.IsZero() {
					exp = n.Expires.UTC().Format(time.RFC3339)
				}
				if n.State == "running" {
					up++
				}
				rows = append(rows, []any{n.Node, n.State, exp, n.Error})
			}
			if err := table(g.stdout, []any{"NODE", "STATE", "LEASE EXPIRES", "ERROR"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%d of %d slivers running", up, len(st.Nodes))
			if !st.Expires.IsZero() {
				fmt.Fprintf(g.stdout, "; slice expires %s", st.Expires.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(g.stdout)
			if !st.Expires.IsZero() && time.Until(st.Expires) < 3*24*time.Hour {
				fmt.Fprintf(g.stderr, "warning: slice %s expires in %s; renew it: plab slice renew %s --for 14d\n", st.Slice, time.Until(st.Expires).Round(time.Minute), st.Slice)
			}
			if up < len(st.Nodes) {
				return exitStatus{exitPartial}
			}
			return nil
		},
	}
	c.Flags().VarP(&out, "output", "o", "table or json")
	return c
}

func newSliceRenewCmd(g *globals) *cobra.Command {
	var forD string
	var quiet bool
	c := &cobra.Command{
		Use:     "renew NAME [--for DURATION]",
		Short:   "Extend a slice at PLC and every sliver's lease",
		Example: `  plab slice renew ucb_exp --for 14d`,
		Args:    exactArgs(1, "the slice's name"),
		RunE: func(c *cobra.Command, args []string) error {
			d, err := parseDays(forD)
			if err != nil {
				return usageError{fmt.Errorf("--for %q: %w", forD, err)}
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := s.Renew(c.Context(), args[0], time.Now().Add(d), svcmgr.Options{Progress: g.progress(quiet, 0)})
			if err == nil || errors.Is(res.Err(), svcmgr.ErrPartial) {
				exp, _ := s.LeaseExpiry(args[0])
				for _, h := range res.OK {
					fmt.Fprintf(g.stdout, "%s: lease until %s\n", h, exp[h].UTC().Format(time.RFC3339))
				}
			}
			return g.finish("renewed", res, err)
		},
	}
	c.Flags().StringVar(&forD, "for", "14d", "how long from now (e.g. 14d, 36h)")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	return c
}

// parseDays reads a duration that may be in days ("14d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err != nil || n <= 0 {
			return 0, errors.New("want a positive duration such as 14d or 36h")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, errors.New("want a positive duration such as 14d or 36h")
	}
	return v, nil
}

func newExecCmd(g *globals) *cobra.Command {
	var nodes []string
	var parallel int
	var out outputFlag = "table"
	c := &cobra.Command{
		Use:   "exec SLICE [--node NODE…] -- COMMAND [ARG…]",
		Short: "Run a command in every sliver of a slice, in parallel",
		Long: `Run a command in every sliver of a slice through OpenSSH, in parallel.
Each output line is prefixed with its node; a summary of exit codes
follows. The exit status is 0 when the command succeeded everywhere, 3
when it failed somewhere.`,
		Example: `  plab exec ucb_exp -- hostname
  plab exec ucb_exp --node n1.ucb.edu -- sh -c 'uptime; df -h /'`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 2 || c.ArgsLenAtDash() != 1 {
				return usageError{fmt.Errorf("plab exec needs a slice, then -- and a command\nTry: plab exec --help")}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := s.Exec(c.Context(), args[0], args[1:], svcmgr.ExecOptions{Options: svcmgr.Options{Parallel: parallel}, Nodes: nodes, Stdout: g.stdout, Stderr: g.stderr})
			if err != nil {
				return err
			}
			if out == "json" {
				if err := writeJSON(g.stdout, res); err != nil {
					return err
				}
			}
			return g.summarize(res)
		},
	}
	c.Flags().StringSliceVar(&nodes, "node", nil, "only this node (repeatable)")
	c.Flags().IntVar(&parallel, "parallel", 64, "nodes at once")
	c.Flags().VarP(&out, "output", "o", "table or json (json: results after the output)")
	return c
}

// summarize prints how many nodes ended with which exit code, naming the
// failed ones; the command fails with exitPartial unless all succeeded.
func (g *globals) summarize(res []svcmgr.ExecResult) error {
	codes := map[int][]string{}
	for _, r := range res {
		codes[r.Code] = append(codes[r.Code], r.Node)
	}
	keys := make([]int, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("exit %d: %d", k, len(codes[k])))
	}
	fmt.Fprintf(g.stderr, "== %d nodes: %s\n", len(res), strings.Join(parts, ", "))
	for _, k := range keys {
		if k != 0 {
			fmt.Fprintf(g.stderr, "   exit %d on %s\n", k, strings.Join(codes[k], " "))
		}
	}
	if len(codes[0]) != len(res) {
		return exitStatus{exitPartial}
	}
	return nil
}

func newCpCmd(g *globals) *cobra.Command {
	var nodes []string
	var recursive bool
	c := &cobra.Command{
		Use:   "cp SLICE [--node NODE…] [-r] (LOCAL… :REMOTE | :REMOTE LOCALDIR)",
		Short: "Copy files to or from every sliver of a slice, in parallel (scp)",
		Long: `Copy local files to a path in every sliver of a slice, or a path from
every sliver into LOCALDIR/NODE/. The remote side is written with a leading
colon. The exit status is 0 when every copy worked, 3 otherwise.`,
		Example: `  plab cp ucb_exp ./experiment.tar :/root/
  plab cp ucb_exp -r :/root/results ./results     # ./results/NODE/results`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 3 {
				return usageError{fmt.Errorf("plab cp needs a slice, then LOCAL… :REMOTE or :REMOTE LOCALDIR\nTry: plab cp --help")}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			slice, paths := args[0], args[1:]
			last := paths[len(paths)-1]
			o := svcmgr.CopyOptions{ExecOptions: svcmgr.ExecOptions{Nodes: nodes, Stdout: g.stdout, Stderr: g.stderr}, Recursive: recursive}
			var run func(*svcmgr.Session) ([]svcmgr.ExecResult, error)
			switch {
			case strings.HasPrefix(last, ":") && !slices.ContainsFunc(paths[:len(paths)-1], func(p string) bool { return strings.HasPrefix(p, ":") }):
				run = func(s *svcmgr.Session) ([]svcmgr.ExecResult, error) {
					return s.CopyTo(c.Context(), slice, paths[:len(paths)-1], last[1:], o)
				}
			case len(paths) == 2 && strings.HasPrefix(paths[0], ":") && !strings.HasPrefix(last, ":"):
				run = func(s *svcmgr.Session) ([]svcmgr.ExecResult, error) {
					return s.CopyFrom(c.Context(), slice, paths[0][1:], last, o)
				}
			default:
				return usageError{fmt.Errorf("plab cp copies LOCAL… to :REMOTE, or one :REMOTE to a LOCALDIR\nTry: plab cp --help")}
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := run(s)
			if err != nil {
				return err
			}
			return g.summarize(res)
		},
	}
	c.Flags().StringSliceVar(&nodes, "node", nil, "only this node (repeatable)")
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy directories")
	return c
}

func newSSHCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ssh SLICE@NODE [COMMAND…]",
		Short: "Log into a sliver with OpenSSH, checking the host key PLC publishes",
		Example: `  plab ssh ucb_exp@n1.ucb.edu
  plab ssh ucb_exp@n1.ucb.edu uptime`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 1 || !strings.Contains(args[0], "@") {
				return usageError{fmt.Errorf("plab ssh needs SLICE@NODE\nTry: plab ssh --help")}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			slice, node, _ := strings.Cut(args[0], "@")
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.Close()
			sshArgs, err := s.SSHArgs(c.Context(), slice, node)
			if err != nil {
				return err
			}
			return runSSH(c.Context(), g, append(sshArgs, args[1:]...))
		},
	}
	c.Flags().SetInterspersed(false) // the command's own flags are not plab's
	return c
}

// runSSH runs OpenSSH on the terminal and passes its exit status on.
func runSSH(ctx context.Context, g *globals, args []string) error {
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = g.stdin, g.stdout, g.stderr
	if f, ok := g.stdin.(*os.File); ok {
		cmd.Stdin = f
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			return exitStatus{ws.ExitStatus()}
		}
		return exitStatus{exitError}
	}
	return err
}
