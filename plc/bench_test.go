package plc

// Benchmarks of PLC's busy paths, each on SQLite and on PostgreSQL (fsync
// on, so the figures are honest): tickets issued, node reports ingested,
// and list endpoints over a registry the size of a large testbed. Big
// data sets go straight into the store, outside the timer, once per back
// end; requests run under b.Loop, so the benchmark function runs once and
// -benchtime=1x is a quick smoke test while -benchtime=5s gives figures:
//
//	go test -run '^$' -bench 'Tickets|Reports|List' -benchtime 5s ./plc
//
// Besides ns/op, each reports its rate (tickets/s, reports/s, req/s) over
// wall time and the p50 and p99 latency of a request in milliseconds.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/internal/pgtest"
	"github.com/plab/plab/store"
)

// benchWorkers is how many clients send at once in the throughput
// benchmarks.
const benchWorkers = 8

// benchBackends runs fn as the sub-benchmarks "sqlite" and "postgres",
// with the store's DSN ("" for SQLite: plc.db in the PLC directory).
func benchBackends(b *testing.B, fn func(b *testing.B, dsn string)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, "") })
	b.Run("postgres", func(b *testing.B) {
		srv := pgtest.Start(b, pgtest.Options{NoFsync: false})
		fn(b, srv.NewDatabase(b))
	})
}

// benchSize is a registry to fill the store with.
type benchSize struct {
	sites, nodes, slices, tickets int
	reports                       bool // a report for every node
}

// benchData is what benchFill made.
type benchData struct {
	nodes  []store.Node
	slices []store.Slice
}

var benchRegions = []string{"eu", "us", "asia", "sa", "oc"}

