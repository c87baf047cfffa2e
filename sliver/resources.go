package sliver

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/plab/plab/errdefs"
)

// Resources are a sliver's limits and guarantees.
//
// CPU comes in two classes, fixed when the sliver is created:
//   - best effort (CPUReserve == 0): the sliver competes for the CPU time that
//     reservations leave, in proportion to CPUShares (the paper's fair share:
//     a sliver with 2 shares gets twice the CPU of one with 1 when both are
//     busy);
//   - reserved (CPUReserve > 0): the sliver is guaranteed CPUReserve of the
//     node's CPU capacity whenever it is runnable, however busy the other
//     slivers are; time it leaves unused goes to the others.
//
// CPULimit caps either class. All CPU amounts are in millicores (1000 = one
// CPU).
type Resources struct {
	// CPUShares is the best-effort weight, 1 to MaxCPUShares.
	CPUShares int `json:"cpu_shares,omitempty"`
	// CPUReserve is the guaranteed CPU in millicores; 0 means best effort.
	CPUReserve MilliCPU `json:"cpu_reserve,omitempty"`
	// CPULimit is the CPU cap in millicores; 0 means no cap.
	CPULimit MilliCPU `json:"cpu_limit,omitempty"`
	// MemoryBytes caps the sliver's memory (page cache and kernel memory
	// included); the kernel OOM-kills inside the sliver beyond it.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// Pids caps the number of tasks (processes and threads).
	Pids int64 `json:"pids,omitempty"`
	// DiskBytes caps the sliver's writable layer (data and metadata).
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

// Limits of Resources values.
const (
	MaxCPUShares   = 100
	MinMemoryBytes = 8 << 20
	MinPids        = 8
	MaxPids        = 4194304 // the kernel's PID_MAX_LIMIT
	MinDiskBytes   = 1 << 20
)

// DefaultResources are what a sliver gets for fields left zero.
var DefaultResources = Resources{
	CPUShares:   1,
	MemoryBytes: 256 << 20,
	Pids:        512,
	DiskBytes:   1 << 30,
}

// WithDefaults returns r with zero fields set from DefaultResources. A
// reserved sliver keeps CPUShares zero: its weight follows its reservation.
func (r Resources) WithDefaults() Resources {
	if r.CPUShares == 0 && r.CPUReserve == 0 {
		r.CPUShares = DefaultResources.CPUShares
	}
	if r.MemoryBytes == 0 {
		r.MemoryBytes = DefaultResources.MemoryBytes
	}
	if r.Pids == 0 {
		r.Pids = DefaultResources.Pids
	}
	if r.DiskBytes == 0 {
		r.DiskBytes = DefaultResources.DiskBytes
	}
	return r
}

// Reserved reports whether r is in the reserved CPU class.
func (r Resources) Reserved() bool { return r.CPUReserve > 0 }

// Validate checks r (after WithDefaults) against a node with cpus millicores
// of CPU capacity.
func (r Resources) Validate(cpus MilliCPU) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalid)...)
	}
	switch {
	case r.CPUShares < 0 || r.CPUShares > MaxCPUShares:
		return bad("cpu share %d is out of range; use 1 to %d", r.CPUShares, MaxCPUShares)
	case r.CPUShares > 0 && r.CPUReserve > 0:
		return bad("a sliver has either cpu shares (best effort) or a cpu reservation, not both; drop one")
	case r.CPUReserve < 0 || r.CPUReserve > cpus:
		return bad("cpu reservation %s is out of range; this node has %s", r.CPUReserve, cpus)
	case r.CPULimit < 0 || r.CPULimit > cpus:
		return bad("cpu limit %s is out of range; use 0 (no limit) up to this node's %s", r.CPULimit, cpus)
	case r.CPULimit > 0 && r.CPULimit < 10:
		return bad("cpu limit %s is too small; use at least 0.01", r.CPULimit)
	case r.CPULimit > 0 && r.CPULimit < r.CPUReserve:
		return bad("cpu limit %s is below the reservation %s; raise the limit or lower the reservation", r.CPULimit, r.CPUReserve)
	case r.MemoryBytes < MinMemoryBytes:
		return bad("memory limit %s is too small; use at least %s", FormatBytes(r.MemoryBytes), FormatBytes(MinMemoryBytes))
	case r.Pids < MinPids:
		return bad("process limit %d is too small; use at least %d", r.Pids, MinPids)
	case r.Pids > MaxPids:
		return bad("process limit %d is more than the kernel allows; use at most %d", r.Pids, MaxPids)
	case r.DiskBytes < MinDiskBytes:
		return bad("disk limit %s is too small; use at least %s", FormatBytes(r.DiskBytes), FormatBytes(MinDiskBytes))
	}
	return nil
}

// MilliCPU is an amount of CPU in thousandths of one CPU.
type MilliCPU int64

// String formats m as CPUs ("1.5").
func (m MilliCPU) String() string {
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) + " CPU"
}

// ParseCPU parses a CPU amount: "1.5" or "1500m".
func ParseCPU(s string) (MilliCPU, error) {
	t := strings.TrimSpace(s)
	var v float64
	var err error
	if strings.HasSuffix(t, "m") {
		v, err = strconv.ParseFloat(strings.TrimSuffix(t, "m"), 64)
		v /= 1000
	} else {
		v, err = strconv.ParseFloat(t, 64)
	}
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > 1<<20 {
		return 0, fmt.Errorf("cpu amount %q is invalid; use CPUs such as 0.5 or 1500m: %w", s, errdefs.ErrInvalid)
	}
	return MilliCPU(math.Round(v * 1000)), nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"B", 1},
}

// ParseBytes parses a size: "512M", "1.5GiB", "65536" (bytes). Units are
// powers of 1024.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || v*float64(mult) >= math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is invalid; use a number with an optional unit such as 512M or 2G: %w", s, errdefs.ErrInvalid)
	}
	return int64(v * float64(mult)), nil
}

// FormatBytes formats n with a binary unit ("256MiB").
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + units[i]
}
