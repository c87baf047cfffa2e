package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/vnet"
)

// Config is a node's configuration, kept in config.json in its state
// directory: written by Enroll, read by Open, editable by the operator.
type Config struct {
	// Hostname is the node's name at PLC and in its certificate.
	Hostname string `json:"hostname"`
	// PLC is PLC's base URL (https://plc.example.org).
	PLC string `json:"plc"`
	// PLCName is PLC's name in its certificate and tickets.
	PLCName string `json:"plc_name"`
	// Listen is the node API's address (default :8140).
	Listen string `json:"listen,omitempty"`
	// Authorities are the names users reach the node API by, as they write
	// them in URLs; signed requests for other names are refused (default:
	// the hostname, with and without the listen port).
	Authorities []string `json:"authorities,omitempty"`
	// Uplink is the interface slivers' traffic leaves by; empty leaves
	// slivers without a network (loopback only).
	Uplink string `json:"uplink,omitempty"`
	// Address is the node's address slivers' traffic leaves with
	// (default: the uplink's first IPv4 address).
	Address string `json:"address,omitempty"`
	// Resolvers are the DNS servers written to each sliver's
	// /etc/resolv.conf.
	Resolvers []string `json:"resolvers,omitempty"`
	// EchoRate and OptionsRate bound, per sliver and second, the ICMP echo
	// requests and packets with IP options a sliver sends (defaults 20
	// and 10).
	EchoRate    int `json:"echo_rate,omitempty"`
	OptionsRate int `json:"options_rate,omitempty"`
	// FlowRetention is how long the flow log keeps a flow after it ended
	// (default 7 days).
	FlowRetention Duration `json:"flow_retention,omitempty"`
	// NetNS is the path of the network namespace the node's network lives
	// in, when not the process's own (the testbed in a box).
	NetNS string `json:"netns,omitempty"`
	// BandwidthCap is the node's uplink cap in bits per second; minimum
	// rates of slivers are admitted up to it (0: no minimum rates).
	BandwidthCap int64 `json:"bandwidth_cap,omitempty"`
	// HostReserve is held back for the host: CPU, memory and disk no
	// sliver is promised.
	HostReserve HostReserve `json:"host_reserve,omitzero"`
	// MaxSlivers bounds the slivers on the node (default 1000).
	MaxSlivers int `json:"max_slivers,omitempty"`
	// MaxSliversPerSite bounds the slivers of one site's slices on the node
	// (0: no bound beyond MaxSlivers).
	MaxSliversPerSite int `json:"max_slivers_per_site,omitempty"`
	// MaxLease bounds one lease's term; renewals extend by at most this
	// much. Zero: a lease runs until its ticket's end (the slice's expiry).
	MaxLease Duration `json:"max_lease,omitempty"`
	// Grace is how long after its lease ends a sliver is destroyed
	// (default 1m).
	Grace Duration `json:"grace,omitempty"`
	// ReportInterval is how often the resource monitor reports to PLC
	// (default 10s).
	ReportInterval Duration `json:"report_interval,omitempty"`
	// ReservedPorts are ports the host itself uses; no slice may reserve
	// them ("tcp/22").
	ReservedPorts []string `json:"reserved_ports,omitempty"`
	// SSHListen is the SSH gateway's address (default :22; "off" runs no
	// gateway). The host's own sshd must then listen elsewhere (PlanetLab
	// moved it to port 806).
	SSHListen string `json:"ssh_listen,omitempty"`
	// SSHMaxSessions is how many SSH sessions one slice may have open on
	// the node at once (default 64).
	SSHMaxSessions int `json:"ssh_max_sessions,omitempty"`
	// SSHIdleTimeout closes an SSH connection without traffic (default 1h).
	SSHIdleTimeout Duration `json:"ssh_idle_timeout,omitempty"`
}

// HostReserve is what the host keeps for itself.
type HostReserve struct {
	CPU    sliver.MilliCPU `json:"cpu,omitempty"`
	Memory int64           `json:"memory_bytes,omitempty"`
}

// Duration is a time.Duration written as "90s" in JSON.
type Duration time.Duration

func (d Duration) d() time.Duration { return time.Duration(d) }

// MarshalText writes d as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "1m30s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: use a positive Go duration such as 90s or 12h", b)
	}
	*d = Duration(v)
	return nil
}

