package vnet

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/plab/plab/errdefs"
)

// PortRange is a protocol's port range: "tcp/80", "udp/9000-9010".
type PortRange struct {
	Proto    string
	Lo, High uint16
}

func (p PortRange) String() string {
	if p.Lo == p.High {
		return fmt.Sprintf("%s/%d", p.Proto, p.Lo)
	}
	return fmt.Sprintf("%s/%d-%d", p.Proto, p.Lo, p.High)
}

// Overlaps reports whether p and q share a port of one protocol.
func (p PortRange) Overlaps(q PortRange) bool {
	return p.Proto == q.Proto && p.Lo <= q.High && q.Lo <= p.High
}

// nftRange is p's ports as nft writes them.
func (p PortRange) nftRange() string {
	if p.Lo == p.High {
		return strconv.Itoa(int(p.Lo))
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.High)
}

// MaxPortSpan bounds one reservation.
const MaxPortSpan = 1024

// ParsePorts reads port reservations ("tcp/80", "udp/9000-9010").
func ParsePorts(specs []string) ([]PortRange, error) {
	var out []PortRange
	for _, s := range specs {
		bad := fmt.Errorf("port reservation %q: want tcp/PORT, udp/PORT or a range such as udp/9000-9010: %w", s, errdefs.ErrInvalid)
		proto, ports, ok := strings.Cut(s, "/")
		if !ok || (proto != "tcp" && proto != "udp") {
			return nil, bad
		}
		lo, hi, isRange := strings.Cut(ports, "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || l == 0 || h < l {
			return nil, bad
		}
		if h-l >= MaxPortSpan {
			return nil, fmt.Errorf("port reservation %q spans more than %d ports; reserve a smaller range: %w", s, MaxPortSpan, errdefs.ErrInvalid)
		}
		out = append(out, PortRange{Proto: proto, Lo: uint16(l), High: uint16(h)})
	}
	for i := range out {
		for j := range i {
			if out[i].Overlaps(out[j]) {
				return nil, fmt.Errorf("port reservations %s and %s overlap; list each port once: %w", out[j], out[i], errdefs.ErrInvalid)
			}
		}
	}
	return out, nil
}
