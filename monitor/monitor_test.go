//go:build linux

package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// fakeSource stands in for the node manager, which is tested with its real
// slivers elsewhere.
type fakeSource struct {
	mu       sync.Mutex
	usage    []SliverUsage
	err      error
	capacity api.Resources
	free     api.Resources
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) Usage(context.Context) ([]SliverUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usage, f.err
}

func (f *fakeSource) Capacity() api.Resources { return f.capacity }
func (f *fakeSource) Free() api.Resources     { return f.free }

func (f *fakeSource) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// twoSlices is a node with two slices, one of them with two slivers (which
// the monitor adds up).
func twoSlices() *fakeSource {
	return &fakeSource{
		usage: []SliverUsage{
			{Slice: "ucb_cdn", Stats: sliver.Stats{CPUTime: 1500 * time.Millisecond, MemoryBytes: 1 << 20, OOMKills: 2, Processes: 3, DiskBytes: 4096}, TxBytes: 100, RxBytes: 200},
			{Slice: "mit_dns", Stats: sliver.Stats{CPUTime: time.Second, MemoryBytes: 1000, Processes: 1, DiskBytes: 10}, TxBytes: 1, RxBytes: 2},
			{Slice: "mit_dns", Stats: sliver.Stats{CPUTime: time.Second, MemoryBytes: 1000, OOMKills: 1, Processes: 1, DiskBytes: 10}, TxBytes: 1, RxBytes: 2},
		},
		capacity: api.Resources{CPUShares: 1024, MemoryBytes: 8 << 30, DiskBytes: 100 << 30},
		free:     api.Resources{CPUShares: 512, MemoryBytes: 4 << 30, DiskBytes: 60 << 30},
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func newMonitor(t *testing.T, cfg Config) *Monitor {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return m
}

func TestNew(t *testing.T) {
	src := &fakeSource{}
	for _, tc := range []struct {
		name         string
		cfg          Config
		wantErr      error
		wantInterval time.Duration
	}{
		{name: "defaults", cfg: Config{Source: src}, wantInterval: DefaultInterval},
		{name: "interval", cfg: Config{Source: src, Interval: time.Minute}, wantInterval: time.Minute},
		{name: "one second", cfg: Config{Source: src, Interval: time.Second}, wantInterval: time.Second},
		{name: "no source", cfg: Config{}, wantErr: errdefs.ErrInvalid},
		{name: "interval too short", cfg: Config{Source: src, Interval: 999 * time.Millisecond}, wantErr: errdefs.ErrInvalid},
		{name: "negative interval", cfg: Config{Source: src, Interval: -time.Second}, wantErr: errdefs.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("New(%+v) = %v, want %v", tc.cfg, err, tc.wantErr)
				}
				t.Logf("New(%+v) = %v", tc.cfg, err)
				return
			}
			if err != nil {
				t.Fatalf("New(%+v) = %v", tc.cfg, err)
			}
			if m.interval != tc.wantInterval {
				t.Errorf("New(%+v).interval = %v, want %v", tc.cfg, m.interval, tc.wantInterval)
			}
			if m.Registry() == nil {
				t.Errorf("New(%+v).Registry() = nil", tc.cfg)
			}
		})
	}

	t.Run("shared registry", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		newMonitor(t, Config{Source: src, Registry: reg})
		if _, err := New(Config{Source: src, Registry: reg}); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("second New() on one registry = %v, want ErrConflict", err)
		}
	})
}

