package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/vnet"
)

func TestAdmission(t *testing.T) {
	host, _ := vnet.ParsePorts([]string{"tcp/22"})
	a := newAdmission(capacity{CPU: 2000, Memory: 1 << 30, Bandwidth: 100e6, MaxSlivers: 3, MaxPerSite: 2, HostPorts: host})
	ports := func(s ...string) []vnet.PortRange { p, _ := vnet.ParsePorts(s); return p }
	steps := []struct {
		name  string
		sliv  string
		c     claim
		want  error
		admit bool
	}{
		{"reserve half", "ucb_a", claim{Slice: "ucb_a", Res: ticket.Resources{CPUReserve: 1000, MemoryBytes: 512 << 20, NetMinRate: 60e6}, Ports: ports("tcp/80")}, nil, true},
		{"cpu over", "ucb_b", claim{Slice: "ucb_b", Res: ticket.Resources{CPUReserve: 1001}}, errdefs.ErrNoCapacity, false},
		{"cpu exactly the rest", "ucb_b", claim{Slice: "ucb_b", Res: ticket.Resources{CPUReserve: 1000}}, nil, false},
		{"memory over", "ucb_b", claim{Slice: "ucb_b", Res: ticket.Resources{MemoryBytes: 512<<20 + 1}}, errdefs.ErrNoCapacity, false},
		{"bandwidth over", "ucb_b", claim{Slice: "ucb_b", Res: ticket.Resources{NetMinRate: 41e6}}, errdefs.ErrNoCapacity, false},
		{"port overlap", "ucb_b", claim{Slice: "ucb_b", Ports: ports("tcp/70-80")}, errdefs.ErrConflict, false},
		{"udp same number", "ucb_b", claim{Slice: "ucb_b", Ports: ports("udp/80")}, nil, true},
		{"host port", "mit_c", claim{Slice: "mit_c", Ports: ports("tcp/22")}, errdefs.ErrConflict, false},
		{"site limit", "ucb_c", claim{Slice: "ucb_c"}, errdefs.ErrNoCapacity, false},
		{"other site", "mit_c", claim{Slice: "mit_c"}, nil, true},
		{"node full", "mit_d", claim{Slice: "mit_d"}, errdefs.ErrNoCapacity, false},
		{"update in place is no new sliver", "ucb_a", claim{Slice: "ucb_a", Res: ticket.Resources{CPUReserve: 2000}}, nil, false},
	}
	for _, s := range steps {
		var err error
		if s.admit {
			err = a.admit(s.sliv, s.c)
		} else {
			err = a.check(s.sliv, s.c)
		}
		if (s.want == nil) != (err == nil) || (s.want != nil && !errors.Is(err, s.want)) {
			t.Errorf("%s: %v, want %v", s.name, err, s.want)
		}
	}
	if got := a.free(); got.CPUReserve != 1000 || got.MemoryBytes != 512<<20 || got.NetMinRate != 40e6 {
		t.Errorf("free = %+v", got)
	}
	a.release("ucb_a")
	if got := a.free(); got.CPUReserve != 2000 {
		t.Errorf("free after release = %+v", got)
	}
}

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		err  bool
	}{
		{[]string{"tcp/80", "udp/9000-9010"}, "[tcp/80 udp/9000-9010]", false},
		{[]string{"tcp/80", "udp/80"}, "[tcp/80 udp/80]", false},
		{[]string{"tcp/0"}, "", true},
		{[]string{"tcp/65536"}, "", true},
		{[]string{"tcp/90-80"}, "", true},
		{[]string{"icmp/1"}, "", true},
		{[]string{"80"}, "", true},
		{[]string{"tcp/1-2000"}, "", true},
		{[]string{"tcp/80", "tcp/79-81"}, "", true},
		{[]string{"tcp/+80"}, "", true},
	} {
		got, err := vnet.ParsePorts(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("vnet.ParsePorts(%q) = %v, %v; want error %v", tc.in, got, err, tc.err)
			continue
		}
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "port") {
				t.Errorf("vnet.ParsePorts(%q) error %v: want an invalid-input error naming the port", tc.in, err)
			}
			continue
		}
		if s := "[" + join(got) + "]"; s != tc.want {
			t.Errorf("vnet.ParsePorts(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

func join(ps []vnet.PortRange) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

func TestWithAttributes(t *testing.T) {
	got, err := withAttributes(ticket.Resources{MemoryBytes: 1 << 20}, map[string]string{
		AttrMemory: "1G", AttrCPUReserve: "500m", AttrCPULimit: "1.5", AttrCPUShares: "3", AttrDisk: "2G", AttrPids: "100",
		AttrNetMinRate: "10M", AttrNetMaxRate: "1.5G", AttrPorts: "tcp/80, udp/9000-9010", "vini_topology": "ignored",
	})
	want := ticket.Resources{MemoryBytes: 1 << 20, CPUReserve: 500, CPULimit: 1500, CPUShares: 3, DiskBytes: 2 << 30, Pids: 100,
		NetMinRate: 10e6, NetMaxRate: 1.5e9, Ports: []string{"tcp/80", "udp/9000-9010"}}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("withAttributes = %+v, %v; diff (-got +want):\n%s", got, err, cmp.Diff(got, want))
	}
	for _, bad := range []map[string]string{{AttrMemory: "lots"}, {AttrCPUShares: "x"}, {AttrNetMinRate: "-1"}, {AttrPids: "1e3"}, {AttrCPUReserve: "NaN"}} {
		if _, err := withAttributes(ticket.Resources{}, bad); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "slice attribute") {
			t.Errorf("withAttributes(%v) = %v; want an invalid-input error naming the attribute", bad, err)
		}
	}
}

func TestConfig(t *testing.T) {
	good := Config{Hostname: "n1.test", PLC: "https://plc.test:8443", PLCName: "plc.test"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no hostname", func(c *Config) { c.Hostname = "" }, "hostname"},
		{"http plc", func(c *Config) { c.PLC = "http://plc.test" }, "https://"},
		{"bad listen", func(c *Config) { c.Listen = "8140" }, "listen"},
		{"negative cap", func(c *Config) { c.BandwidthCap = -1 }, "bandwidth_cap"},
		{"short report", func(c *Config) { c.ReportInterval = Duration(1) }, "report_interval"},
		{"bad port", func(c *Config) { c.ReservedPorts = []string{"ssh"} }, "reserved_ports"},
	} {
		c := good
		tc.edit(&c)
		if err := c.Validate(); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v; want an invalid-input error naming %s", tc.name, err, tc.want)
		}
	}
	dir := t.TempDir()
	if _, err := LoadConfig(dir); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "plab node enroll") {
		t.Errorf("LoadConfig of an empty dir = %v; want not found, with what to do", err)
	}
	good.MaxLease = Duration(3600e9)
	if err := SaveConfig(dir, good); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadConfig(dir); err != nil || !cmp.Equal(got, good) {
		t.Errorf("LoadConfig after SaveConfig = %+v, %v; want %+v", got, err, good)
	}
	os.WriteFile(filepath.Join(dir, configFile), []byte(`{"hostname": "n1", "colour": "red"}`), 0o644)
	if _, err := LoadConfig(dir); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "colour") {
		t.Errorf("LoadConfig with an unknown field = %v; want it named", err)
	}
}
