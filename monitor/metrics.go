//go:build linux

package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plab/plab/errdefs"
)

// scrapeTimeout bounds the Source.Usage call a scrape makes. A Prometheus
// Collector gets no context, so the scrape makes its own.
const scrapeTimeout = 5 * time.Second

// Handler serves the Registry's metrics in the Prometheus exposition
// format. A figure that cannot be read is logged and left out; the rest are
// served.
func (m *Monitor) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Registry is the registry the metrics are registered in.
func (m *Monitor) Registry() *prometheus.Registry {
	return m.registry
}

// register creates the report counters and registers them, the scrape-time
// collector and the Go and process collectors.
func (m *Monitor) register(dir string) error {
	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plab_node_reports_total",
		Help: "Resource reports to PLC, by result (ok or error).",
	}, []string{"result"})
	m.lastReport = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "plab_node_last_report_timestamp_seconds",
		Help: "When the last resource report reached PLC, in seconds since the Unix epoch.",
	})
	// Both results exist from the start, so a rate over them is defined.
	m.reports.WithLabelValues("ok")
	m.reports.WithLabelValues("error")
	own := []prometheus.Collector{m.reports, m.lastReport, newCollector(m.source, dir)}
	for i, c := range own {
		if err := m.registry.Register(c); err != nil {
			for _, done := range own[:i] { // leave the registry as it was
				m.registry.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w: %w", err, errdefs.ErrConflict)
		}
	}
	// A registry shared with other code may have these already.
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := m.registry.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return fmt.Errorf("register metrics: %w: %w", err, errdefs.ErrConflict)
		}
	}
	return nil
}

// collector samples the host and the slivers when scraped. It has its own
// Sampler, so the CPU busy ratio it exports covers the time since the last
// scrape, whatever Run does.
type collector struct {
	source  Source
	sampler *Sampler
	hasDisk bool

	load1, cpus, cpuBusy, memTotal, memAvailable, diskTotal, diskFree, slivers *prometheus.Desc

	cpuSeconds, memory, disk, processes, oomKills, tx, rx *prometheus.Desc
}

func newCollector(source Source, dir string) *collector {
	node := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, nil, nil)
	}
	perSlice := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"slice"}, nil)
	}
	return &collector{
		source:  source,
		sampler: &Sampler{Dir: dir},
		hasDisk: dir != "",

		load1:        node("plab_node_load1", "One-minute load average."),
		cpus:         node("plab_node_cpus", "Logical CPUs."),
		cpuBusy:      node("plab_node_cpu_busy_ratio", "Fraction of all CPUs' time spent busy since the previous scrape."),
		memTotal:     node("plab_node_memory_total_bytes", "Memory installed (MemTotal)."),
		memAvailable: node("plab_node_memory_available_bytes", "Memory available without swapping (MemAvailable)."),
		diskTotal:    node("plab_node_disk_total_bytes", "Size of the filesystem holding the node's state directory."),
		diskFree:     node("plab_node_disk_free_bytes", "Space on that filesystem available to unprivileged users."),
		slivers:      node("plab_node_slivers", "Slivers on the node."),

		cpuSeconds: perSlice("plab_sliver_cpu_seconds_total", "CPU time used by the slice's sliver."),
		memory:     perSlice("plab_sliver_memory_bytes", "Memory charged to the slice's sliver."),
		disk:       perSlice("plab_sliver_disk_bytes", "Disk space the slice's sliver uses."),
		processes:  perSlice("plab_sliver_processes", "Live processes in the slice's sliver."),
		oomKills:   perSlice("plab_sliver_oom_kills_total", "Processes of the slice's sliver killed for exceeding its memory limit."),
		tx:         perSlice("plab_sliver_tx_bytes_total", "Bytes sent by the slice's sliver."),
		rx:         perSlice("plab_sliver_rx_bytes_total", "Bytes received by the slice's sliver."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.load1, c.cpus, c.cpuBusy, c.memTotal, c.memAvailable, c.diskTotal, c.diskFree, c.slivers,
		c.cpuSeconds, c.memory, c.disk, c.processes, c.oomKills, c.tx, c.rx,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. What cannot be read is reported
// as an invalid metric, which the handler logs and leaves out.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil { // a slice name that is not UTF-8
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) { send(d, prometheus.GaugeValue, v, labels...) }
	counter := func(d *prometheus.Desc, v float64, labels ...string) { send(d, prometheus.CounterValue, v, labels...) }

	if h, err := c.sampler.Sample(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.load1, err)
	} else {
		gauge(c.load1, h.Load1)
		gauge(c.cpus, float64(h.CPUs))
		gauge(c.cpuBusy, h.CPUBusy)
		gauge(c.memTotal, float64(h.MemoryTotal))
		gauge(c.memAvailable, float64(h.MemoryAvailable))
		if c.hasDisk {
			gauge(c.diskTotal, float64(h.DiskTotal))
			gauge(c.diskFree, float64(h.DiskFree))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	usage, err := c.source.Usage(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.slivers, fmt.Errorf("sliver usage: %w", err))
		return
	}
	gauge(c.slivers, float64(len(usage)))
	for name, u := range bySlice(usage) {
		counter(c.cpuSeconds, u.Stats.CPUTime.Seconds(), name)
		gauge(c.memory, float64(u.Stats.MemoryBytes), name)
		gauge(c.disk, float64(u.Stats.DiskBytes), name)
		gauge(c.processes, float64(u.Stats.Processes), name)
		counter(c.oomKills, float64(u.Stats.OOMKills), name)
		counter(c.tx, float64(u.TxBytes), name)
		counter(c.rx, float64(u.RxBytes), name)
	}
}
