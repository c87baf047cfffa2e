package main

import (
	"fmt"
	"time"

	"github.com/plab/plab/image"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
	"github.com/spf13/cobra"
)

func newImageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Manage the reference root filesystems slivers are made from",
		Long: `Images are stored once per node and shared read-only by every sliver made
from them. The default image, busybox, is built from the host's static
busybox on first use. To import a Debian image:

  debootstrap --variant=minbase bookworm /tmp/debian http://deb.debian.org/debian
  plab image import debian /tmp/debian`,
	}
	c.AddCommand(newImageImportCmd(g), newImageListCmd(g), newImageRmCmd(g))
	return c
}

func openImages(g *globals) (*image.Store, error) {
	return image.Open(g.stateDir+"/images", g.logger())
}

func newImageImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import NAME ROOTFS",
		Short: "Import a root filesystem from a directory or a tar file (plain or gzip)",
		Example: `  plab image import debian /srv/rootfs/bookworm
  plab image import alpine alpine-minirootfs.tar.gz`,
		Args: exactArgs(2, "an image name and a directory or tar file"),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := openImages(g)
			if err != nil {
				return err
			}
			t0 := time.Now()
			im, err := s.Import(c.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "image %s imported: %d files, %s, in %s\n", im.Name, im.Files, sliver.FormatBytes(im.Bytes), time.Since(t0).Round(time.Millisecond))
			return nil
		},
	}
}

func newImageListCmd(g *globals) *cobra.Command {
	out := outputFlag("table")
	c := &cobra.Command{
		Use:   "list",
		Short: "List the images of this node",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := openImages(g)
			if err != nil {
				return err
			}
			ims, err := s.List()
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(g.stdout, ims)
			}
			var rows [][]any
			for _, im := range ims {
				rows = append(rows, []any{im.Name, im.Files, sliver.FormatBytes(im.Bytes), im.Created.Local().Format(time.DateTime), im.Source})
			}
			return table(g.stdout, []any{"NAME", "FILES", "SIZE", "CREATED", "SOURCE"}, rows)
		},
	}
	c.Flags().VarP(&out, "output", "o", "output format: table or json")
	return c
}

func newImageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove an image no sliver uses",
		Args:  exactArgs(1, "an image name"),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withBackend(c.Context(), func(b *oci.Backend) error {
				return b.RemoveImage(c.Context(), args[0])
			})
		},
	}
}
