package sliver

import (
	"errors"
	"testing"

	"github.com/plab/plab/errdefs"
)

func TestValidateName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"princeton_codeen", true}, {"a", true}, {"site-x_1", true}, {"a2345678901234567890123456789012", true},
		{"", false}, {"A", false}, {"1a", false}, {"_a", false}, {"a b", false}, {"a/b", false},
		{"..", false}, {"a\n", false}, {"a23456789012345678901234567890123", false}, {"é", false},
	} {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestTransition(t *testing.T) {
	states := []State{Creating, Created, Running, Stopped}
	allowed := map[[2]State]bool{
		{Creating, Created}: true, {Created, Running}: true, {Stopped, Running}: true,
		{Running, Stopped}: true, {Created, Stopped}: true,
	}
	for _, from := range states {
		for _, to := range states {
			err := Transition(from, to)
			want := from == to || allowed[[2]State{from, to}]
			if (err == nil) != want {
				t.Errorf("Transition(%s, %s) = %v, want allowed=%v", from, to, err, want)
			}
			if err != nil && !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("Transition(%s, %s) error %v is not ErrConflict", from, to, err)
			}
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512M", 512 << 20, true}, {"1.5GiB", 3 << 29, true}, {"65536", 65536, true}, {"2g", 2 << 30, true},
		{"10KiB", 10 << 10, true}, {" 1T ", 1 << 40, true}, {"7B", 7, true},
		{"", 0, false}, {"-1M", 0, false}, {"1X", 0, false}, {"NaN", 0, false}, {"1e30G", 0, false}, {"M", 0, false},
	} {
		got, err := ParseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseCPU(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want MilliCPU
		ok   bool
	}{
		{"1.5", 1500, true}, {"500m", 500, true}, {"0.25", 250, true}, {"2", 2000, true},
		{"", 0, false}, {"-1", 0, false}, {"abc", 0, false}, {"Inf", 0, false}, {"1e9", 0, false},
	} {
		got, err := ParseCPU(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"512M", "1.5GiB", "0", "-1", "1e400", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err == nil && n < 0 {
			t.Errorf("ParseBytes(%q) = %d, a negative size", s, n)
		}
		if _, err := ParseCPU(s); err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseCPU(%q) error %v is not ErrInvalid", s, err)
		}
	})
}

func TestResourcesValidate(t *testing.T) {
	const cpus = 2000
	ok := DefaultResources
	if err := ok.Validate(cpus); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	reserved := Resources{CPUReserve: 500}.WithDefaults()
	if reserved.CPUShares != 0 || !reserved.Reserved() {
		t.Errorf("WithDefaults of a reserved sliver = %+v, want no shares", reserved)
	}
	if err := reserved.Validate(cpus); err != nil {
		t.Errorf("reserved sliver does not validate: %v", err)
	}
	for _, r := range []Resources{
		{CPUShares: 101}, {CPUShares: 1, CPUReserve: 100}, {CPUReserve: 2001}, {CPULimit: 5},
		{CPUReserve: 800, CPULimit: 400}, {MemoryBytes: 1 << 20}, {Pids: 2}, {DiskBytes: 1024}, {CPULimit: -1},
	} {
		r = r.WithDefaults()
		if err := r.Validate(cpus); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", r, err)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 256 << 20: "256MiB", 1536 << 20: "1.5GiB", 1<<20 + 1: "1MiB"} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}
