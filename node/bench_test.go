//go:build linux

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/sliver"
)

// benchLevels are the live-sliver counts the redemption benchmark measures
// at: PLAB_BENCH_LEVELS (default 1,100,1000).
func benchLevels(b *testing.B) []int {
	v := os.Getenv("PLAB_BENCH_LEVELS")
	if v == "" {
		v = "1,100,1000"
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("PLAB_BENCH_LEVELS=%q: want counts such as 1,100,1000", v)
		}
		out = append(out, n)
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkRedeem measures redemption latency (ticket in, lease out,
// sliver running) over the node API at 1, 100 and 1,000 live slivers. Each
// sample redeems a fresh ticket and then deletes the sliver, so the level
// holds. The node runs in its own process, as plab node serve does: the
// cost of starting processes grows with the size of the process that
// starts them, and this one holds PLC and the clients too. Run: make bench,
// or go test -run '^$' -bench Redeem -benchtime 50x ./node
func BenchmarkRedeem(b *testing.B) {
	levels := benchLevels(b)
	top := slices.Max(levels)
	// Reports every 10 s, as in production: the tests' 1 s would read
	// every sliver's usage each second.
	w := newWorld(b, worldOpts{maxSlivers: top + 16, quiet: true, enrollOnly: true, cfg: Config{MaxSlivers: top + 16, ReportInterval: Duration(DefaultReportInterval)}})
	n := w.node
	logf, err := os.Create(filepath.Join(b.TempDir(), "node.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := startChild(b, n, logf)
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	live := 0
	fill := func(to int) {
		names := make(chan string)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range names {
					if _, err := w.redeem(w.alice, n, w.ticket(w.alice, name, n, api.Resources{})); err != nil {
						b.Errorf("fill: %v", err)
					}
				}
			}()
		}
		for ; live < to; live++ {
			name := fmt.Sprintf("ucb_l%04d", live)
			w.plc.Slice(name, "direct", w.alice, 24*time.Hour)
			names <- name
		}
		close(names)
		wg.Wait()
	}
	w.plc.Slice("ucb_probe", "direct", w.alice, 24*time.Hour)
	for _, level := range levels {
		fill(level - 1)
		b.Run(fmt.Sprintf("live=%d", level), func(b *testing.B) {
			var lat []time.Duration
			c := w.client(w.alice, n)
			for b.Loop() {
				b.StopTimer()
				tk := w.ticket(w.alice, "ucb_probe", n, api.Resources{})
				b.StartTimer()
				start := time.Now()
				if _, err := w.redeem(w.alice, n, tk); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				b.StopTimer()
				if err := c.Do(ctx, "DELETE", "/v1/slivers/ucb_probe", nil, nil); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkConverge measures how long a node takes to host N delegated
// slices bound at PLC while it was down: from the start of its process to
// every sliver running, as seen through the node API. N: PLAB_BENCH_SLICES
// (default 100).
func BenchmarkConverge(b *testing.B) {
	count := 100
	if v, err := strconv.Atoi(os.Getenv("PLAB_BENCH_SLICES")); err == nil && v > 0 {
		count = v
	}
	w := newWorld(b, worldOpts{maxSlivers: count + 16, quiet: true, enrollOnly: true, cfg: Config{MaxSlivers: count + 16, ReportInterval: Duration(DefaultReportInterval)}})
	n := w.node
	logf, err := os.Create(filepath.Join(b.TempDir(), "node.log"))
	if err != nil {
		b.Fatal(err)
	}
	c := w.client(w.alice, n)
	running := func() int {
		var list api.List[api.Sliver]
		if err := c.Do(ctx, "GET", "/v1/slivers", nil, &list); err != nil {
			return 0
		}
		r := 0
		for _, s := range list.Items {
			if s.State == string(sliver.Running) {
				r++
			}
		}
		return r
	}
	for i := range count {
		name := fmt.Sprintf("ucb_d%04d", i)
		w.plc.Slice(name, "delegated", w.alice, 24*time.Hour)
		w.plc.Do(w.plc.Admin, "PUT", "/v1/slices/"+name+"/nodes/"+n.host, nil, nil)
	}
	for b.Loop() {
		start := time.Now()
		cmd := startChild(b, n, logf)
		tick := time.NewTicker(20 * time.Millisecond)
		for running() < count {
			<-tick.C
		}
		tick.Stop()
		took := time.Since(start)
		b.ReportMetric(took.Seconds(), "converge-s")
		b.ReportMetric(float64(count)/took.Seconds(), "slivers/s")
		b.ReportMetric(0, "ns/op")
		b.StopTimer()
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		b.StartTimer()
	}
}
