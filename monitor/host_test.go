//go:build linux

package monitor

import (
	"errors"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
)

func TestSampler(t *testing.T) {
	s := &Sampler{Dir: t.TempDir()}
	first, err := s.Sample()
	if err != nil {
		t.Fatalf("Sample() = %v", err)
	}
	if first.CPUBusy != 0 {
		t.Errorf("first Sample().CPUBusy = %v, want 0", first.CPUBusy)
	}
	// Burn a little CPU so the second sample has clock ticks to compare.
	var h Host
	for i := 0; i < 100 && h.CPUBusy == 0; i++ {
		for range 1_000_000 {
			runtime.Gosched()
		}
		if h, err = s.Sample(); err != nil {
			t.Fatalf("Sample() = %v", err)
		}
	}
	for _, c := range []struct {
		what string
		ok   bool
	}{
		{"Load1 >= 0", h.Load1 >= 0},
		{"CPUs == runtime.NumCPU()", h.CPUs == runtime.NumCPU()},
		{"0 < CPUBusy <= 1 after busy work", h.CPUBusy > 0 && h.CPUBusy <= 1},
		{"MemoryTotal > 0", h.MemoryTotal > 0},
		{"0 < MemoryAvailable <= MemoryTotal", h.MemoryAvailable > 0 && h.MemoryAvailable <= h.MemoryTotal},
		{"DiskTotal > 0", h.DiskTotal > 0},
		{"0 < DiskFree <= DiskTotal", h.DiskFree > 0 && h.DiskFree <= h.DiskTotal},
	} {
		if !c.ok {
			t.Errorf("Sample() = %+v: want %s", h, c.what)
		}
	}
}

func TestSamplerNoDir(t *testing.T) {
	h, err := (&Sampler{}).Sample()
	if err != nil {
		t.Fatalf("Sample() = %v", err)
	}
	if h.DiskTotal != 0 || h.DiskFree != 0 {
		t.Errorf("Sample() without Dir: disk %d/%d, want 0/0", h.DiskFree, h.DiskTotal)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := (&Sampler{Dir: missing}).Sample(); err == nil {
		t.Errorf("Sample() of missing Dir %s = nil error, want one", missing)
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     cpuTimes
		wantErr  bool
	}{
		{
			name: "kernel 6",
			in:   "cpu  100 1 20 1000 30 2 3 4 50 0\ncpu0 50 0 10 500 15 1 1 2 25 0\nintr 1 2 3\n",
			// busy: user+nice+system+irq+softirq+steal; guest is inside user.
			want: cpuTimes{busy: 100 + 1 + 20 + 2 + 3 + 4, total: 100 + 1 + 20 + 1000 + 30 + 2 + 3 + 4},
		},
		{
			name: "no guest columns",
			in:   "cpu 1 2 3 4 5 6 7 8\n",
			want: cpuTimes{busy: 1 + 2 + 3 + 6 + 7 + 8, total: 36},
		},
		{name: "empty", in: "", wantErr: true},
		{name: "only per-CPU lines", in: "cpu0 1 2 3 4 5 6 7 8\n", wantErr: true},
		{name: "too few fields", in: "cpu  1 2 3 4\n", wantErr: true},
		{name: "garbage field", in: "cpu  1 2 x 4 5 6 7 8\n", wantErr: true},
		{name: "negative field", in: "cpu  1 2 -3 4 5 6 7 8\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			checkParse(t, "parseStat", tc.in, got, tc.want, err, tc.wantErr)
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	type mem struct{ Total, Available int64 }
	for _, tc := range []struct {
		name, in string
		want     mem
		wantErr  bool
	}{
		{
			name: "real",
			in:   "MemTotal:       24684096 kB\nMemFree:        23621096 kB\nMemAvailable:   24256536 kB\nHugePages_Total:       0\n",
			want: mem{24684096 * 1024, 24256536 * 1024},
		},
		{name: "any order", in: "MemAvailable: 1 kB\nMemTotal: 2 kB\n", want: mem{2048, 1024}},
		{name: "empty", in: "", wantErr: true},
		{name: "no MemAvailable (before Linux 3.14)", in: "MemTotal: 2 kB\nMemFree: 1 kB\n", wantErr: true},
		{name: "no MemTotal", in: "MemAvailable: 1 kB\n", wantErr: true},
		{name: "no unit", in: "MemTotal: 2\nMemAvailable: 1 kB\n", wantErr: true},
		{name: "other unit", in: "MemTotal: 2 MB\nMemAvailable: 1 kB\n", wantErr: true},
		{name: "garbage number", in: "MemTotal: lots kB\nMemAvailable: 1 kB\n", wantErr: true},
		{name: "negative", in: "MemTotal: -2 kB\nMemAvailable: 1 kB\n", wantErr: true},
		{name: "overflows bytes", in: "MemTotal: 9223372036854775807 kB\nMemAvailable: 1 kB\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got mem
			var err error
			got.Total, got.Available, err = parseMeminfo([]byte(tc.in))
			checkParse(t, "parseMeminfo", tc.in, got, tc.want, err, tc.wantErr)
		})
	}
}

func TestParseLoadavg(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     float64
		wantErr  bool
	}{
		{name: "real", in: "0.21 1.81 2.28 1/80 11928\n", want: 0.21},
		{name: "idle", in: "0.00 0.00 0.00 1/80 1\n", want: 0},
		{name: "empty", in: "", wantErr: true},
		{name: "blank", in: " \n", wantErr: true},
		{name: "garbage", in: "high 1.81 2.28 1/80 11928\n", wantErr: true},
		{name: "negative", in: "-1 0 0 1/80 1\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLoadavg([]byte(tc.in))
			checkParse(t, "parseLoadavg", tc.in, got, tc.want, err, tc.wantErr)
		})
	}
}

// checkParse checks a parser's result: an error wrapping
// errdefs.ErrUnavailable when one is wanted, else want.
func checkParse[T any](t *testing.T, fn, in string, got, want T, err error, wantErr bool) {
	t.Helper()
	switch {
	case wantErr && err == nil:
		t.Errorf("%s(%q) = %+v, want an error", fn, in, got)
	case wantErr && !errors.Is(err, errdefs.ErrUnavailable):
		t.Errorf("%s(%q) = %v, want an error wrapping ErrUnavailable", fn, in, err)
	case wantErr:
		t.Logf("%s(%q) = %v", fn, in, err)
	case err != nil:
		t.Errorf("%s(%q) = %v, want no error", fn, in, err)
	default:
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(cpuTimes{})); diff != "" {
			t.Errorf("%s(%q) mismatch (-want +got):\n%s", fn, in, diff)
		}
	}
}

func TestBusyRatio(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prev, cur cpuTimes
		want      float64
	}{
		{"idle", cpuTimes{10, 100}, cpuTimes{10, 200}, 0},
		{"quarter", cpuTimes{10, 100}, cpuTimes{35, 200}, 0.25},
		{"all busy", cpuTimes{10, 100}, cpuTimes{110, 200}, 1},
		{"no time passed", cpuTimes{10, 100}, cpuTimes{10, 100}, 0},
		{"busy ran backwards", cpuTimes{50, 100}, cpuTimes{40, 200}, 0},
		{"busy beyond total (iowait ran backwards)", cpuTimes{10, 100}, cpuTimes{150, 200}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := busyRatio(tc.prev, tc.cur); got != tc.want {
				t.Errorf("busyRatio(%+v, %+v) = %v, want %v", tc.prev, tc.cur, got, tc.want)
			}
		})
	}
}