// benchFill writes sz straight into w's store, far faster than the API
// would: sites site000…, nodes spread over them with a region tag, direct
// slices, and tickets (slivers) for random nodes, in transactions of 1000
// nodes or 10,000 rows. Every ticket carries the text of one real signed
// ticket.
func benchFill(tb testing.TB, w *world, sz benchSize) *benchData {
	tb.Helper()
	ctx := context.Background()
	st := w.plc.Store()
	now := w.now.UTC().Truncate(time.Second)
	var d benchData
	sites := make([]store.Site, sz.sites)
	err := st.Update(ctx, func(tx *store.Tx) error {
		for i := range sites {
			sites[i] = store.Site{LoginBase: fmt.Sprintf("site%03d", i), Name: fmt.Sprintf("Site %d", i), MaxSlices: 1000, MaxSlivers: 1000000, Enabled: true, Created: now}
			if err := tx.CreateSite(ctx, &sites[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	capacity, _ := json.Marshal(api.Resources{CPUReserve: 8000, MemoryBytes: 32 << 30, DiskBytes: 1 << 40, NetMaxRate: 1e9})
	report, _ := json.Marshal(benchReport())
	d.nodes = make([]store.Node, sz.nodes)
	for lo := 0; lo < sz.nodes; lo += 1000 {
		err := st.Update(ctx, func(tx *store.Tx) error {
			for i := lo; i < min(lo+1000, sz.nodes); i++ {
				n := &d.nodes[i]
				*n = store.Node{
					Hostname: fmt.Sprintf("node%05d.site%03d.test", i, i%sz.sites), SiteID: sites[i%sz.sites].ID,
					Addresses: []string{fmt.Sprintf("198.18.%d.%d", i/256, i%256)}, BootState: api.BootStateBoot,
					Tags: map[string]string{"region": benchRegions[i%len(benchRegions)]}, Capacity: capacity, Created: now,
				}
				if err := tx.CreateNode(ctx, n); err != nil {
					return err
				}
				if sz.reports {
					if err := tx.PutReport(ctx, n.ID, now, report); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	d.slices = make([]store.Slice, sz.slices)
	err = st.Update(ctx, func(tx *store.Tx) error {
		for i := range d.slices {
			site := sites[i%sz.sites]
			d.slices[i] = store.Slice{Name: fmt.Sprintf("%s_slice%04d", site.LoginBase, i), SiteID: site.ID, Description: "a benchmark slice",
				Instantiation: api.InstantiationDirect, Enabled: true, MaxNodes: 1000, Expires: now.Add(14 * 24 * time.Hour), Created: now}
			if err := tx.CreateSlice(ctx, &d.slices[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if sz.tickets == 0 {
		return &d
	}
	fp := w.admin.u.id.Fingerprint()
	doc, _, err := w.plc.signTicket(&d.slices[0], &d.nodes[0], fp, api.Resources{CPUShares: 1, MemoryBytes: 256 << 20}, now)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for lo := 0; lo < sz.tickets; lo += 10000 {
		err := st.Update(ctx, func(tx *store.Tx) error {
			for i := lo; i < min(lo+10000, sz.tickets); i++ {
				s := &d.slices[i%len(d.slices)]
				rec := &store.TicketRecord{ID: ticket.NewID(), Slice: s.Name, NodeID: d.nodes[rng.IntN(len(d.nodes))].ID, Principal: string(fp),
					Doc: doc, NotBefore: now, NotAfter: s.Expires, Created: now}
				if err := tx.InsertTicket(ctx, rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return &d
}

// benchReport is a node's report: its resources and ten slices' usage.
func benchReport() api.Report {
	r := api.Report{Load: 1.5, CPUs: 8, Slivers: 10, Slices: map[string]api.SliceUsage{},
		Capacity: api.Resources{CPUReserve: 8000, MemoryBytes: 32 << 30, DiskBytes: 1 << 40, NetMaxRate: 1e9},
		Free:     api.Resources{CPUReserve: 6000, MemoryBytes: 20 << 30, DiskBytes: 1 << 39, NetMaxRate: 8e8},
	}
	for i := range 10 {
		r.Slices[fmt.Sprintf("site%03d_slice%04d", i, i)] = api.SliceUsage{CPUMillis: 120000, MemoryBytes: 1 << 30, DiskBytes: 5 << 30, TxBytes: 1 << 28}
	}
	return r
}

// benchConcurrent calls op once per b.Loop iteration from workers
// goroutines at once (worker i calls op(i)), then reports the calls per
// second of wall time in unit, their p50 and p99 latency, and how long
// the data set took to build (setup-s). A failed call fails the
// benchmark at the end, with the figures it reached, for a server that
// fails under load has no throughput worth printing.
func benchConcurrent(b *testing.B, setup time.Duration, workers int, unit string, op func(worker int) error) {
	work := make(chan struct{})
	lat := make([][]time.Duration, workers)
	var failures atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for range work {
				t0 := time.Now()
				err := op(i)
				lat[i] = append(lat[i], time.Since(t0))
				if err != nil {
					failures.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	start := time.Now()
	for b.Loop() {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	rate, p50, p99 := float64(len(all))/wall.Seconds(), percentileMS(all, 0.50), percentileMS(all, 0.99)
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed; the first: %v\n(%.0f %s, p50 %.2f ms, p99 %.2f ms, setup %.1f s)",
			n, len(all), firstErr, rate, unit, p50, p99, setup.Seconds())
	}
	// b.Loop's timer stops before the last calls end: time by the wall.
	b.ReportMetric(float64(wall.Nanoseconds())/float64(len(all)), "ns/op")
	b.ReportMetric(rate, unit)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(setup.Seconds(), "setup-s")
}

// percentileMS is the p-quantile (nearest rank) of sorted, in milliseconds.
func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := max(0, int(math.Ceil(p*float64(len(sorted))))-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkTickets: tickets issued per second through the HTTPS API, one
// node per request, by a member of the slices (a signed request each),
// from 8 clients at once, each on its own slice and connection, for
// random nodes among 100. Each request reads its slice's tickets and
// counts its site's slivers, so the rate falls as tickets pile up: compare
// -benchtime=400x with 8000x.
func BenchmarkTickets(b *testing.B) {
	benchBackends(b, func(b *testing.B, dsn string) {
		t0 := time.Now()
		w := newWorldDSN(b, dsn)
		d := benchFill(b, w, benchSize{sites: 1, nodes: 100})
		u := newUser(b, "user@site000.test")
		w.person(u, "site000", "user")
		clients := make([]*client, benchWorkers)
		paths := make([]string, benchWorkers)
		for i := range clients {
			name := fmt.Sprintf("site000_bench%d", i)
			w.admin.do(b, "POST", "/v1/slices", api.Slice{Name: name, MaxNodes: 100000}, nil)
			w.admin.do(b, "PUT", "/v1/slices/"+name+"/members/"+u.email, nil, nil)
			clients[i], paths[i] = w.client(u), "/v1/slices/"+name+"/tickets"
		}
		setup := time.Since(t0)
		res := api.Resources{CPUShares: 1, MemoryBytes: 256 << 20, Ports: []string{"tcp/8080"}}
		benchConcurrent(b, setup, benchWorkers, "tickets/s", func(i int) error {
			var out api.Tickets
			in := api.TicketRequest{Nodes: []string{d.nodes[rand.IntN(len(d.nodes))].Hostname}, Resources: res}
			if err := clients[i].Do(b.Context(), "POST", paths[i], in, &out); err != nil {
				return err
			}
			if len(out.Tickets) != 1 {
				return fmt.Errorf("%d tickets, want 1", len(out.Tickets))
			}
			return nil
		})
	})
}

// BenchmarkReports: node reports ingested per second with 10,000 nodes
// registered, each with a report already (the steady state). https: 8
// enrolled nodes post their reports over mTLS at once. store: 8
// goroutines replace a report and touch the node, as the handler does,
// for random nodes among the 10,000.
func BenchmarkReports(b *testing.B) {
	benchBackends(b, func(b *testing.B, dsn string) {
		t0 := time.Now()
		w := newWorldDSN(b, dsn)
		d := benchFill(b, w, benchSize{sites: 100, nodes: 10000, reports: true})
		nodes := make([]*api.Client, benchWorkers)
		for i := range nodes {
			nodes[i] = w.nodeClient(enroll(b, w, d.nodes[i].Hostname))
		}
		setup := time.Since(t0)
		report := benchReport()
		b.Run("https", func(b *testing.B) {
			benchConcurrent(b, setup, benchWorkers, "reports/s", func(i int) error {
				return nodes[i].Do(b.Context(), "POST", "/v1/node/report", report, nil)
			})
		})
		b.Run("store", func(b *testing.B) {
			body, err := json.Marshal(report)
			if err != nil {
				b.Fatal(err)
			}
			st := w.plc.Store()
			benchConcurrent(b, setup, benchWorkers, "reports/s", func(int) error {
				n := &d.nodes[rand.IntN(len(d.nodes))]
				now := time.Now()
				return st.Update(b.Context(), func(tx *store.Tx) error {
					if err := tx.PutReport(b.Context(), n.ID, now, body); err != nil {
						return err
					}
					return tx.TouchNode(b.Context(), n.Hostname, now)
				})
			})
		})
	})
}

// BenchmarkList: latency of list endpoints, one request at a time, with
// 10,000 nodes (each with a report), 1,000 slices and 100,000 slivers
// (ticket records). Pages start at a random after=, except the tag
// filter's (a fifth of the nodes are in region eu).
func BenchmarkList(b *testing.B) {
	benchBackends(b, func(b *testing.B, dsn string) {
		t0 := time.Now()
		w := newWorldDSN(b, dsn)
		d := benchFill(b, w, benchSize{sites: 100, nodes: 10000, slices: 1000, tickets: 100000, reports: true})
		setup := time.Since(t0)
		lastNode, lastSlice := d.nodes[len(d.nodes)-1].ID, d.slices[len(d.slices)-1].ID
		for _, e := range []struct {
			name string
			path func() string
		}{
			{"nodes", func() string { return fmt.Sprintf("/v1/nodes?limit=100&after=%d", rand.Int64N(lastNode-100)) }},
			{"nodes-tag", func() string { return "/v1/nodes?tag=region=eu" }},
			{"ads", func() string { return fmt.Sprintf("/v1/ads?limit=100&after=%d", rand.Int64N(lastNode-100)) }},
			{"slices", func() string { return fmt.Sprintf("/v1/slices?limit=100&after=%d", rand.Int64N(lastSlice-100)) }},
		} {
			b.Run(e.name, func(b *testing.B) {
				benchConcurrent(b, setup, 1, "req/s", func(int) error {
					var out api.List[json.RawMessage]
					path := e.path()
					if err := w.admin.Do(b.Context(), "GET", path, nil, &out); err != nil {
						return err
					}
					if len(out.Items) != 100 {
						return fmt.Errorf("GET %s: %d items, want a page of 100", path, len(out.Items))
					}
					return nil
				})
			})
		}
	})
}
