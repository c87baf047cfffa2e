//go:build linux

package svcmgr

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/node/nodetest"
	"github.com/plab/plab/plc/plctest"
)

// BenchmarkSlice measures, on a testbed of real nodes in this process
// (PLAB_BENCH_NODES, default 10,50,100), the wall time of creating a slice
// across all of them (tickets, parallel redemption, every sliver running),
// of running `true` in every sliver with plab exec's fan-out (OpenSSH to
// each node's gateway), and of deleting the slice.
func BenchmarkSlice(b *testing.B) {
	levels := os.Getenv("PLAB_BENCH_NODES")
	if levels == "" {
		levels = "10,50,100"
	}
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("PLAB_BENCH_NODES=%q: want counts such as 10,50,100", levels)
		}
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchSlice(b, n) })
	}
}

func benchSlice(b *testing.B, n int) {
	p := plctest.Start(b)
	alice := plctest.NewUser(b, "alice@ucb.test")
	p.Site("ucb")
	p.Person(alice, "ucb", "user", "pi")
	setup := time.Now()
	var nodes []*nodetest.Node
	for i := range n {
		nodes = append(nodes, nodetest.Start(b, p, fmt.Sprintf("n%d.ucb.test", i+1), "ucb", nodetest.Options{MaxSlivers: 4}))
	}
	b.Logf("%d nodes up in %.1fs", n, time.Since(setup).Seconds())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	dir := b.TempDir()
	ctx := context.Background()
	if _, err := Login(ctx, dir, LoginOptions{PLC: p.URL, Identity: alice.KeyFile, CAFingerprint: p.CAFingerprint}); err != nil {
		b.Fatal(err)
	}
	s, err := Open(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var create, exec, del time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("ucb_bench%d", i)
		t0 := time.Now()
		res, err := s.Create(ctx, name, CreateOptions{Select: Selection{Count: n}})
		if err != nil || len(res.OK) != n {
			b.Fatalf("create across %d nodes: %d up, %v, %v", n, len(res.OK), res.Failed, err)
		}
		create += time.Since(t0)
		t0 = time.Now()
		out, err := s.Exec(ctx, name, []string{"true"}, ExecOptions{Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range out {
			if r.Code != 0 {
				b.Fatalf("exec true on %s = %d %s", r.Node, r.Code, r.Error)
			}
		}
		exec += time.Since(t0)
		t0 = time.Now()
		if res, err := s.Delete(ctx, name, Options{}); err != nil || len(res.Failed) > 0 {
			b.Fatalf("delete: %v %v", res.Failed, err)
		}
		del += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(create.Seconds()/float64(b.N), "create-s")
	b.ReportMetric(exec.Seconds()/float64(b.N), "exec-s")
	b.ReportMetric(del.Seconds()/float64(b.N), "delete-s")
	b.ReportMetric(float64(ms.HeapAlloc)/float64(n)/(1<<20), "heap-MiB/node")
	b.ReportMetric(0, "ns/op")
	_ = nodes
}