func TestCollect(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	src := twoSlices()
	m := newMonitor(t, Config{Source: src, Now: func() time.Time { return now }})

	got, err := m.Collect(t.Context())
	if err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	if got.Load < 0 {
		t.Errorf("Collect().Load = %v, want >= 0", got.Load)
	}
	want := api.Report{
		Load:     got.Load, // the host's: checked above
		CPUs:     runtime.NumCPU(),
		Capacity: src.capacity,
		Free:     src.free,
		Slivers:  3,
		Slices: map[string]api.SliceUsage{
			"ucb_cdn": {CPUMillis: 1500, MemoryBytes: 1 << 20, DiskBytes: 4096, TxBytes: 100, RxBytes: 200},
			"mit_dns": {CPUMillis: 2000, MemoryBytes: 2000, DiskBytes: 20, TxBytes: 2, RxBytes: 4},
		},
		CollectedAt: now,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Collect() mismatch (-want +got):\n%s", diff)
	}

	src.setErr(fmt.Errorf("list slivers: %w", errdefs.ErrUnavailable))
	if _, err := m.Collect(t.Context()); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Collect() with a failing Source = %v, want its error", err)
	}
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Second
		start := time.Now()
		errPLC := errors.New("PLC is down")
		var (
			mu       sync.Mutex
			attempts []time.Duration // CollectedAt of each report Send saw, after start
			fail     = true          // the first Send fails
		)
		send := func(_ context.Context, r api.Report) error {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, r.CollectedAt.Sub(start))
			if fail {
				fail = false
				return errPLC
			}
			return nil
		}
		m := newMonitor(t, Config{Source: twoSlices(), Send: send, Interval: interval})

		stop := startRun(t, m)

		// step advances the fake clock by d and checks that the reports
		// collected at the offsets more were sent in the meantime.
		var want []time.Duration
		step := func(d time.Duration, more ...time.Duration) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			want = append(want, more...)
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(want, attempts); diff != "" {
				t.Fatalf("at %v, reports (-want +got):\n%s", time.Since(start), diff)
			}
		}

		step(interval - time.Second) // none before the first interval
		step(time.Second, 10*time.Second)
		if _, _, err := m.LastReport(); !errors.Is(err, errPLC) {
			t.Errorf("LastReport() after a failed Send: error %v, want %v", err, errPLC)
		}
		step(interval, 20*time.Second)
		step(3*interval, 30*time.Second, 40*time.Second, 50*time.Second)

		// Trigger reports at once; the next periodic report is an interval
		// after it.
		step(5 * time.Second)
		m.Trigger()
		step(0, 55*time.Second)
		step(interval - time.Second)
		step(time.Second, 65*time.Second)

		if got := testutil.ToFloat64(m.reports.WithLabelValues("error")); got != 1 {
			t.Errorf("plab_node_reports_total{result=\"error\"} = %v, want 1", got)
		}
		if got := testutil.ToFloat64(m.reports.WithLabelValues("ok")); got != 6 {
			t.Errorf("plab_node_reports_total{result=\"ok\"} = %v, want 6", got)
		}
		last, at, err := m.LastReport()
		if err != nil || !at.Equal(start.Add(65*time.Second)) || !last.CollectedAt.Equal(at) || len(last.Slices) != 2 {
			t.Errorf("LastReport() = %+v, %v, %v; want the report of %v, no error", last, at, err, start.Add(65*time.Second))
		}
		if got, want := testutil.ToFloat64(m.lastReport), float64(at.Unix()); got != want {
			t.Errorf("plab_node_last_report_timestamp_seconds = %v, want %v", got, want)
		}

		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run() after cancel = %v, want context.Canceled", err)
		}
	})
}

func TestRunCollectFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := twoSlices()
		src.setErr(fmt.Errorf("list slivers: %w", errdefs.ErrUnavailable))
		m := newMonitor(t, Config{Source: src}) // no Send: reports go nowhere
		stop := startRun(t, m)

		m.Trigger()
		synctest.Wait()
		if _, at, err := m.LastReport(); !errors.Is(err, errdefs.ErrUnavailable) || !at.IsZero() {
			t.Errorf("LastReport() after a failed Collect = %v, %v; want no report and its error", at, err)
		}
		src.setErr(nil)
		time.Sleep(DefaultInterval)
		synctest.Wait()
		if r, at, err := m.LastReport(); err != nil || !at.Equal(time.Now()) || r.Slivers != 3 {
			t.Errorf("LastReport() = %+v, %v, %v; want this interval's report", r, at, err)
		}
		stop()
	})
}

func TestTriggerCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		sends := 0
		send := func(context.Context, api.Report) error {
			mu.Lock()
			defer mu.Unlock()
			sends++
			return nil
		}
		m := newMonitor(t, Config{Source: twoSlices(), Send: send})
		for range 3 {
			m.Trigger() // before Run: one report at start
		}
		stop := startRun(t, m)
		synctest.Wait()
		mu.Lock()
		if sends != 1 {
			t.Errorf("after 3 Triggers before Run: %d reports, want 1", sends)
		}
		mu.Unlock()
		stop()
	})
}

