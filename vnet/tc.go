//go:build linux

package vnet

// Bandwidth. Config.Cap shapes the node's uplink with one HTB tree:
//
//	uplink: root qdisc htb 1: (default class 1:ffff), filter bpf: mark 0x7XXXX → class 1:XXXX
//	└── 1:1        rate = ceil = Cap
//	    ├── 1:ffff the node's own traffic (unmarked): rate Cap/100, ceil Cap
//	    ├── 1:17   the sliver with id 0x17: rate max(MinRate, floor), ceil MaxRate or Cap,
//	    │          its queue a bfifo 17: of 10 ms at its ceil (256 KiB to 1 MiB)
//	    └── ...
//
// Outbound, nftables marks each packet of a sliver with mark(id) as it
// enters from the sliver's host veth. One filter on the uplink's root, a
// classic BPF program of nine instructions, turns the mark into the
// class: a constant cost per packet and nothing per sliver to add or
// remove. (An fw filter per sliver would do too, but cls_fw is missing
// from minimal kernels, and u32 would walk every sliver's key for every
// packet; cls_bpf is in Debian's kernel and in minimal ones.)
//
// A class is promised its rate. What the promised rates leave over, the
// backlogged classes share through 1:1 in deficit round robin, each with
// the same quantum, so each gets an equal part of the excess whatever its
// guarantee, up to its ceil: a sliver guaranteed 30 of 100 Mbit/s beside
// four best-effort ones gets 30 + 70/5. A class under its rate is served
// before the classes that borrow, so a sliver that sends little (a shell)
// waits for no round of the busy ones.
//
// The floor is the rate of a sliver without a guarantee: HTB wants a rate
// for every class, and HTB sends a class's promised rate without asking
// its parent, so the floors add to the guarantees. The floor is Cap/32768
// within 1 and 8 kbit/s: from a 33 Mbit/s cap up, 4,096 slivers' floors
// take at most an eighth of the cap (a 100 Mbit/s cap: 3 kbit/s each,
// 12.5 Mbit/s for 4,096); the node manager's admission keeps the
// guarantees within the cap. The node's class is promised Cap/100.
//
// The quantum is 64 KiB, the largest packet HTB sees (a GSO packet), for
// every class. HTB serves a class at least one packet per turn, so with a
// smaller quantum the senders of larger packets get more: 100 slivers of
// Reno flooding a 100 Mbit/s cap had a Jain index of 0.80 with a quantum
// of 1514 bytes, 0.98 with 16 KiB and 0.999 with 64 KiB. The price is
// granularity: a round among n backlogged classes lasts n×64 KiB at the
// cap (50 ms for 10 classes at 100 Mbit/s), and each bucket holds a
// quantum (see htbClass).
//
// Inbound. The node cannot schedule what arrives on its uplink, only what
// it forwards. A sliver with a MaxRate gets a token bucket filter (tbf) at
// MaxRate as the root qdisc of its host veth, where the traffic from the
// node to the sliver leaves: packets beyond the rate wait (up to 100 ms
// worth) and are then dropped, and TCP senders slow down to the rate.
// There is no guaranteed or shared inbound rate: slivers without a MaxRate
// receive whatever reaches the node.
//
// With Cap 0 nothing is shaped, either way.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// rootHandle is the handle of the htb qdisc plab puts on the uplink (1:).
var rootHandle = netlink.MakeHandle(1, 0)

var (
	// capClass holds every class; its rate and ceil are the cap.
	capClass = netlink.MakeHandle(1, 1)
	// nodeClass is the default class: the node's own traffic, all that
	// carries no sliver's mark.
	nodeClass = netlink.MakeHandle(1, 0xffff)
)

const (
	// quantum is every class's share of a round of deficit round robin,
	// in bytes: the largest GSO packet.
	quantum = 64 << 10
	// filterPrio and filterHandle name the uplink's classifier.
	filterPrio, filterHandle = 1, 1
	// inboundQueueMs is how long a packet may wait in an inbound tbf.
	inboundQueueMs = 100
	// inboundBurst is the least burst of an inbound tbf: a GSO packet.
	inboundBurst = 64 << 10
)

