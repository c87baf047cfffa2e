package node

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/vnet"
)

// Admission control. Guarantees are never oversubscribed: the sum of CPU
// reservations stays within the node's CPU less the host's reserve, the sum
// of memory a ticket asks for explicitly within its memory less the
// reserve, the sum of minimum rates within the bandwidth cap, and no port is
// reserved twice. Best-effort slivers (shares, default limits) are admitted
// up to the node's and the site's sliver counts.

// capacity is what slivers may be promised in total.
type capacity struct {
	CPU        sliver.MilliCPU
	Memory     int64
	Bandwidth  int64
	MaxSlivers int
	MaxPerSite int
	HostPorts  []vnet.PortRange
}

// claim is one sliver's hold on the node.
type claim struct {
	Slice string
	Res   ticket.Resources
	Ports []vnet.PortRange
}

// admission holds the node's claims. Not safe for concurrent use: the
// manager guards it.
type admission struct {
	cap    capacity
	claims map[string]claim // by sliver
}

func newAdmission(c capacity) *admission {
	return &admission{cap: c, claims: map[string]claim{}}
}

// site is a slice's site: the part of its name before the first '_'.
func site(slice string) string {
	s, _, _ := strings.Cut(slice, "_")
	return s
}

// used sums the guarantees of every claim but skip's.
func (a *admission) used(skip string) (cpu sliver.MilliCPU, mem, bw int64) {
	// Every claim was admitted within the capacity, so the sums stay
	// below it and cannot overflow.
	for n, c := range a.claims {
		if n == skip {
			continue
		}
		cpu += sliver.MilliCPU(c.Res.CPUReserve)
		mem += c.Res.MemoryBytes
		bw += c.Res.NetMinRate
	}
	return
}

// check says whether sliver name may hold c; name may already hold a claim
// (an update), which c would replace.
func (a *admission) check(name string, c claim) error {
	_, update := a.claims[name]
	full := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, errdefs.ErrNoCapacity)...)
	}
	if !update {
		if len(a.claims) >= a.cap.MaxSlivers {
			return full("node is full: it holds its maximum of %d slivers; choose another node (GET /v1/ads at PLC)", a.cap.MaxSlivers)
		}
		if a.cap.MaxPerSite > 0 {
			n, s := 0, site(c.Slice)
			for _, o := range a.claims {
				if site(o.Slice) == s {
					n++
				}
			}
			if n >= a.cap.MaxPerSite {
				return full("site %s already holds %d slivers on this node, its maximum; free one or choose another node", s, n)
			}
		}
	}
	cpu, mem, bw := a.used(name)
	// Compared as "more than what is left" so no sum can overflow.
	if r := sliver.MilliCPU(c.Res.CPUReserve); r > 0 && r > a.cap.CPU-cpu {
		return full("cpu reservation %s does not fit: %s of this node's %s are unreserved; ask for less or choose another node", r, a.cap.CPU-cpu, a.cap.CPU)
	}
	if m := c.Res.MemoryBytes; m > 0 && m > a.cap.Memory-mem {
		return full("memory guarantee %s does not fit: %s of this node's %s are unpromised; ask for less or choose another node",
			sliver.FormatBytes(m), sliver.FormatBytes(a.cap.Memory-mem), sliver.FormatBytes(a.cap.Memory))
	}
	if r := c.Res.NetMinRate; r > 0 {
		if a.cap.Bandwidth == 0 {
			return full("this node guarantees no bandwidth (it has no bandwidth cap configured); drop net_min_rate or choose another node")
		}
		if r > a.cap.Bandwidth-bw {
			return full("minimum rate %s does not fit: %s of this node's %s are unguaranteed; ask for less or choose another node", rate(r), rate(a.cap.Bandwidth-bw), rate(a.cap.Bandwidth))
		}
	}
	for _, p := range c.Ports {
		for _, h := range a.cap.HostPorts {
			if p.Overlaps(h) {
				return fmt.Errorf("port %s is the node's own (%s); reserve another: %w", p, h, errdefs.ErrConflict)
			}
		}
		for n, o := range a.claims {
			if n == name {
				continue
			}
			for _, q := range o.Ports {
				if p.Overlaps(q) {
					return fmt.Errorf("port %s is reserved by slice %s on this node; reserve another or choose another node: %w", p, o.Slice, errdefs.ErrConflict)
				}
			}
		}
	}
	return nil
}

// admit records c for name after check.
func (a *admission) admit(name string, c claim) error {
	if err := a.check(name, c); err != nil {
		return err
	}
	a.claims[name] = c
	return nil
}

func (a *admission) release(name string) { delete(a.claims, name) }

// free is what is left to promise.
func (a *admission) free() api.Resources {
	cpu, mem, bw := a.used("")
	return api.Resources{CPUReserve: int64(a.cap.CPU - cpu), MemoryBytes: a.cap.Memory - mem, NetMinRate: a.cap.Bandwidth - bw}
}

func (a *admission) capacity() api.Resources {
	return api.Resources{CPUReserve: int64(a.cap.CPU), MemoryBytes: a.cap.Memory, NetMinRate: a.cap.Bandwidth}
}

func rate(bps int64) string {
	return strconv.FormatFloat(float64(bps)/1e6, 'f', -1, 64) + " Mbit/s"
}
