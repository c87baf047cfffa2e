//go:build linux

// Package monitor is a node's resource monitor: it samples the host (load,
// CPU, memory, disk) and its slivers' usage, reports them to PLC every
// interval, and serves them as Prometheus metrics.
//
// The node manager supplies the slivers' usage and its capacity through
// Source, and the way to PLC through Config.Send; the monitor knows nothing
// of either's internals.
package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// DefaultInterval is how often Run reports when Config.Interval is zero.
const DefaultInterval = 10 * time.Second

// Log attribute keys.
const (
	logKeyErr = "err"
)

// SliverUsage is one sliver's usage as the node reports it.
type SliverUsage struct {
	// Slice names the slice the sliver belongs to.
	Slice string
	// Stats is what the sliver backend measures.
	Stats sliver.Stats
	// TxBytes and RxBytes count the bytes the sliver sent and received.
	TxBytes, RxBytes int64
}

// Source is what the monitor reads from the node manager.
type Source interface {
	// Usage lists the usage of every sliver on the node.
	Usage(ctx context.Context) ([]SliverUsage, error)
	// Capacity is what slivers may use in total.
	Capacity() api.Resources
	// Free is the part of Capacity not yet promised to a sliver.
	Free() api.Resources
}

// Config configures a Monitor.
type Config struct {
	// Dir is the node's state directory; the disk figures describe its
	// filesystem. Empty leaves them out.
	Dir string
	// Source supplies the slivers' usage and the node's capacity. Required.
	Source Source
	// Send posts a report to PLC. Nil means reports are collected (see
	// Monitor.LastReport) but go nowhere.
	Send func(ctx context.Context, r api.Report) error
	// Interval is how often Run reports: at least a second; zero means
	// DefaultInterval.
	Interval time.Duration
	// Registry is where the metrics are registered; nil means a new one.
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives failed reports and scrapes; nil discards them.
	Log *slog.Logger
}

// Monitor collects a node's usage, reports it to PLC and exports it as
// metrics. Its methods are safe for concurrent use.
type Monitor struct {
	source   Source
	send     func(ctx context.Context, r api.Report) error
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	sampler  *Sampler // Collect's; the metrics keep their own
	trigger  chan struct{}

	registry   *prometheus.Registry
	reports    *prometheus.CounterVec
	lastReport prometheus.Gauge

	mu      sync.Mutex
	last    api.Report // the last report sent
	lastAt  time.Time  // when it was sent
	lastErr error      // the last attempt's error; nil when it succeeded
}

// New checks cfg and returns a Monitor with its metrics registered.
func New(cfg Config) (*Monitor, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("monitor: no Source of sliver usage: %w", errdefs.ErrInvalid)
	}
	switch {
	case cfg.Interval == 0:
		cfg.Interval = DefaultInterval
	case cfg.Interval < time.Second:
		return nil, fmt.Errorf("monitor: report interval %v is under a second: %w", cfg.Interval, errdefs.ErrInvalid)
	}
	if cfg.Send == nil {
		cfg.Send = func(context.Context, api.Report) error { return nil }
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{
		source:   cfg.Source,
		send:     cfg.Send,
		interval: cfg.Interval,
		now:      cfg.Now,
		log:      cfg.Log,
		sampler:  &Sampler{Dir: cfg.Dir},
		trigger:  make(chan struct{}, 1),
		registry: cfg.Registry,
	}
	if err := m.register(cfg.Dir); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return m, nil
}

// Collect builds a report of the node's load, capacity and slices' usage.
func (m *Monitor) Collect(ctx context.Context) (api.Report, error) {
	host, err := m.sampler.Sample()
	if err != nil {
		return api.Report{}, fmt.Errorf("collect report: %w", err)
	}
	usage, err := m.source.Usage(ctx)
	if err != nil {
		return api.Report{}, fmt.Errorf("collect report: %w", err)
	}
	r := api.Report{
		Load:        host.Load1,
		CPUs:        host.CPUs,
		Capacity:    m.source.Capacity(),
		Free:        m.source.Free(),
		Slivers:     len(usage),
		Slices:      make(map[string]api.SliceUsage),
		CollectedAt: m.now(),
	}
	for name, u := range bySlice(usage) {
		r.Slices[name] = api.SliceUsage{
			CPUMillis:   u.Stats.CPUTime.Milliseconds(),
			MemoryBytes: u.Stats.MemoryBytes,
			DiskBytes:   u.Stats.DiskBytes,
			TxBytes:     u.TxBytes,
			RxBytes:     u.RxBytes,
		}
	}
	return r, nil
}

// bySlice sums the usage of each slice's slivers (a node hosts one sliver
// per slice, but a second one must not make a duplicate metric).
func bySlice(usage []SliverUsage) map[string]SliverUsage {
	out := make(map[string]SliverUsage, len(usage))
	for _, u := range usage {
		s := out[u.Slice]
		s.Slice = u.Slice
		s.Stats.CPUTime += u.Stats.CPUTime
		s.Stats.MemoryBytes += u.Stats.MemoryBytes
		s.Stats.OOMKills += u.Stats.OOMKills
		s.Stats.Processes += u.Stats.Processes
		s.Stats.DiskBytes += u.Stats.DiskBytes
		s.TxBytes += u.TxBytes
		s.RxBytes += u.RxBytes
		out[u.Slice] = s
	}
	return out
}

// Run reports every interval, and at once after Trigger, until ctx ends;
// then it returns ctx.Err(). A report that cannot be collected or sent is
// logged and counted, and the next interval tries again.
func (m *Monitor) Run(ctx context.Context) error {
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-m.trigger:
			// The next periodic report is an interval after this one.
			tick.Reset(m.interval)
		}
		m.report(ctx)
	}
}

// report collects and sends one report, and records the outcome.
func (m *Monitor) report(ctx context.Context) {
	r, err := m.Collect(ctx)
	if err == nil {
		if err = m.send(ctx, r); err != nil {
			err = fmt.Errorf("send report: %w", err)
		}
	}
	if err != nil && ctx.Err() != nil {
		return // cut short by shutdown: not a failure
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = err
	if err != nil {
		m.reports.WithLabelValues("error").Inc()
		m.log.Warn("resource report failed", slog.Any(logKeyErr, err))
		return
	}
	m.last, m.lastAt = r, m.now()
	m.reports.WithLabelValues("ok").Inc()
	m.lastReport.Set(float64(m.lastAt.UnixNano()) / 1e9)
}

// Trigger asks Run to report now. It does not block; triggers made before
// Run gets to them count as one. Call it before Run for a report at start.
func (m *Monitor) Trigger() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// LastReport returns the last report Run sent and when, and the error of
// Run's last attempt (nil when that one succeeded). Before any success the
// report and time are zero.
func (m *Monitor) LastReport() (api.Report, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.lastAt, m.lastErr
}