// floor is the rate, bits per second, of a sliver without a guarantee:
// Cap/32768 within 1 to 8 kbit/s. It is also the least ceil: below
// 1 kbit/s HTB's burst, in ticks, overflows 32 bits.
func floor(capacity int64) int64 {
	return min(max(capacity/32768, 1000), 8000)
}

// GuaranteeRoom is what guaranteed rates may add up to on an uplink capped
// at capacity and shared by at most slivers slivers: HTB sends every
// class's promised rate without asking its parent, so the node's own
// class and every sliver's floor come off the cap. Admission control keeps
// the sum of guarantees within it.
func GuaranteeRoom(capacity int64, slivers int) int64 {
	if capacity == 0 {
		return 0
	}
	return max(0, capacity-max(capacity/100, floor(capacity))-int64(slivers)*floor(capacity))
}

// classRates are the rate and ceil of the class of a sliver with rates
// minRate and maxRate (0: none) on an uplink capped at capacity.
func classRates(capacity, minRate, maxRate int64) (rate, ceil int64) {
	f := floor(capacity)
	ceil = capacity
	if maxRate > 0 && maxRate < capacity {
		ceil = maxRate
	}
	ceil = max(ceil, f)
	rate = min(max(minRate, f), ceil)
	return rate, ceil
}

// burst is the depth, bytes, of a token bucket filling at rate bits per
// second: a quantum, or a minute of the rate when that is less (HTB
// counts it in 32-bit ticks of 64 ns, about 4.5 minutes).
func burst(rate int64) uint32 {
	return uint32(min(int64(quantum), rate/8*60))
}

// htbClass is class id under parent on the uplink. Both its buckets hold
// a quantum: while the other classes take their turns, a class earns
// tokens that it must be able to keep, or a class capped below its share
// would get less than its ceil (with HTB's default of one packet it got
// 12 of its 20 Mbit/s beside a class sending 64 KiB a turn).
func (n *Net) htbClass(parent, id uint32, rate, ceil int64) *netlink.HtbClass {
	c := netlink.NewHtbClass(
		netlink.ClassAttrs{LinkIndex: n.up.Attrs().Index, Parent: parent, Handle: id},
		netlink.HtbClassAttrs{Rate: uint64(rate), Ceil: uint64(ceil), Buffer: burst(rate), Cbuffer: burst(ceil)},
	)
	c.Quantum = quantum
	return c
}

// setupUplink makes (or keeps) the uplink's htb tree when Cap is set and
// removes it when not. An htb 1: found on the uplink is kept with the
// classes of the slivers a previous process attached; its cap and default
// class are set anew.
func (n *Net) setupUplink() error {
	if n.cfg.Cap == 0 {
		return removeQdiscs(n.h, n.up)
	}
	own, err := n.ownsUplink()
	if err != nil {
		return err
	}
	if !own {
		if err := removeQdiscs(n.h, n.up); err != nil {
			return err
		}
		q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: n.up.Attrs().Index, Parent: netlink.HANDLE_ROOT, Handle: rootHandle})
		q.Defcls = netlink.MakeHandle(0, 0xffff)
		if err := n.h.QdiscReplace(q); err != nil {
			return fmt.Errorf("sliver networking: htb on %s: %w", n.cfg.Uplink, err)
		}
	}
	if err := n.h.ClassReplace(n.htbClass(rootHandle, capClass, n.cfg.Cap, n.cfg.Cap)); err != nil {
		return fmt.Errorf("sliver networking: class of the uplink's cap: %w", err)
	}
	node := n.htbClass(capClass, nodeClass, max(n.cfg.Cap/100, floor(n.cfg.Cap)), n.cfg.Cap)
	if err := n.h.ClassReplace(node); err != nil {
		return fmt.Errorf("sliver networking: class of the node's traffic: %w", err)
	}
	return n.setClassifier()
}

