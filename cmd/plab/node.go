package main

import (
	"fmt"

	"github.com/plab/plab/sliver/oci"
	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Run and maintain a node",
	}
	c.AddCommand(&cobra.Command{
		Use:   "cleanup",
		Short: "Remove every process, mount, cgroup and device plab made on this machine",
		Long: `Kill every sliver and remove the kernel objects plab made: runtime
containers, sliver processes, cgroups, root filesystem mounts and the layer
pool's mount and loop device. Slivers' files and records stay; the next
plab command finds the slivers stopped.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := oci.Cleanup(c.Context(), g.backendConfig()); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "node cleaned up")
			return nil
		},
	})
	return c
}
