package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newSliverCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "sliver",
		Short: "Manage the slivers of this node directly (root, operators)",
		Long: `Manage slivers on this machine without PLC: create, run commands in,
list and destroy them. Slivers are isolated lightweight VMs: each has its
own namespaces, a copy-on-write root over a shared image, and CPU, memory,
process and disk limits.`,
	}
	c.AddCommand(newSliverCreateCmd(g), newSliverLifecycleCmd(g, "start"), newSliverLifecycleCmd(g, "stop"),
		newSliverLifecycleCmd(g, "destroy"), newSliverExecCmd(g), newSliverListCmd(g),
		newSliverShowCmd(g), newSliverUpdateCmd(g))
	return c
}

// resourceFlags are the limit flags of create and update.
type resourceFlags struct {
	cpuShare   int
	cpuReserve string
	cpuLimit   string
	memory     string
	pids       int64
	disk       string
}

func (f *resourceFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.IntVar(&f.cpuShare, "cpu-share", 0, fmt.Sprintf("best-effort CPU weight, 1-%d (default %d)", sliver.MaxCPUShares, sliver.DefaultResources.CPUShares))
	fl.StringVar(&f.cpuReserve, "cpu-reserve", "", "guaranteed CPU, e.g. 0.5 or 500m (makes the sliver reserved)")
	fl.StringVar(&f.cpuLimit, "cpu-limit", "", "CPU cap, e.g. 1.5 (default none)")
	fl.StringVar(&f.memory, "memory", "", "memory limit, e.g. 512M (default "+sliver.FormatBytes(sliver.DefaultResources.MemoryBytes)+")")
	fl.Int64Var(&f.pids, "pids", 0, fmt.Sprintf("process limit (default %d)", sliver.DefaultResources.Pids))
	fl.StringVar(&f.disk, "disk", "", "disk limit, e.g. 2G (default "+sliver.FormatBytes(sliver.DefaultResources.DiskBytes)+")")
}

// resources applies the flags that were set onto r.
func (f *resourceFlags) resources(c *cobra.Command, r sliver.Resources) (sliver.Resources, error) {
	var err error
	set := func(name string) bool { return c.Flags().Changed(name) }
	if set("cpu-share") {
		r.CPUShares = f.cpuShare
		if f.cpuShare <= 0 {
			return r, usageError{fmt.Errorf("--cpu-share %d is out of range; use 1 to %d", f.cpuShare, sliver.MaxCPUShares)}
		}
	}
	if set("cpu-reserve") {
		if r.CPUReserve, err = sliver.ParseCPU(f.cpuReserve); err != nil {
			return r, usageError{fmt.Errorf("--cpu-reserve: %w", err)}
		}
		if !set("cpu-share") {
			r.CPUShares = 0
		}
	}
	if set("cpu-limit") {
		if r.CPULimit, err = sliver.ParseCPU(f.cpuLimit); err != nil {
			return r, usageError{fmt.Errorf("--cpu-limit: %w", err)}
		}
	}
	for _, s := range []struct {
		flag string
		val  string
		dst  *int64
	}{{"memory", f.memory, &r.MemoryBytes}, {"disk", f.disk, &r.DiskBytes}} {
		if set(s.flag) {
			if *s.dst, err = sliver.ParseBytes(s.val); err != nil {
				return r, usageError{fmt.Errorf("--%s: %w", s.flag, err)}
			}
		}
	}
	if set("pids") {
		r.Pids = f.pids
	}
	return r, nil
}

