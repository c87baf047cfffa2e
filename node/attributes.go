package node

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// Slice attributes the node understands. PLC resolves them per node (node >
// node group > global) and sends them with each delegated slice; other
// attributes are for other services and left alone.
const (
	AttrCPUShares  = "cpu_shares"  // best-effort weight, 1-100
	AttrCPUReserve = "cpu_reserve" // guaranteed CPUs: "0.5" or "500m"
	AttrCPULimit   = "cpu_limit"   // CPU cap: "1.5"
	AttrMemory     = "memory"      // guaranteed memory: "512M", "1G"
	AttrDisk       = "disk"        // disk limit: "10G"
	AttrPids       = "pids"        // process limit
	AttrNetMinRate = "net_min_rate"
	AttrNetMaxRate = "net_max_rate"
	AttrPorts      = "ports"      // "tcp/80,udp/9000-9010"
	AttrImage      = "image"      // the sliver's image (default busybox)
	AttrInitscript = "initscript" // run inside the sliver on start and on change
)

// withAttributes fills the fields res leaves zero from attrs: what a ticket
// says wins over the slice's attributes.
func withAttributes(res ticket.Resources, attrs map[string]string) (ticket.Resources, error) {
	for name, v := range attrs {
		bad := func(err error) error { return fmt.Errorf("slice attribute %s=%q: %w", name, v, err) }
		switch name {
		case AttrCPUShares:
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return res, bad(fmt.Errorf("want a whole number 1 to %d: %w", sliver.MaxCPUShares, errdefs.ErrInvalid))
			}
			if res.CPUShares == 0 {
				res.CPUShares = n
			}
		case AttrCPUReserve, AttrCPULimit:
			m, err := sliver.ParseCPU(v)
			if err != nil {
				return res, bad(err)
			}
			if name == AttrCPUReserve && res.CPUReserve == 0 {
				res.CPUReserve = int64(m)
			} else if name == AttrCPULimit && res.CPULimit == 0 {
				res.CPULimit = int64(m)
			}
		case AttrMemory, AttrDisk:
			n, err := sliver.ParseBytes(v)
			if err != nil {
				return res, bad(err)
			}
			if name == AttrMemory && res.MemoryBytes == 0 {
				res.MemoryBytes = n
			} else if name == AttrDisk && res.DiskBytes == 0 {
				res.DiskBytes = n
			}
		case AttrPids:
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 0 {
				return res, bad(fmt.Errorf("want a whole number: %w", errdefs.ErrInvalid))
			}
			if res.Pids == 0 {
				res.Pids = n
			}
		case AttrNetMinRate, AttrNetMaxRate:
			n, err := parseRate(v)
			if err != nil {
				return res, bad(err)
			}
			if name == AttrNetMinRate && res.NetMinRate == 0 {
				res.NetMinRate = n
			} else if name == AttrNetMaxRate && res.NetMaxRate == 0 {
				res.NetMaxRate = n
			}
		case AttrPorts:
			if len(res.Ports) == 0 {
				for _, p := range strings.Split(v, ",") {
					if p = strings.TrimSpace(p); p != "" {
						res.Ports = append(res.Ports, p)
					}
				}
			}
		}
	}
	return res, nil
}

// parseRate reads a rate in bits per second: "10M", "1.5G", "800k", "1000".
// Units are powers of 1000, as for link speeds.
func parseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "bit")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "M"):
		mult, t = 1e6, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1e9, strings.TrimSuffix(t, "G")
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || v*mult > 1e13 {
		return 0, fmt.Errorf("rate %q: want bits per second such as 10M, 1.5G or 800k: %w", s, errdefs.ErrInvalid)
	}
	return int64(v * mult), nil
}

// sliverResources turns what a lease holds into the backend's limits. An
// explicit memory amount is both the sliver's limit and its guarantee.
func sliverResources(r ticket.Resources) sliver.Resources {
	return sliver.Resources{
		CPUShares: r.CPUShares, CPUReserve: sliver.MilliCPU(r.CPUReserve), CPULimit: sliver.MilliCPU(r.CPULimit),
		MemoryBytes: r.MemoryBytes, Pids: r.Pids, DiskBytes: r.DiskBytes,
	}.WithDefaults()
}

// apiResources is r on the wire.
func apiResources(r ticket.Resources) api.Resources {
	return api.Resources{CPUShares: r.CPUShares, CPUReserve: r.CPUReserve, CPULimit: r.CPULimit, MemoryBytes: r.MemoryBytes,
		Pids: r.Pids, DiskBytes: r.DiskBytes, NetMinRate: r.NetMinRate, NetMaxRate: r.NetMaxRate, Ports: r.Ports}
}
