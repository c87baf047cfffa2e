package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/plab/plab/sliver/bench"
	"github.com/plab/plab/sliver/oci"
	"github.com/spf13/cobra"
)

func newBenchCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "Measure plab on this machine"}
	c.AddCommand(newBenchSliversCmd(g))
	return c
}

func newBenchSliversCmd(g *globals) *cobra.Command {
	var (
		o   bench.Options
		out = outputFlag("table")
	)
	c := &cobra.Command{
		Use:   "slivers",
		Short: "Fill a scratch node with idle slivers and report latency, memory and disk per sliver",
		Long: `Creates --count slivers one after another on a scratch node (its own state
directory under --run-dir, its own cgroup parent), timing each creation
until the sliver accepts exec; compares with the OCI runtime starting the
same image bare in the same run; samples exec latency; measures host memory
and disk per idle sliver; destroys everything, timing each destroy.`,
		Example: `  plab bench slivers --count 1000
  plab bench slivers --count 100 -o json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			scratch, err := os.MkdirTemp("", "plab-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			if err := os.Chmod(scratch, 0o711); err != nil {
				return err
			}
			cfg := g.backendConfig()
			cfg.StateDir = filepath.Join(scratch, "state")
			cfg.RunDir = filepath.Join(scratch, "run")
			cfg.CgroupParent = fmt.Sprintf("plab-bench-%d", os.Getpid())
			cfg.UIDBase = 0x60000000
			cfg.LayerImageSize = 64 << 30
			b, err := oci.New(c.Context(), cfg)
			if err != nil {
				return err
			}
			defer func() {
				b.Close()
				if err := oci.Cleanup(c.Context(), cfg); err != nil {
					fmt.Fprintln(g.stderr, "plab: bench cleanup:", err)
				}
			}()
			if out == "table" {
				o.Progress = g.stderr
			}
			rep, err := bench.Slivers(c.Context(), b, o)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(g.stdout, rep)
			}
			rep.Print(g.stdout)
			return nil
		},
	}
	c.Flags().IntVar(&o.Count, "count", 1000, "slivers to fill the node with")
	c.Flags().IntVar(&o.Window, "window", 50, "creations per latency sample")
	c.Flags().IntVar(&o.Baseline, "baseline", 50, "bare runtime starts to time")
	c.Flags().DurationVar(&o.CPUTime, "cpu-time", 5*time.Second, "length of each CPU-sharing experiment (0 skips them)")
	c.Flags().VarP(&out, "output", "o", "output format: table or json")
	return c
}