// ownsUplink reports whether the uplink's root qdisc is plab's htb.
func (n *Net) ownsUplink() (bool, error) {
	qs, err := n.h.QdiscList(n.up)
	if err != nil {
		return false, fmt.Errorf("sliver networking: qdiscs of %s: %w", n.cfg.Uplink, err)
	}
	for _, q := range qs {
		if htb, ok := q.(*netlink.Htb); ok && q.Attrs().Parent == netlink.HANDLE_ROOT &&
			q.Attrs().Handle == rootHandle && htb.Defcls == 0xffff {
			return true, nil
		}
	}
	return false, nil
}

// setClass makes or updates sliver a's class, its queue and its inbound
// limit. Without a cap it only removes an inbound limit a capped run left.
func (n *Net) setClass(a *attached) error {
	if n.cfg.Cap == 0 {
		return n.setInbound(a.Host, 0)
	}
	rate, ceil := classRates(n.cfg.Cap, a.MinRate, a.MaxRate)
	id := netlink.MakeHandle(1, a.ID)
	if err := n.h.ClassReplace(n.htbClass(capClass, id, rate, ceil)); err != nil {
		return fmt.Errorf("tc class %s: %w", netlink.HandleStr(id), err)
	}
	if err := n.setLeaf(a.ID, leafLimit(ceil)); err != nil {
		return err
	}
	return n.setInbound(a.Host, a.MaxRate)
}

// setInbound puts a tbf at maxRate on host veth name, or removes the one
// there when maxRate is 0.
func (n *Net) setInbound(name string, maxRate int64) error {
	host, err := n.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("inbound limit: %w", err)
	}
	if maxRate <= 0 {
		qs, err := n.h.QdiscList(host)
		if err != nil {
			return fmt.Errorf("inbound limit: %w", err)
		}
		for _, q := range qs {
			if _, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
				if err := n.h.QdiscDel(q); err != nil {
					return fmt.Errorf("remove inbound limit: %w", err)
				}
			}
		}
		return nil
	}
	// Bytes per second, at least 1000: a burst of 64 KiB, in ticks, must
	// fit 32 bits. The burst is 10 ms, at least a GSO packet.
	rate := uint64(max(maxRate, 8000)) / 8
	burst := max(uint32(min(rate/100, 1<<30)), inboundBurst)
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: host.Attrs().Index, Parent: netlink.HANDLE_ROOT, Handle: rootHandle},
		Rate:       rate,
		Buffer:     netlink.Xmittime(rate, burst),
		Limit:      burst + uint32(min(rate*inboundQueueMs/1000, 1<<30)),
	}
	if err := n.h.QdiscReplace(q); err != nil {
		return fmt.Errorf("inbound limit on %s: %w", name, err)
	}
	return nil
}

// pruneClasses removes the classes of slivers that are gone (their veths
// went while no process watched): every sliver class Open did not adopt.
func (n *Net) pruneClasses() error {
	if n.cfg.Cap == 0 {
		return nil
	}
	keep := map[uint32]bool{}
	for _, a := range n.slivers {
		keep[netlink.MakeHandle(1, a.ID)] = true
	}
	cs, err := n.h.ClassList(n.up, rootHandle)
	if err != nil {
		return fmt.Errorf("sliver networking: classes of %s: %w", n.cfg.Uplink, err)
	}
	for _, c := range cs {
		a := c.Attrs()
		if a.Parent != capClass || a.Handle == nodeClass || keep[a.Handle] {
			continue
		}
		if err := n.h.ClassDel(c); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("sliver networking: delete stale class %s: %w", netlink.HandleStr(a.Handle), err)
		}
	}
	return nil
}

// delClass removes sliver a's class; an absent one is no error. Its
// inbound limit goes with its host veth.
func (n *Net) delClass(a *attached) error {
	if n.cfg.Cap == 0 {
		return nil
	}
	id := netlink.MakeHandle(1, a.ID)
	c := &netlink.HtbClass{ClassAttrs: netlink.ClassAttrs{LinkIndex: n.up.Attrs().Index, Parent: capClass, Handle: id}}
	if err := n.h.ClassDel(c); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete tc class %s: %w", netlink.HandleStr(id), err)
	}
	return nil
}