// startRun runs m in the background until the test ends or the returned
// function is called; that function returns Run's error.
func startRun(t *testing.T, m *Monitor) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func TestHandler(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	src := twoSlices()
	m := newMonitor(t, Config{Source: src, Now: func() time.Time { return now }})
	m.report(t.Context())

	got := scrape(t, m.Handler())
	for series, want := range map[string]float64{
		`plab_node_cpus`:                                 float64(runtime.NumCPU()),
		`plab_node_slivers`:                              3,
		`plab_node_reports_total{result="ok"}`:           1,
		`plab_node_reports_total{result="error"}`:        0,
		`plab_node_last_report_timestamp_seconds`:        float64(now.Unix()),
		`plab_sliver_cpu_seconds_total{slice="ucb_cdn"}`: 1.5,
		`plab_sliver_memory_bytes{slice="ucb_cdn"}`:      1 << 20,
		`plab_sliver_disk_bytes{slice="ucb_cdn"}`:        4096,
		`plab_sliver_processes{slice="ucb_cdn"}`:         3,
		`plab_sliver_oom_kills_total{slice="ucb_cdn"}`:   2,
		`plab_sliver_tx_bytes_total{slice="ucb_cdn"}`:    100,
		`plab_sliver_rx_bytes_total{slice="ucb_cdn"}`:    200,
		`plab_sliver_cpu_seconds_total{slice="mit_dns"}`: 2,
		`plab_sliver_memory_bytes{slice="mit_dns"}`:      2000,
		`plab_sliver_disk_bytes{slice="mit_dns"}`:        20,
		`plab_sliver_processes{slice="mit_dns"}`:         2,
		`plab_sliver_oom_kills_total{slice="mit_dns"}`:   1,
		`plab_sliver_tx_bytes_total{slice="mit_dns"}`:    2,
		`plab_sliver_rx_bytes_total{slice="mit_dns"}`:    4,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("scrape: %s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	// The host's own figures vary; they must be there and make sense.
	for _, c := range []struct {
		series string
		ok     func(float64) bool
	}{
		{"plab_node_load1", func(v float64) bool { return v >= 0 }},
		{"plab_node_cpu_busy_ratio", func(v float64) bool { return v >= 0 && v <= 1 }},
		{"plab_node_memory_total_bytes", func(v float64) bool { return v > 0 }},
		{"plab_node_memory_available_bytes", func(v float64) bool { return v > 0 && v <= got["plab_node_memory_total_bytes"] }},
		{"plab_node_disk_total_bytes", func(v float64) bool { return v > 0 }},
		{"plab_node_disk_free_bytes", func(v float64) bool { return v > 0 && v <= got["plab_node_disk_total_bytes"] }},
		{"go_goroutines", func(v float64) bool { return v > 0 }},
		{"process_resident_memory_bytes", func(v float64) bool { return v > 0 }},
	} {
		if v, present := got[c.series]; !present || !c.ok(v) {
			t.Errorf("scrape: %s = %v (present %v), want a sane value", c.series, v, present)
		}
	}

	// A Source that fails leaves the slivers out, not the host.
	src.setErr(fmt.Errorf("list slivers: %w", errdefs.ErrUnavailable))
	got = scrape(t, m.Handler())
	if _, ok := got["plab_node_slivers"]; ok {
		t.Errorf("scrape with a failing Source: plab_node_slivers present, want it left out")
	}
	if _, ok := got[`plab_sliver_cpu_seconds_total{slice="ucb_cdn"}`]; ok {
		t.Errorf("scrape with a failing Source: per-slice series present, want them left out")
	}
	if _, ok := got["plab_node_memory_total_bytes"]; !ok {
		t.Errorf("scrape with a failing Source: plab_node_memory_total_bytes missing, want the host's figures")
	}
}

// scrape GETs /metrics from h and returns each series (name{label="value"},
// one label at most) with its value.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name
			if l := m.GetLabel(); len(l) == 1 {
				key = fmt.Sprintf("%s{%s=%q}", name, l[0].GetName(), l[0].GetValue())
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
