//go:build linux

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/plab/plab/sliver"
)

// CPUShare is what busy slivers actually got of the CPU.
type CPUShare struct {
	Name string          `json:"name"`
	Want string          `json:"class"`
	Got  sliver.MilliCPU `json:"got_millicpu"`
}

// spin is a CPU-bound loop per CPU inside a sliver, detached from the exec;
// pinned, every loop runs on CPU 0.
const (
	spin       = "for i in $(seq %d); do (while :; do :; done) >/dev/null 2>&1 & done"
	spinPinned = "for i in $(seq %d); do (taskset -c 0 sh -c 'while :; do :; done') >/dev/null 2>&1 & done"
)

// CPU keeps every sliver in specs busy with one loop per CPU (cpus of them,
// all on CPU 0 when pinned) for d and reports the CPU time each got per
// second of wall time: the fair-share and reservation mechanisms at work.
// The slivers are destroyed afterwards.
func CPU(ctx context.Context, b sliver.Backend, cpus int, pinned bool, d time.Duration, specs []sliver.Spec) ([]CPUShare, error) {
	defer func() {
		for _, s := range specs {
			_ = b.Destroy(context.WithoutCancel(ctx), s.Name)
		}
	}()
	for _, s := range specs {
		if _, err := b.Create(ctx, s); err != nil {
			return nil, err
		}
		if err := b.Start(ctx, s.Name); err != nil {
			return nil, err
		}
	}
	for _, s := range specs {
		script := spin
		if pinned {
			script = spinPinned
		}
		if code, err := b.Exec(ctx, s.Name, sliver.ExecSpec{Args: []string{"sh", "-c", fmt.Sprintf(script, cpus)}}); err != nil || code != 0 {
			return nil, fmt.Errorf("start load in %s: status %d, %v", s.Name, code, err)
		}
	}
	before := make([]time.Duration, len(specs))
	t0 := time.Now()
	for i, s := range specs {
		st, err := b.Stats(ctx, s.Name)
		if err != nil {
			return nil, err
		}
		before[i] = st.CPUTime
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	wall := time.Since(t0)
	var out []CPUShare
	for i, s := range specs {
		st, err := b.Stats(ctx, s.Name)
		if err != nil {
			return nil, err
		}
		class := fmt.Sprintf("share %d", s.Resources.CPUShares)
		if s.Resources.Reserved() {
			class = "reserve " + s.Resources.CPUReserve.String()
		}
		out = append(out, CPUShare{Name: s.Name, Want: class,
			Got: sliver.MilliCPU(int64(st.CPUTime-before[i]) * 1000 / int64(wall))})
	}
	return out, nil
}