// Classic BPF's ancillary load of the packet's mark (linux/filter.h).
const (
	skfAdOff  = 0xfffff000 // -0x1000
	skfAdMark = 20
)

// classifier is the uplink's filter, classic BPF run by cls_bpf: a packet
// marked 0x7XXXX goes to class 1:XXXX (the program returns the class id);
// any other gets 0, no match, and goes to the default class. A sliver's
// mark whose class is gone (packets in flight at Detach) goes there too.
var classifier = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdMark},  // A = mark
	{Code: unix.BPF_MISC | unix.BPF_TAX},                                      // X = A
	{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 16},                   // A >>= 16
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: mark(0) >> 16, Jf: 4}, // A == 7 or to 8
	{Code: unix.BPF_MISC | unix.BPF_TXA},                                      // A = X
	{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0xffff},               // A &= 0xffff
	{Code: unix.BPF_ALU | unix.BPF_OR | unix.BPF_K, K: rootHandle},            // A |= 1:0
	{Code: unix.BPF_RET | unix.BPF_A},                                         // class A
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},                                   // 8: no match
}

// setClassifier puts (or replaces) the classifier on the uplink's root.
func (n *Net) setClassifier() error {
	ops := make([]byte, 0, 8*len(classifier))
	for _, ins := range classifier {
		ops = binary.NativeEndian.AppendUint16(ops, ins.Code)
		ops = append(ops, ins.Jt, ins.Jf)
		ops = binary.NativeEndian.AppendUint32(ops, ins.K)
	}
	opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
	opts.AddRtAttr(nl.TCA_BPF_OPS_LEN, nl.Uint16Attr(uint16(len(classifier))))
	opts.AddRtAttr(nl.TCA_BPF_OPS, ops)
	err := n.tc(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE, &nl.TcMsg{
		Family:  nl.FAMILY_ALL,
		Ifindex: int32(n.up.Attrs().Index),
		Handle:  filterHandle,
		Parent:  rootHandle,
		Info:    netlink.MakeHandle(filterPrio, nl.Swap16(unix.ETH_P_ALL)),
	}, "bpf", opts)
	if err != nil {
		return fmt.Errorf("sliver networking: classifier on %s: %w", n.cfg.Uplink, err)
	}
	return nil
}

// leafLimit is the bytes a sliver's class may queue: 10 ms at its ceil,
// within 4 and 16 quanta (256 KiB to 1 MiB).
func leafLimit(ceil int64) uint32 {
	return uint32(min(max(ceil/8/100, 4*quantum), 16*quantum))
}

// setLeaf makes the queue of class 1:id a bfifo of limit bytes (handle
// id:). HTB's default, a pfifo of the uplink's txqueuelen packets, holds
// up to 1,000 GSO packets of 64 KiB: loss-based TCP fills it (a flood by
// 100 slivers queued 286 MB and seconds of delay), and a sliver could
// pin 64 MB of the node's memory.
func (n *Net) setLeaf(id uint16, limit uint32) error {
	err := n.tc(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, &nl.TcMsg{
		Family:  nl.FAMILY_ALL,
		Ifindex: int32(n.up.Attrs().Index),
		Handle:  netlink.MakeHandle(id, 0),
		Parent:  netlink.MakeHandle(1, id),
	}, "bfifo", nl.NewRtAttr(nl.TCA_OPTIONS, binary.NativeEndian.AppendUint32(nil, limit)))
	if err != nil {
		return fmt.Errorf("tc queue of class 1:%x: %w", id, err)
	}
	return nil
}

// tc sends a traffic control request the netlink package cannot build
// (it attaches only eBPF programs and sets no fifo's limit) from the
// node's namespace.
func (n *Net) tc(msgType, flags int, msg *nl.TcMsg, kind string, opts *nl.RtAttr) error {
	req := nl.NewNetlinkRequest(msgType, flags|unix.NLM_F_ACK)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated(kind)))
	req.AddData(opts)
	return inNS(n.ns, func() error {
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})
}
