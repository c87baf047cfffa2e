package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/plab/plab/vsh"
)

// newVSHHelperCmd is what the SSH gateway runs inside a sliver for scp and
// sftp: hidden, as the sliver's user, with the session on stdin and stdout.
func newVSHHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "vsh-helper MODE [ARG...]",
		Short:              "Serve scp or sftp inside a sliver (run by the SSH gateway)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(c *cobra.Command, args []string) {
			os.Exit(vsh.HelperMain(args, os.Stdin, os.Stdout, os.Stderr))
		},
	}
}