func newSliverCreateCmd(g *globals) *cobra.Command {
	var (
		img     string
		noStart bool
		rf      resourceFlags
	)
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create and start a sliver",
		Example: `  plab sliver create demo_web
  plab sliver create demo_db --memory 1G --disk 5G --cpu-share 4
  plab sliver create demo_rt --cpu-reserve 0.5 --image debian`,
		Args: exactArgs(1, "a sliver name"),
		RunE: func(c *cobra.Command, args []string) error {
			res, err := rf.resources(c, sliver.Resources{})
			if err != nil {
				return err
			}
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				t0 := time.Now()
				in, err := b.Create(c.Context(), sliver.Spec{Name: args[0], Image: img, Resources: res})
				if err != nil {
					return err
				}
				if !noStart {
					if err := b.Start(c.Context(), args[0]); err != nil {
						if derr := b.Destroy(c.Context(), args[0]); derr != nil {
							return fmt.Errorf("%w (and removing the sliver failed: %v)", err, derr)
						}
						return err
					}
				}
				fmt.Fprintf(g.stdout, "sliver %s created from image %s (host uids %d-%d) in %s\n",
					in.Name, in.Image, in.UIDBase, in.UIDBase+sliver.IDRangeSize-1, time.Since(t0).Round(time.Millisecond))
				return nil
			})
		},
	}
	c.Flags().StringVar(&img, "image", "", "image to create the sliver from (default busybox)")
	c.Flags().BoolVar(&noStart, "no-start", false, "create without starting")
	rf.add(c)
	return c
}

func newSliverLifecycleCmd(g *globals, op string) *cobra.Command {
	short := map[string]string{
		"start":   "Start stopped slivers",
		"stop":    "Stop slivers, keeping their files",
		"destroy": "Destroy slivers and everything in them",
	}[op]
	return &cobra.Command{
		Use:   op + " NAME...",
		Short: short,
		Args:  minArgs(1, "at least one sliver name"),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				var errs []error
				for _, name := range args {
					var err error
					switch op {
					case "start":
						err = b.Start(c.Context(), name)
					case "stop":
						err = b.Stop(c.Context(), name)
					case "destroy":
						err = b.Destroy(c.Context(), name)
					}
					if err != nil {
						errs = append(errs, err)
					}
				}
				return errors.Join(errs...)
			})
		},
	}
}

func newSliverExecCmd(g *globals) *cobra.Command {
	var (
		tty  bool
		user string
		dir  string
		env  []string
	)
	c := &cobra.Command{
		Use:   "exec NAME -- COMMAND [ARG...]",
		Short: "Run a command in a sliver; its exit status becomes plab's",
		Example: `  plab sliver exec demo_web -- hostname
  plab sliver exec -t demo_web -- sh
  plab sliver exec -u user demo_web -- id`,
		Args: minArgs(2, "a sliver name and a command"),
		RunE: func(c *cobra.Command, args []string) error {
			if args[1] == "--" {
				args = append(args[:1], args[2:]...)
			}
			if len(args) < 2 {
				return usageError{fmt.Errorf("no command after --\nTry: %s --help", c.CommandPath())}
			}
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				spec := sliver.ExecSpec{Args: args[1:], User: user, Env: env, Dir: dir, TTY: tty,
					Stdin: g.stdin, Stdout: g.stdout, Stderr: g.stderr}
				sigs := make(chan os.Signal, 4)
				fwd := make(chan syscall.Signal, 4)
				signal.Notify(sigs, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
				defer signal.Stop(sigs)
				spec.Signals = fwd
				resize := make(chan sliver.WinSize, 1)
				spec.Resize = resize
				if tty {
					in, ok := g.stdin.(*os.File)
					if !ok || !term.IsTerminal(int(in.Fd())) {
						return usageError{errors.New("-t needs a terminal on standard input; drop -t to run without one")}
					}
					old, err := term.MakeRaw(int(in.Fd()))
					if err != nil {
						return err
					}
					defer term.Restore(int(in.Fd()), old)
					if w, h, err := term.GetSize(int(in.Fd())); err == nil {
						spec.Size = sliver.WinSize{Cols: uint16(w), Rows: uint16(h)}
					}
				}
				go func() {
					for s := range sigs {
						if s == syscall.SIGWINCH {
							if in, ok := g.stdin.(*os.File); ok {
								if w, h, err := term.GetSize(int(in.Fd())); err == nil {
									select {
									case resize <- sliver.WinSize{Cols: uint16(w), Rows: uint16(h)}:
									default:
									}
								}
							}
							continue
						}
						fwd <- s.(syscall.Signal)
					}
				}()
				code, err := b.Exec(c.Context(), args[0], spec)
				if err != nil {
					if errors.Is(err, sliver.ErrCommandNotFound) {
						fmt.Fprintln(g.stderr, "plab: "+err.Error())
						return exitStatus{127}
					}
					return err
				}
				if code != 0 {
					return exitStatus{code}
				}
				return nil
			})
		},
	}
	c.Flags().SetInterspersed(false)
	c.Flags().BoolVarP(&tty, "tty", "t", false, "give the command a terminal")
	c.Flags().StringVarP(&user, "user", "u", "", "user (name or uid[:gid]) inside the sliver (default root)")
	c.Flags().StringVarP(&dir, "workdir", "w", "", "working directory inside the sliver (default the user's home)")
	c.Flags().StringArrayVarP(&env, "env", "e", nil, "set an environment variable KEY=value (repeatable)")
	return c
}

