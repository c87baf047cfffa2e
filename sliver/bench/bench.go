//go:build linux

// Package bench measures slivers on this machine for `plab bench slivers`:
// creation latency as the node fills up, compared in the same run with the
// OCI runtime starting the same image bare; exec and destroy latency; and
// what an idle sliver costs in host memory and disk.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plab/plab/sliver"
	"github.com/plab/plab/sliver/oci"
)

// Options say what to measure.
type Options struct {
	// Count is how many slivers to fill the node with (default 1000).
	Count int
	// Window is how many creations make one latency sample around each
	// fill level (default 50).
	Window int
	// Baseline is how many bare runtime starts to time (default 50).
	Baseline int
	// CPUTime is how long each CPU-sharing experiment runs (0: skip them).
	CPUTime time.Duration
	// Progress receives a line now and then (nil: none).
	Progress io.Writer
}

// Latency summarizes durations.
type Latency struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[int(math.Ceil(p*float64(len(s))))-1] }
	return Latency{N: len(s), P50: q(0.50), P99: q(0.99), Max: s[len(s)-1]}
}

// Level is creation latency measured while Live slivers ran.
type Level struct {
	Live   int     `json:"live"`
	Create Latency `json:"create"`
	Bare   Latency `json:"bare_runtime_start"`
	VsBare float64 `json:"p50_vs_bare"`
	Exec   Latency `json:"exec"`
}

// Report is what Slivers measured.
type Report struct {
	Count           int        `json:"count"`
	Cgroups         string     `json:"cgroups"`
	Bare            Latency    `json:"bare_runtime_start"`
	Levels          []Level    `json:"levels"`
	Destroy         Latency    `json:"destroy"`
	MemPerSlv       int64      `json:"host_memory_bytes_per_idle_sliver"`
	KernPerSl       int64      `json:"kernel_memory_bytes_per_idle_sliver"`
	LayerPer        int64      `json:"layer_disk_bytes_per_fresh_sliver"`
	StatePer        int64      `json:"state_disk_bytes_per_sliver"`
	FairShare       []CPUShare `json:"fair_share"`
	FairSharePinned []CPUShare `json:"fair_share_pinned"`
	Reserve         []CPUShare `json:"reservation"`
	ReservePinned   []CPUShare `json:"reservation_pinned"`
	Elapsed         string     `json:"elapsed"`
}

// Slivers fills the node behind b with o.Count idle slivers, measuring as it
// goes, then destroys them. The backend must hold no other slivers.
func Slivers(ctx context.Context, b *oci.Backend, o Options) (rep Report, err error) {
	if o.Count <= 0 {
		o.Count = 1000
	}
	if o.Window <= 0 {
		o.Window = 50
	}
	o.Window = min(o.Window, o.Count)
	if o.Baseline <= 0 {
		o.Baseline = 50
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	t0 := time.Now()
	rep = Report{Count: o.Count, Cgroups: fmt.Sprintf("v%d", b.CgroupVersion())}
	if existing, _ := b.List(ctx); len(existing) > 0 {
		return rep, fmt.Errorf("the node has %d slivers; benchmark on an empty node (another --state-dir)", len(existing))
	}

	if o.CPUTime > 0 {
		shares := func(prefix string) []sliver.Spec {
			return []sliver.Spec{
				{Name: prefix + "share1", Resources: sliver.Resources{CPUShares: 1}},
				{Name: prefix + "share3", Resources: sliver.Resources{CPUShares: 3}},
			}
		}
		reserved := func(prefix string) []sliver.Spec {
			s := []sliver.Spec{{Name: prefix + "reserved", Resources: sliver.Resources{CPUReserve: sliver.MilliCPU(runtime.NumCPU()) * 750}}}
			for i := range 3 {
				s = append(s, sliver.Spec{Name: fmt.Sprintf("%sbe%d", prefix, i), Resources: sliver.Resources{CPUShares: 10}})
			}
			return s
		}
		for _, x := range []struct {
			what   string
			dst    *[]CPUShare
			pinned bool
			specs  []sliver.Spec
		}{
			{"two slivers with 1 and 3 shares", &rep.FairShare, false, shares("bench_")},
			{"the same, pinned to CPU 0", &rep.FairSharePinned, true, shares("bench_pin_")},
			{"a sliver reserving 3/4 of the node against three best-effort slivers", &rep.Reserve, false, reserved("bench_")},
			{"the same, pinned to CPU 0", &rep.ReservePinned, true, reserved("bench_pin_")},
		} {
			progress("CPU, all busy for %v: %s...", o.CPUTime, x.what)
			if *x.dst, err = CPU(ctx, b, runtime.NumCPU(), x.pinned, o.CPUTime, x.specs); err != nil {
				return rep, err
			}
		}
	}

	names := make([]string, 0, o.Count)
	defer func() {
		for _, n := range names { // on error: leave nothing behind
			_ = b.Destroy(context.WithoutCancel(ctx), n)
		}
	}()
	// A level L is measured on the window of creations that brings the
	// node up to L live slivers (the first window for L = 1). The bare
	// runtime is timed just before each window, with as many slivers live,
	// so both pay for what the host holds by then.
	type window struct{ level, first int }
	var windows []window
	for _, l := range []int{1, 100, 1000, o.Count} {
		if l <= o.Count && (len(windows) == 0 || windows[len(windows)-1].level < l) {
			windows = append(windows, window{l, max(0, l-o.Window)})
		}
	}
	bareAt := map[int]Latency{} // by first index of a window
	memBefore, kernBefore := memUsed()
	diskBefore, err := b.LayerBytesUsed()
	if err != nil {
		return rep, err
	}
	creates := make([]time.Duration, o.Count)
	for i := range o.Count {
		for _, w := range windows {
			if _, done := bareAt[i]; w.first == i && !done {
				progress("timing %d bare runtime starts with %d slivers live...", o.Baseline, i)
				d, err := b.BareStarts(ctx, o.Baseline)
				if err != nil {
					return rep, fmt.Errorf("bare runtime: %w", err)
				}
				bareAt[i] = summarize(d)
			}
		}
		name := fmt.Sprintf("bench_%04d", i)
		t := time.Now()
		if _, err := b.Create(ctx, sliver.Spec{Name: name}); err != nil {
			return rep, err
		}
		names = append(names, name)
		if err := b.Start(ctx, name); err != nil {
			return rep, err
		}
		creates[i] = time.Since(t)
		if (i+1)%100 == 0 {
			progress("%d slivers running", i+1)
		}
	}
	// Exec latency at each level: sampled once the node is full, on the
	// slivers of the window.
	for _, w := range windows {
		lv := Level{Live: w.level, Create: summarize(creates[w.first : w.first+o.Window]), Bare: bareAt[w.first]}
		if lv.Bare.P50 > 0 {
			lv.VsBare = float64(lv.Create.P50) / float64(lv.Bare.P50)
		}
		names := names[w.first : w.first+min(o.Window, 20)]
		var execs []time.Duration
		for _, n := range names {
			t := time.Now()
			code, err := b.Exec(ctx, n, sliver.ExecSpec{Args: []string{"true"}})
			if err != nil || code != 0 {
				return rep, fmt.Errorf("exec in %s: status %d, %v", n, code, err)
			}
			execs = append(execs, time.Since(t))
		}
		lv.Exec = summarize(execs)
		rep.Levels = append(rep.Levels, lv)
	}
	memAfter, kernAfter := memUsed()
	rep.MemPerSlv = (memAfter - memBefore) / int64(o.Count)
	rep.KernPerSl = (kernAfter - kernBefore) / int64(o.Count)
	diskAfter, err := b.LayerBytesUsed()
	if err != nil {
		return rep, err
	}
	rep.LayerPer = (diskAfter - diskBefore) / int64(o.Count)
	rep.StatePer = b.StateBytes(names[0])

	progress("destroying %d slivers...", o.Count)
	var destroys []time.Duration
	for len(names) > 0 {
		n := names[len(names)-1]
		t := time.Now()
		if err := b.Destroy(ctx, n); err != nil {
			return rep, err
		}
		destroys = append(destroys, time.Since(t))
		names = names[:len(names)-1]
	}
	rep.Destroy = summarize(destroys)
	rep.Elapsed = time.Since(t0).Round(time.Second).String()
	return rep, nil
}

// memUsed reads the host's used memory (MemTotal - MemAvailable) and the
// kernel's own part of it (unreclaimable slab, kernel stacks, page
// tables), in bytes.
func memUsed() (used, kernel int64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	v := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			v[strings.TrimSuffix(f[0], ":")] = n * 1024
		}
	}
	return v["MemTotal"] - v["MemAvailable"], v["SUnreclaim"] + v["KernelStack"] + v["PageTables"]
}

