//go:build linux

package vnet

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/plab/plab/internal/testenv"
)

// Benchmarks of sliver networking on a node in a namespace of its own,
// with fake slivers (a sleeping process in namespaces of its own each):
//
//	go test -run '^$' -bench . -benchtime 1x ./vnet
//	PLAB_BENCH_SLIVERS=4000 go test -run '^$' -bench Attach -benchtime 1x ./vnet

// BenchmarkAttach fills a node capped at 1 Gbit/s with PLAB_BENCH_SLIVERS
// slivers (default 1000), one Attach after another, and reports the
// latency of an Attach over the whole fill and over its last tenth (a
// nearly full node), then empties it and reports a Detach's.
func BenchmarkAttach(b *testing.B) {
	n := 1000
	if v := os.Getenv("PLAB_BENCH_SLIVERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			b.Fatalf("PLAB_BENCH_SLIVERS=%q: want a number from 10 up", v)
		}
	}
	w := newBenchWorld(b, Config{Cap: 1e9})
	pids := make([]int, n)
	for i := range pids {
		pids[i] = startSliver(b)
	}
	var all, last, detach []time.Duration
	for b.Loop() {
		for i, pid := range pids {
			t0 := time.Now()
			if _, err := w.net.Attach(Sliver{Name: fmt.Sprintf("site_s%d", i), Pid: pid}); err != nil {
				b.Fatalf("Attach %d: %v", i, err)
			}
			d := time.Since(t0)
			all = append(all, d)
			if i >= n-n/10 {
				last = append(last, d)
			}
		}
		for i := range pids {
			t0 := time.Now()
			if err := w.net.Detach(fmt.Sprintf("site_s%d", i)); err != nil {
				b.Fatalf("Detach %d: %v", i, err)
			}
			detach = append(detach, time.Since(t0))
		}
	}
	b.ReportMetric(ms(percentile(all, 50)), "attach-p50-ms")
	b.ReportMetric(ms(percentile(all, 99)), "attach-p99-ms")
	b.ReportMetric(ms(percentile(last, 50)), "attach-full-p50-ms")
	b.ReportMetric(ms(percentile(last, 99)), "attach-full-p99-ms")
	b.ReportMetric(ms(percentile(detach, 50)), "detach-p50-ms")
	b.ReportMetric(float64(n), "slivers")
}

// BenchmarkRateAccuracy has 100 slivers without guarantees flood a node
// capped at 100 Mbit/s at once and reports, over PLAB_BENCH_WINDOW
// (default 20s), the mean and the largest error of a sliver's rate
// against an equal share of the cap, and Jain's fairness index.
//
// A sliver's rate is what its class sent, in frames as HTB counts them:
// the shaper's own figure. The sinks' (sink-rate-err-pct) adds the
// receiving side's lag: under this load the internet namespace's backlog
// of received packets grows and shrinks by megabytes, which moves bytes
// between windows.
//
// The error is mostly the quantum's granularity: a round of 100 classes
// moves 100×64 KiB, half a second at the cap, so a window of w seconds
// counts each sliver's turns to about one in 2w; it shrinks as the window
// grows.
//
// The slivers' TCP is Reno, loss-based like Debian's default CUBIC
// (which a namespace other than the first may not choose): its window
// grows until its class's queue overflows, so each class is backlogged
// and the figure is the shaper's. host-default runs the host's own; a
// BBR sender on this sub-millisecond path keeps a window of a few packets,
// too few to fill its turns, and gets what it asks for rather than its
// share: its figure is the senders', not the shaper's.
func BenchmarkRateAccuracy(b *testing.B) {
	win := 20 * time.Second
	if v := os.Getenv("PLAB_BENCH_WINDOW"); v != "" {
		var err error
		if win, err = time.ParseDuration(v); err != nil {
			b.Fatalf("PLAB_BENCH_WINDOW=%q: %v", v, err)
		}
	}
	for _, cc := range []string{"reno", "host-default"} {
		b.Run(cc, func(b *testing.B) {
			pre := ""
			if cc != "host-default" {
				pre = "echo " + cc + " >/proc/sys/net/ipv4/tcp_congestion_control && "
			}
			benchRateAccuracy(b, pre, win)
		})
	}
}

