//go:build linux

package monitor

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/plab/plab/errdefs"
)

// Host is the machine's own usage, sampled from /proc and statfs.
type Host struct {
	// Load1 is the one-minute load average (the first field of /proc/loadavg).
	Load1 float64
	// CPUs is runtime.NumCPU().
	CPUs int
	// CPUBusy is the fraction (0..1) of all CPUs' time spent busy since the
	// Sampler's previous Sample; 0 on the first.
	CPUBusy float64
	// MemoryTotal is /proc/meminfo's MemTotal, in bytes.
	MemoryTotal int64
	// MemoryAvailable is /proc/meminfo's MemAvailable, in bytes.
	MemoryAvailable int64
	// DiskTotal is the size of the filesystem holding the Sampler's Dir, in
	// bytes; 0 when Dir is empty.
	DiskTotal int64
	// DiskFree is the space on that filesystem available to unprivileged
	// users, in bytes; 0 when Dir is empty.
	DiskFree int64
}

// Sampler reads Host. It keeps the previous /proc/stat reading to work out
// CPUBusy, so each user that wants "busy since I last looked" keeps its own
// Sampler. The zero value (with Dir set) is ready; it is safe for
// concurrent use.
type Sampler struct {
	// Dir is the directory whose filesystem the disk figures describe
	// (statfs); empty leaves them zero.
	Dir string

	mu   sync.Mutex
	prev cpuTimes // the last /proc/stat reading; zero before the first
	busy float64  // the last CPUBusy, kept when no time has passed
}

// Sample reads the host's load, CPU, memory and disk figures.
func (s *Sampler) Sample() (Host, error) {
	h := Host{CPUs: runtime.NumCPU()}
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return Host{}, fmt.Errorf("sample host: %w", err)
	}
	if h.Load1, err = parseLoadavg(raw); err != nil {
		return Host{}, fmt.Errorf("sample host: %w", err)
	}
	if raw, err = os.ReadFile("/proc/meminfo"); err != nil {
		return Host{}, fmt.Errorf("sample host: %w", err)
	}
	if h.MemoryTotal, h.MemoryAvailable, err = parseMeminfo(raw); err != nil {
		return Host{}, fmt.Errorf("sample host: %w", err)
	}
	if s.Dir != "" {
		var st unix.Statfs_t
		if err := unix.Statfs(s.Dir, &st); err != nil {
			return Host{}, fmt.Errorf("sample host: statfs %s: %w", s.Dir, err)
		}
		// Block counts are in fragments (f_frsize), as df counts them;
		// f_bsize is only the preferred I/O size, though usually the same.
		size := int64(st.Frsize)
		if size == 0 {
			size = int64(st.Bsize)
		}
		h.DiskTotal = int64(st.Blocks) * size
		h.DiskFree = int64(st.Bavail) * size
	}
	if raw, err = os.ReadFile("/proc/stat"); err != nil {
		return Host{}, fmt.Errorf("sample host: %w", err)
	}
	cur, err := parseStat(raw)
	if err != nil {
		return Host{}, fmt.Errorf("sample host: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Two samples within one clock tick keep the last ratio and the older
	// reading, so the next sample measures from that.
	if cur.total > s.prev.total {
		if s.prev.total > 0 {
			s.busy = busyRatio(s.prev, cur)
		}
		s.prev = cur
	}
	h.CPUBusy = s.busy
	return h, nil
}

// cpuTimes is the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	busy  uint64 // everything but idle and iowait
	total uint64
}

// busyRatio is the fraction of the time between two readings the CPUs were
// busy, clamped to 0..1 (iowait may run backwards on some kernels).
func busyRatio(prev, cur cpuTimes) float64 {
	if cur.total <= prev.total {
		return 0
	}
	r := (float64(cur.busy) - float64(prev.busy)) / float64(cur.total-prev.total)
	return min(max(r, 0), 1)
}

// parseStat reads the aggregate "cpu" line of /proc/stat: user, nice,
// system, idle, iowait, irq, softirq and steal ticks. Guest time is already
// counted in user and nice, so it is left out.
func parseStat(raw []byte) (cpuTimes, error) {
	for line := range bytes.Lines(raw) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) != "cpu" {
			continue
		}
		if len(f) < 9 {
			return cpuTimes{}, fmt.Errorf("parse /proc/stat: cpu line has %d fields, want at least 8 after \"cpu\": %w", len(f)-1, errdefs.ErrUnavailable)
		}
		var t cpuTimes
		for i, v := range f[1:9] {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("parse /proc/stat: cpu field %d %q is not a tick count: %w", i+1, v, errdefs.ErrUnavailable)
			}
			t.total += n
			if i != 3 && i != 4 { // idle, iowait
				t.busy += n
			}
		}
		return t, nil
	}
	return cpuTimes{}, fmt.Errorf("parse /proc/stat: no cpu line: %w", errdefs.ErrUnavailable)
}

// parseMeminfo reads MemTotal and MemAvailable from /proc/meminfo, in bytes.
func parseMeminfo(raw []byte) (total, available int64, err error) {
	found := map[string]int64{}
	for line := range bytes.Lines(raw) {
		key, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || (string(key) != "MemTotal" && string(key) != "MemAvailable") {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, 0, fmt.Errorf("parse /proc/meminfo: %s line %q, want \"<number> kB\": %w", key, bytes.TrimSpace(rest), errdefs.ErrUnavailable)
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 || n > (1<<63-1)/1024 {
			return 0, 0, fmt.Errorf("parse /proc/meminfo: %s %q is not a size in kB: %w", key, f[0], errdefs.ErrUnavailable)
		}
		found[string(key)] = n * 1024
	}
	for _, k := range []string{"MemTotal", "MemAvailable"} {
		if _, ok := found[k]; !ok {
			return 0, 0, fmt.Errorf("parse /proc/meminfo: no %s line (MemAvailable needs Linux 3.14): %w", k, errdefs.ErrUnavailable)
		}
	}
	return found["MemTotal"], found["MemAvailable"], nil
}

// parseLoadavg reads the one-minute load average, the first field of
// /proc/loadavg.
func parseLoadavg(raw []byte) (float64, error) {
	f := bytes.Fields(raw)
	if len(f) == 0 {
		return 0, fmt.Errorf("parse /proc/loadavg: empty: %w", errdefs.ErrUnavailable)
	}
	load, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil || load < 0 {
		return 0, fmt.Errorf("parse /proc/loadavg: %q is not a load average: %w", f[0], errdefs.ErrUnavailable)
	}
	return load, nil
}