func newSliverListCmd(g *globals) *cobra.Command {
	out := outputFlag("table")
	c := &cobra.Command{
		Use:   "list",
		Short: "List the slivers of this node",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				infos, err := b.List(c.Context())
				if err != nil {
					return err
				}
				if out == "json" {
					return writeJSON(g.stdout, infos)
				}
				var rows [][]any
				for _, in := range infos {
					rows = append(rows, []any{in.Name, in.State, in.Image, cpuSummary(in.Resources), sliver.FormatBytes(in.Resources.MemoryBytes),
						in.Resources.Pids, sliver.FormatBytes(in.Resources.DiskBytes), in.UIDBase, in.Created.Local().Format(time.DateTime)})
				}
				return table(g.stdout, []any{"NAME", "STATE", "IMAGE", "CPU", "MEMORY", "PIDS", "DISK", "UID BASE", "CREATED"}, rows)
			})
		},
	}
	c.Flags().VarP(&out, "output", "o", "output format: table or json")
	return c
}

func newSliverShowCmd(g *globals) *cobra.Command {
	out := outputFlag("table")
	c := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a sliver's state, limits and usage",
		Args:  exactArgs(1, "a sliver name"),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				in, err := b.State(c.Context(), args[0])
				if err != nil {
					return err
				}
				_ = b.SyncDisk()
				st, err := b.Stats(c.Context(), args[0])
				if err != nil {
					return err
				}
				if out == "json" {
					return writeJSON(g.stdout, struct {
						sliver.Info
						Stats sliver.Stats `json:"stats"`
					}{in, st})
				}
				r := in.Resources
				return table(g.stdout, []any{"FIELD", "VALUE"}, [][]any{
					{"name", in.Name}, {"state", in.State}, {"image", in.Image}, {"pid", in.Pid},
					{"host uids", fmt.Sprintf("%d-%d", in.UIDBase, in.UIDBase+sliver.IDRangeSize-1)},
					{"cpu", cpuSummary(r)},
					{"cpu time", st.CPUTime.Round(time.Millisecond)},
					{"memory", sliver.FormatBytes(st.MemoryBytes) + " of " + sliver.FormatBytes(r.MemoryBytes)},
					{"oom kills", st.OOMKills},
					{"processes", fmt.Sprintf("%d of %d", st.Processes, r.Pids)},
					{"disk", sliver.FormatBytes(st.DiskBytes) + " of " + sliver.FormatBytes(r.DiskBytes)},
					{"created", in.Created.Local().Format(time.DateTime)},
				})
			})
		},
	}
	c.Flags().VarP(&out, "output", "o", "output format: table or json")
	return c
}

func newSliverUpdateCmd(g *globals) *cobra.Command {
	var rf resourceFlags
	c := &cobra.Command{
		Use:     "update NAME",
		Short:   "Change a sliver's limits, live",
		Example: `  plab sliver update demo_web --memory 1G --cpu-limit 0.5`,
		Args:    exactArgs(1, "a sliver name"),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				in, err := b.State(c.Context(), args[0])
				if err != nil {
					return err
				}
				res, err := rf.resources(c, in.Resources)
				if err != nil {
					return err
				}
				return b.Update(c.Context(), args[0], res)
			})
		},
	}
	rf.add(c)
	return c
}

// cpuSummary describes a sliver's CPU class and cap.
func cpuSummary(r sliver.Resources) string {
	cpu := fmt.Sprintf("share %d", r.CPUShares)
	if r.Reserved() {
		cpu = "reserve " + r.CPUReserve.String()
	}
	if r.CPULimit > 0 {
		cpu += ", limit " + r.CPULimit.String()
	}
	return cpu
}
