package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/node"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Nodes: run one (enroll, serve, cleanup, flows) and their records at PLC (list, show, add, update, delete, token)",
	}
	c.AddCommand(newNodeEnrollCmd(g), newNodeServeCmd(g))
	c.AddCommand(newNodeFlowsCmd(g))
	c.AddCommand(&cobra.Command{
		Use:   "cleanup",
		Short: "Remove every process, mount, cgroup and device plab made on this machine",
		Long: `Kill every sliver and remove the kernel objects plab made: runtime
containers, sliver processes, cgroups, root filesystem mounts and the layer
pool's mount and loop device, and the slivers' networking (veths, routes,
the nftables table, the uplink's qdisc). Slivers' files and records stay, and so do
the node's leases: the next plab node serve starts every leased sliver
again.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := oci.Cleanup(c.Context(), g.backendConfig()); err != nil {
				return err
			}
			if err := node.CleanupNetwork(g.stateDir); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "node cleaned up")
			return nil
		},
	})
	return c
}

func newNodeEnrollCmd(g *globals) *cobra.Command {
	var (
		cfg                    node.Config
		token, pin             string
		maxLease, grace        time.Duration
		reserveCPU, reserveMem string
	)
	c := &cobra.Command{
		Use:   "enroll --plc URL --token TOKEN --ca-fingerprint SHA256:…",
		Short: "Enroll this machine with PLC as a node",
		Long: `Make the node's key, get it certified by PLC with a one-time token, and
write the node's configuration to the state directory. An operator makes
the token at PLC (POST /v1/nodes/HOST/token); the CA fingerprint is the one
"plab plc init" printed, and enrollment refuses any other CA.`,
		Example: `  plab node enroll --plc https://plc.example.org:8443 --hostname node1.example.org \
      --token 7Qx… --ca-fingerprint SHA256:Vb9… --bandwidth-cap 100000000`,
		Args: exactArgs(0, "flags only"),
		RunE: func(c *cobra.Command, args []string) error {
			if cfg.Hostname == "" {
				h, err := os.Hostname()
				if err != nil {
					return err
				}
				cfg.Hostname = h
			}
			for _, f := range []struct{ v, flag string }{{cfg.PLC, "--plc"}, {token, "--token"}, {pin, "--ca-fingerprint"}} {
				if f.v == "" {
					return usageError{fmt.Errorf("plab node enroll needs %s\nTry: plab node enroll --help", f.flag)}
				}
			}
			var err error
			if reserveCPU != "" {
				if cfg.HostReserve.CPU, err = sliver.ParseCPU(reserveCPU); err != nil {
					return usageError{fmt.Errorf("--reserve-cpu: %w", err)}
				}
			}
			if reserveMem != "" {
				if cfg.HostReserve.Memory, err = sliver.ParseBytes(reserveMem); err != nil {
					return usageError{fmt.Errorf("--reserve-memory: %w", err)}
				}
			}
			cfg.MaxLease, cfg.Grace = node.Duration(maxLease), node.Duration(grace)
			if err := node.Enroll(c.Context(), node.EnrollOptions{Dir: g.stateDir, Config: cfg, Token: token, CAFingerprint: cred.Fingerprint(pin)}); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "node %s enrolled with %s; start it with: plab node serve --state-dir %s\n", cfg.Hostname, cfg.PLC, g.stateDir)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.PLC, "plc", "", "PLC's URL (https://…)")
	f.StringVar(&token, "token", "", "one-time enrollment token from PLC")
	f.StringVar(&pin, "ca-fingerprint", "", "fingerprint of PLC's CA key, as plab plc init printed it")
	f.StringVar(&cfg.Hostname, "hostname", "", "the node's name at PLC (default: this machine's hostname)")
	f.StringVar(&cfg.Listen, "listen", node.DefaultListen, "address of the node API")
	f.StringVar(&cfg.Uplink, "uplink", "", "interface slivers' traffic leaves by (none: slivers get loopback only)")
	f.StringVar(&cfg.Address, "address", "", "the node's address slivers' traffic leaves with (default: the uplink's)")
	f.StringSliceVar(&cfg.Resolvers, "resolver", nil, "DNS server written to slivers' resolv.conf (repeatable)")
	f.Int64Var(&cfg.BandwidthCap, "bandwidth-cap", 0, "uplink cap in bits per second; minimum rates are admitted up to it (0: none)")
	f.StringVar(&reserveCPU, "reserve-cpu", "", "CPU held back for the host (e.g. 0.5)")
	f.StringVar(&reserveMem, "reserve-memory", "", "memory held back for the host (e.g. 1G)")
	f.IntVar(&cfg.MaxSlivers, "max-slivers", node.DefaultMaxSlivers, "most slivers on the node")
	f.IntVar(&cfg.MaxSliversPerSite, "max-slivers-per-site", 0, "most slivers of one site's slices (0: no bound)")
	f.DurationVar(&maxLease, "max-lease", 0, "longest lease term; 0: until the slice expires")
	f.DurationVar(&grace, "grace", node.DefaultGrace, "how long after its lease ends a sliver is destroyed")
	return c
}

func newNodeServeCmd(g *globals) *cobra.Command {
	var listen, sshListen string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the node: node API, leases, sync with PLC, resource monitor",
		Long: `Run the enrolled node in the state directory until interrupted. Leased
slivers keep running when it stops; the next start finds them again,
rolls back redemptions it never answered, and destroys slivers without a
lease.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if _, err := node.LoadConfig(g.stateDir); err != nil {
				return err
			}
			return g.withBackend(ctx, func(b *oci.Backend) error {
				// The first redemption should not wait for the default image.
				if _, err := b.Images().EnsureDefault(ctx); err != nil {
					return err
				}
				n, err := node.Start(ctx, g.stateDir, node.StartOptions{Backend: b, Version: version(), Log: g.logger()})
				if err != nil {
					return err
				}
				defer n.Close()
				addr := listen
				if addr == "" {
					addr = n.M.Listen()
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return fmt.Errorf("node API: %w; choose another --listen", err)
				}
				fmt.Fprintf(g.stdout, "node %s serving on %s\n", n.M.Hostname(), ln.Addr())
				if n.SSH == nil {
					return n.Serve(ctx, ln)
				}
				if sshListen == "" {
					sshListen = n.M.SSHListen()
				}
				sln, err := net.Listen("tcp", sshListen)
				if err != nil {
					ln.Close()
					return fmt.Errorf("ssh gateway: %w; if the host's own sshd holds the port, move it (PlanetLab used 806) or choose another --ssh-listen (ssh_listen in config.json, or off)", err)
				}
				fmt.Fprintf(g.stdout, "ssh gateway on %s, host key %s\n", sln.Addr(), n.SSHHostKey)
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				sshErr := make(chan error, 1)
				go func() { sshErr <- n.ServeSSH(ctx, sln); cancel() }()
				err = n.Serve(ctx, ln)
				cancel()
				if serr := <-sshErr; err == nil {
					err = serr
				}
				return err
			})
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "address of the node API (default: the configuration's)")
	c.Flags().StringVar(&sshListen, "ssh-listen", "", "address of the SSH gateway (default: the configuration's, :22)")
	return c
}