// Defaults of Config.
const (
	DefaultListen         = ":8140"
	DefaultSSHListen      = ":22"
	DefaultMaxSlivers     = 1000
	DefaultGrace          = time.Minute
	DefaultReportInterval = 10 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.SSHListen == "" {
		c.SSHListen = DefaultSSHListen
	}
	if c.MaxSlivers == 0 {
		c.MaxSlivers = DefaultMaxSlivers
	}
	if c.Grace == 0 {
		c.Grace = Duration(DefaultGrace)
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = Duration(DefaultReportInterval)
	}
	if len(c.Authorities) == 0 {
		c.Authorities = []string{c.Hostname}
		if _, port, err := net.SplitHostPort(c.Listen); err == nil {
			c.Authorities = append(c.Authorities, net.JoinHostPort(c.Hostname, port))
		}
	}
	return c
}

// Validate checks c and says what to change.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("node config: "+format+": %w", append(a, errdefs.ErrInvalid)...)
	}
	u, err := url.Parse(c.PLC)
	switch {
	case c.Hostname == "":
		return bad("hostname is empty; enroll the node first (plab node enroll)")
	case err != nil || u.Scheme != "https" || u.Host == "":
		return bad("plc %q must be PLC's https:// URL", c.PLC)
	case c.PLCName == "":
		return bad("plc_name is empty; enroll the node again")
	case c.EchoRate < 0 || c.OptionsRate < 0:
		return bad("echo_rate and options_rate must not be negative")
	case c.BandwidthCap < 0 || (c.BandwidthCap > 0 && c.BandwidthCap < 1e6):
		return bad("bandwidth_cap %d bit/s: want 0 (no shaping) or at least 1000000 (1 Mbit/s)", c.BandwidthCap)
	case c.MaxSlivers < 0 || c.MaxSliversPerSite < 0:
		return bad("max_slivers and max_slivers_per_site must not be negative")
	case c.HostReserve.CPU < 0 || c.HostReserve.Memory < 0:
		return bad("host_reserve must not be negative")
	case c.ReportInterval != 0 && time.Duration(c.ReportInterval) < time.Second:
		return bad("report_interval %s is too short; use at least 1s", time.Duration(c.ReportInterval))
	}
	if _, _, err := net.SplitHostPort(c.Listen); c.Listen != "" && err != nil {
		return bad("listen %q: want host:port such as :8140", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.SSHListen); c.SSHListen != "" && c.SSHListen != "off" && err != nil {
		return bad("ssh_listen %q: want host:port such as :22, or off", c.SSHListen)
	}
	if c.SSHMaxSessions < 0 {
		return bad("ssh_max_sessions must not be negative")
	}
	if c.Address != "" {
		if a, err := netip.ParseAddr(c.Address); err != nil || !a.Is4() {
			return bad("address %q: want the node's IPv4 address", c.Address)
		}
	}
	for _, r := range c.Resolvers {
		if _, err := netip.ParseAddr(r); err != nil {
			return bad("resolver %q: want an IP address", r)
		}
	}
	if _, err := vnet.ParsePorts(c.ReservedPorts); err != nil {
		return fmt.Errorf("node config: reserved_ports: %w", err)
	}
	return nil
}

// hostPorts are the ports the host itself serves on: the node API, the SSH
// gateway and the configured reserved ports. No slice may reserve them.
func (c Config) hostPorts() []vnet.PortRange {
	ports, _ := vnet.ParsePorts(c.ReservedPorts)
	for _, addr := range []string{c.Listen, c.SSHListen} {
		if _, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 {
				ports = append(ports, vnet.PortRange{Proto: "tcp", Lo: uint16(n), High: uint16(n)})
			}
		}
	}
	return ports
}

// Files of a node's state directory.
const (
	configFile  = "config.json"
	keyFile     = "node.key"
	certFile    = "node.crt"
	caFile      = "plc-ca.pem"
	trustFile   = "tickets.trust"
	leaseDBFile = "leases.db"
)

// LoadConfig reads dir's config.json.
func LoadConfig(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%s has no node configuration; enroll the node first (plab node enroll --plc URL --token TOKEN): %w", dir, errdefs.ErrNotFound)
	} else if err != nil {
		return Config{}, fmt.Errorf("read node config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("node config %s: %v; fix the file or enroll again: %w", filepath.Join(dir, configFile), err, errdefs.ErrInvalid)
	}
	return c, c.Validate()
}

// SaveConfig writes c to dir's config.json, replacing it atomically.
func SaveConfig(dir string, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, configFile+".tmp")
	os.Remove(tmp)
	if err := cred.WriteNewFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, configFile))
}