// Print writes r as a table.
func (r Report) Print(w io.Writer) {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms" }
	fmt.Fprintf(w, "slivers: %d, cgroup %s, elapsed %s\n\n", r.Count, r.Cgroups, r.Elapsed)
	fmt.Fprintf(w, "%-34s %9s %9s %9s\n", "", "p50", "p99", "max")
	for _, l := range r.Levels {
		fmt.Fprintf(w, "%-34s %9s %9s %9s\n", fmt.Sprintf("bare runtime, %d live (n=%d)", l.Live, l.Bare.N), ms(l.Bare.P50), ms(l.Bare.P99), ms(l.Bare.Max))
		fmt.Fprintf(w, "%-34s %9s %9s %9s   p50 %.2fx bare\n", fmt.Sprintf("create, %d live (n=%d)", l.Live, l.Create.N), ms(l.Create.P50), ms(l.Create.P99), ms(l.Create.Max), l.VsBare)
	}
	for _, l := range r.Levels {
		fmt.Fprintf(w, "%-34s %9s %9s %9s\n", fmt.Sprintf("exec true, %d live (n=%d)", l.Live, l.Exec.N), ms(l.Exec.P50), ms(l.Exec.P99), ms(l.Exec.Max))
	}
	fmt.Fprintf(w, "%-34s %9s %9s %9s\n\n", fmt.Sprintf("destroy (n=%d)", r.Destroy.N), ms(r.Destroy.P50), ms(r.Destroy.P99), ms(r.Destroy.Max))
	fmt.Fprintf(w, "host memory per idle sliver:  %s (kernel part %s)\n", sliver.FormatBytes(r.MemPerSlv), sliver.FormatBytes(r.KernPerSl))
	fmt.Fprintf(w, "disk per fresh sliver:        %s layer + %s records\n", sliver.FormatBytes(r.LayerPer), sliver.FormatBytes(r.StatePer))
	for _, set := range []struct {
		title string
		s     []CPUShare
	}{
		{"fair share (all busy)", r.FairShare}, {"fair share, all on CPU 0", r.FairSharePinned},
		{"reservation (all busy)", r.Reserve}, {"reservation, all on CPU 0", r.ReservePinned},
	} {
		if len(set.s) > 0 {
			fmt.Fprintf(w, "\n%s:\n", set.title)
			for _, c := range set.s {
				fmt.Fprintf(w, "  %-16s %-18s got %s\n", c.Name, c.Want, c.Got)
			}
		}
	}
}
