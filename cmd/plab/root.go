package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/plab/plab/sliver/oci"
	"github.com/plab/plab/svcmgr"
	"github.com/spf13/cobra"
)

// Exit codes of plab.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitPartial: a slice operation worked on some nodes only; plab
	// slice status shows which, plab slice sync retries.
	exitPartial = 3
)

// exitError carries a specific exit status out of a command.
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(e.code) }

// globals are the flags every command shares.
type globals struct {
	stateDir     string
	runDir       string
	runtime      string
	cgroupParent string
	uidBase      uint32
	logLevel     string
	configDir    string
	stdin        io.Reader
	stdout       io.Writer
	stderr       io.Writer
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
}

// backendConfig is the sliver backend's configuration from the flags.
func (g *globals) backendConfig() oci.Config {
	return oci.Config{
		StateDir: g.stateDir, RunDir: g.runDir, Runtime: g.runtime,
		CgroupParent: g.cgroupParent, UIDBase: g.uidBase, Log: g.logger(),
	}
}

// withBackend runs fn with the node's sliver backend, open for the
// command's duration.
func (g *globals) withBackend(ctx context.Context, fn func(*oci.Backend) error) error {
	b, err := oci.New(ctx, g.backendConfig())
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "plab",
		Short: "plab: a planetary-scale testbed of slices and slivers",
		Long: `plab turns Linux machines at many sites into one shared testbed.

Operators run "plab plc" on one server and "plab node" on every machine;
researchers get slices: isolated lightweight VMs (slivers) on many nodes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(g.stdin)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	uid, _ := strconv.ParseUint(envOr("PLAB_UID_BASE", "0"), 10, 32)
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", envOr("PLAB_STATE_DIR", oci.DefaultStateDir), "node state directory (env PLAB_STATE_DIR)")
	pf.StringVar(&g.runDir, "run-dir", envOr("PLAB_RUN_DIR", oci.DefaultRunDir), "node runtime directory (env PLAB_RUN_DIR)")
	pf.StringVar(&g.runtime, "runtime", envOr("PLAB_RUNTIME", oci.DefaultRuntime), "OCI runtime binary (env PLAB_RUNTIME)")
	pf.StringVar(&g.cgroupParent, "cgroup-parent", envOr("PLAB_CGROUP_PARENT", ""), "cgroup holding the slivers; default: the node's, or "+oci.DefaultCgroupParent+" (env PLAB_CGROUP_PARENT)")
	pf.Uint32Var(&g.uidBase, "uid-base", uint32(uid), "first host UID of sliver ID ranges; 0: the node's, or the default (env PLAB_UID_BASE)")
	pf.StringVar(&g.logLevel, "log-level", envOr("PLAB_LOG_LEVEL", "warn"), "debug, info, warn or error (env PLAB_LOG_LEVEL)")
	pf.StringVar(&g.configDir, "config", svcmgr.DefaultDir(), "your plab directory: configuration, slices' tickets and leases (env PLAB_CONFIG)")
	for _, n := range []string{"cgroup-parent", "uid-base"} {
		_ = pf.MarkHidden(n)
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nTry: %s --help", err, c.CommandPath())}
	})
	root.AddCommand(newSliverCmd(g), newImageCmd(g), newNodeCmd(g), newPLCCmd(g), newTicketCmd(g), newBenchCmd(g), newVersionCmd(g), newVSHHelperCmd(),
		newLoginCmd(g), newConfigCmd(g), newSliceCmd(g), newExecCmd(g), newCpCmd(g), newSSHCmd(g))
	addRegistryCmds(g, root)
	return root
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// exactArgs wants n arguments and says what to try otherwise.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s needs %s (got %d arguments)\nTry: %s --help", c.CommandPath(), what, len(args), c.CommandPath())}
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError{fmt.Errorf("%s needs %s\nTry: %s --help", c.CommandPath(), what, c.CommandPath())}
		}
		return nil
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var es exitStatus
	if errors.As(err, &es) {
		return es.code
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "plab") {
		msg = "plab: " + msg
	}
	fmt.Fprintln(stderr, msg)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitError
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print plab's version",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			fmt.Fprintln(g.stdout, "plab", version())
			return nil
		},
	}
}