func benchRateAccuracy(b *testing.B, pre string, win time.Duration) {
	const n, capacity = 100, 100e6
	w := newBenchWorld(b, Config{Cap: capacity})
	var classes, sinks []func() int64
	var firsts []<-chan struct{}
	for i := range n {
		pid := startSliver(b)
		a, err := w.net.Attach(Sliver{Name: fmt.Sprintf("site_s%d", i), Pid: pid})
		if err != nil {
			b.Fatalf("Attach %d: %v", i, err)
		}
		k := newSink(b, w.inetNS, false)
		startIn(b, pid, pre+"busybox cat /dev/zero | busybox nc "+inetAddr+" "+k.port)
		classes = append(classes, classBytes(b, w.net, w.net.classID(a.Addr)))
		sinks = append(sinks, k.received)
		firsts = append(firsts, k.first)
	}
	waitAll(b, firsts)
	var r, rs []float64
	for b.Loop() {
		all := rates(sample(append(classes, sinks...), 2*time.Second, win, 1))
		r, rs = all[:n], all[n:]
	}
	meanErr, maxErr := shareError(r, capacity/n)
	sinkErr, _ := shareError(rs, sum(rs)/n)
	b.ReportMetric(100*meanErr, "rate-err-pct")
	b.ReportMetric(100*maxErr, "rate-err-max-pct")
	b.ReportMetric(100*sinkErr, "sink-rate-err-pct")
	b.ReportMetric(jain(r), "jain")
	b.ReportMetric(sum(r)/1e6, "total-Mbit/s")
	b.ReportMetric(float64(w.backlog())/1e6, "queued-MB")
}

// shareError is the mean and the largest relative error of rates against
// share.
func shareError(rates []float64, share float64) (mean, largest float64) {
	for _, x := range rates {
		e := math.Abs(x-share) / share
		mean += e / float64(len(rates))
		largest = max(largest, e)
	}
	return mean, largest
}

// benchWorld is newTopo's world for a benchmark: an internet namespace and
// a node namespace joined by up0/wan0, vnet open on the node.
type benchWorld struct {
	inetNS netns.NsHandle
	net    *Net
}

func newBenchWorld(b *testing.B, cfg Config) *benchWorld {
	b.Helper()
	testenv.RequireRoot(b)
	testenv.RequireBinaries(b, "ip", "nft", "tc", "nsenter", "unshare", "busybox")
	seq := topoSeq.Add(1)
	inet, node := fmt.Sprintf("plabb-i%d-%d", os.Getpid(), seq), fmt.Sprintf("plabb-n%d-%d", os.Getpid(), seq)
	run := func(args ...string) {
		b.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%q: %v: %s", args, err, out)
		}
	}
	for _, ns := range []string{inet, node} {
		run("ip", "netns", "add", ns)
		b.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("ip", "link", "add", "up0", "netns", node, "type", "veth", "peer", "name", "wan0", "netns", inet)
	run("ip", "-n", node, "addr", "add", nodeAddr+"/24", "dev", "up0")
	run("ip", "-n", inet, "addr", "add", inetAddr+"/24", "dev", "wan0")
	for _, c := range [][]string{{node, "up0"}, {node, "lo"}, {inet, "wan0"}, {inet, "lo"}} {
		run("ip", "-n", c[0], "link", "set", c[1], "up")
	}
	w := &benchWorld{}
	var err error
	if w.inetNS, err = netns.GetFromName(inet); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.inetNS.Close() })
	cfg.NetNS = "/run/netns/" + node
	cfg.Uplink = "up0"
	if w.net, err = Open(cfg); err != nil {
		b.Fatalf("Open: %v", err)
	}
	b.Cleanup(func() {
		w.net.Close()
		if err := Cleanup(cfg); err != nil {
			b.Errorf("Cleanup: %v", err)
		}
	})
	return w
}

// backlog is the bytes queued in the uplink's qdisc.
func (w *benchWorld) backlog() uint32 {
	qs, err := w.net.h.QdiscList(w.net.up)
	if err != nil || len(qs) == 0 || qs[0].Attrs().Statistics == nil || qs[0].Attrs().Statistics.Queue == nil {
		return 0
	}
	return qs[0].Attrs().Statistics.Queue.Backlog
}

// startSliver starts a fake sliver, as topo.sliver does, and returns the
// pid of its process inside the new namespaces, which that process tells.
func startSliver(tb testing.TB) int {
	tb.Helper()
	cmd := exec.Command("unshare", "--net", "--user", "--map-root-user", "--fork", "--kill-child", "sh", "-c", "echo $$; exec sleep 3600")
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		tb.Fatalf("the fake sliver did not start: %v", err)
	}
	return pid
}

// percentile is the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
