//go:build linux

// Package cgroups reads and writes the cgroup files plab needs itself, on
// cgroup v2 hosts and on cgroup v1 (hybrid) hosts. The OCI runtime creates
// each sliver's own cgroup and writes its limits; this package owns what the
// runtime does not: the parent groups and their CPU weights, usage
// statistics, killing a sliver whose runtime state was lost, and removal.
//
// A Hierarchy is rooted at a mount point chosen by Detect, or at any
// directory for tests (NewV1, NewV2), so the exact writes of both versions
// are checked on any machine.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Version is the cgroup version of a hierarchy.
type Version int

// The cgroup versions.
const (
	V1 Version = 1
	V2 Version = 2
)

// Hierarchy gives access to the cgroup trees of a host.
type Hierarchy struct {
	version Version
	// v2 is the cgroup2 root (v2, or the unified tree of a v1 hybrid host).
	v2 string
	// v1 maps each v1 controller (and "name=systemd") to its mount point.
	v1 map[string]string
}

// NewV2 returns a cgroup v2 hierarchy rooted at root.
func NewV2(root string) *Hierarchy { return &Hierarchy{version: V2, v2: root} }

// NewV1 returns a cgroup v1 hierarchy with the given controller mount points
// and, when unified is not empty, the hybrid unified tree.
func NewV1(mounts map[string]string, unified string) *Hierarchy {
	return &Hierarchy{version: V1, v1: mounts, v2: unified}
}

// Detect finds the host's cgroup mounts in /proc/self/mountinfo.
func Detect() (*Hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	defer f.Close()
	h, err := parseMountinfo(bufio.NewScanner(f))
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	return h, nil
}

// parseMountinfo builds a Hierarchy from mountinfo lines. A host whose
// /sys/fs/cgroup is cgroup2 is v2; a host with v1 controller mounts is v1.
func parseMountinfo(sc *bufio.Scanner) (*Hierarchy, error) {
	v1 := map[string]string{}
	var v2, v2main string
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, pfields := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(pfields) < 3 {
			continue
		}
		mnt := unescapeMount(fields[4])
		switch pfields[0] {
		case "cgroup2":
			if v2 == "" || mnt == "/sys/fs/cgroup" {
				v2 = mnt
			}
			if mnt == "/sys/fs/cgroup" {
				v2main = mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(pfields[2], ",") {
				if knownV1[opt] || strings.HasPrefix(opt, "name=") {
					if _, dup := v1[opt]; !dup {
						v1[opt] = mnt
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case v2main != "":
		return NewV2(v2main), nil
	case len(v1) > 0:
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
			if v1[c] == "" {
				return nil, fmt.Errorf("cgroup v1 controller %q is not mounted; mount it (or boot with cgroup v2)", c)
			}
		}
		return NewV1(v1, v2), nil
	case v2 != "":
		return NewV2(v2), nil
	}
	return nil, errors.New("no cgroup filesystem is mounted; mount cgroup2 at /sys/fs/cgroup")
}

var knownV1 = map[string]bool{
	"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "devices": true,
	"freezer": true, "net_cls": true, "blkio": true, "perf_event": true,
	"net_prio": true, "hugetlb": true, "pids": true, "rdma": true, "misc": true,
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Version reports the hierarchy's cgroup version.
func (h *Hierarchy) Version() Version { return h.version }

// Dirs lists the directories of the cgroup rel (a slash-separated path such
// as "plab/shared/x") in every tree of the hierarchy, sorted.
func (h *Hierarchy) Dirs(rel string) []string {
	roots := map[string]bool{}
	if h.v2 != "" {
		roots[h.v2] = true
	}
	for _, m := range h.v1 {
		roots[m] = true
	}
	var dirs []string
	for r := range roots {
		dirs = append(dirs, filepath.Join(r, rel))
	}
	slices.Sort(dirs)
	return dirs
}

// path is the directory of rel for a v1 controller, or in the v2 tree.
func (h *Hierarchy) path(controller, rel string) string {
	if h.version == V2 {
		return filepath.Join(h.v2, rel)
	}
	return filepath.Join(h.v1[controller], rel)
}

// EnsureParent readies cgroup rel to hold child cgroups (it must then hold
// no processes itself): it creates rel and its ancestors where plab writes
// to them, and on v2 enables the controllers slivers need in every
// ancestor's cgroup.subtree_control, rel's own included.
func (h *Hierarchy) EnsureParent(rel string) error {
	if h.version == V1 {
		// Every tree, so the set of plab's cgroups does not change when the
		// runtime adds a sliver's; cpuset groups need CPUs and memory nodes
		// before anything can join them.
		for _, dir := range h.Dirs(rel) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create cgroup %s: %w", rel, err)
			}
		}
		if cs := h.v1["cpuset"]; cs != "" {
			dir := cs
			for _, part := range strings.Split(rel, "/") {
				parent := dir
				dir = filepath.Join(dir, part)
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(b)) == "" {
						if pb, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
							if err := write(filepath.Join(dir, f), strings.TrimSpace(string(pb))); err != nil {
								return fmt.Errorf("set %s of %s: %w", f, dir, err)
							}
						}
					}
				}
			}
		}
		return nil
	}
	if err := os.MkdirAll(h.path("", rel), 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", rel, err)
	}
	avail, err := os.ReadFile(filepath.Join(h.v2, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read cgroup controllers: %w", err)
	}
	var enable []string
	for _, c := range []string{"cpu", "memory", "pids", "io", "cpuset"} {
		if slices.Contains(strings.Fields(string(avail)), c) {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return nil
	}
	dir := h.v2
	for _, part := range append([]string{""}, strings.Split(rel, "/")...) {
		dir = filepath.Join(dir, part)
		if err := write(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(enable, " ")); err != nil {
			return fmt.Errorf("enable controllers in %s: %w", dir, err)
		}
	}
	return nil
}

// CPUWeight converts a v2 CPU weight (1 to 10000, default 100) to the v1
// cpu.shares value with the same proportions (default 1024).
func CPUWeight(weight int) (v1shares int) {
	return min(max(weight*1024/100, 2), 262144)
}

// SetCPUWeight sets the proportional CPU weight of cgroup rel: cpu.weight on
// v2, cpu.shares (CPUWeight) on v1.
func (h *Hierarchy) SetCPUWeight(rel string, weight int) error {
	weight = min(max(weight, 1), 10000)
	var err error
	if h.version == V2 {
		err = write(filepath.Join(h.path("", rel), "cpu.weight"), strconv.Itoa(weight))
	} else {
		err = write(filepath.Join(h.path("cpu", rel), "cpu.shares"), strconv.Itoa(CPUWeight(weight)))
	}
	if err != nil {
		return fmt.Errorf("set cpu weight of %s: %w", rel, err)
	}
	return nil
}

// Usage is what a cgroup has consumed.
type Usage struct {
	CPU         time.Duration
	MemoryBytes int64
	OOMKills    int64
	Pids        int64
}

// Usage reads the usage of cgroup rel.
func (h *Hierarchy) Usage(rel string) (Usage, error) {
	var u Usage
	var err error
	if h.version == V2 {
		dir := h.path("", rel)
		var usec int64
		usec, err = keyed(filepath.Join(dir, "cpu.stat"), "usage_usec")
		u.CPU = time.Duration(usec) * time.Microsecond
		if err == nil {
			u.MemoryBytes, err = single(filepath.Join(dir, "memory.current"))
		}
		if err == nil {
			u.OOMKills, err = keyed(filepath.Join(dir, "memory.events"), "oom_kill")
		}
		if err == nil {
			u.Pids, err = single(filepath.Join(dir, "pids.current"))
		}
	} else {
		var ns int64
		ns, err = single(filepath.Join(h.path("cpuacct", rel), "cpuacct.usage"))
		u.CPU = time.Duration(ns)
		if err == nil {
			u.MemoryBytes, err = single(filepath.Join(h.path("memory", rel), "memory.usage_in_bytes"))
		}
		if err == nil {
			u.OOMKills, err = keyed(filepath.Join(h.path("memory", rel), "memory.oom_control"), "oom_kill")
		}
		if err == nil {
			u.Pids, err = single(filepath.Join(h.path("pids", rel), "pids.current"))
		}
	}
	if err != nil {
		return Usage{}, fmt.Errorf("read usage of cgroup %s: %w", rel, err)
	}
	return u, nil
}

// Procs lists the host PIDs in cgroup rel and its descendants.
func (h *Hierarchy) Procs(rel string) ([]int, error) {
	root := h.path("pids", rel)
	var pids []int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", rel, err)
	}
	return pids, nil
}

// Kill kills every process in cgroup rel and its descendants and waits until
// none is left or the deadline passes. On v2 it writes cgroup.kill. On v1 it
// freezes the group so nothing forks while the signals go out, then thaws it
// so the frozen tasks can die.
func (h *Hierarchy) Kill(rel string, deadline time.Time) error {
	if h.version == V2 {
		if err := write(filepath.Join(h.path("", rel), "cgroup.kill"), "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kill cgroup %s: %w", rel, err)
		}
	}
	for {
		thaw := h.freeze(rel, deadline)
		pids, err := h.Procs(rel)
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		thaw()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: %d processes survive", rel, len(pids))
		}
		time.Sleep(5 * time.Millisecond) // killed tasks take a moment to leave
	}
}

// freeze freezes a v1 cgroup (when the freezer is mounted) and returns the
// function that thaws it.
func (h *Hierarchy) freeze(rel string, deadline time.Time) (thaw func()) {
	fz := h.v1["freezer"]
	if h.version == V2 || fz == "" {
		return func() {}
	}
	state := filepath.Join(fz, rel, "freezer.state")
	if write(state, "FROZEN") != nil {
		return func() {}
	}
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(state); err != nil || strings.TrimSpace(string(b)) == "FROZEN" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return func() { _ = write(state, "THAWED") }
}

// Remove removes cgroup rel and its descendants from every tree, deepest
// first. A cgroup that does not exist is not an error.
func (h *Hierarchy) Remove(rel string) error {
	var errs []error
	for _, dir := range h.Dirs(rel) {
		var sub []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.Reverse(sub)
		for _, d := range sub {
			if err := removeDir(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", rel, err)
	}
	return nil
}

// removeDir removes a cgroup directory. A cgroup whose last task just exited
// can stay busy for a moment, so EBUSY is retried briefly. Test trees (plain
// directories) hold the interface files, which are removed first.
func removeDir(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		err = unix.Rmdir(dir)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.ENOTEMPTY):
			if ents, rerr := os.ReadDir(dir); rerr == nil {
				for _, e := range ents {
					if !e.IsDir() {
						_ = os.Remove(filepath.Join(dir, e.Name()))
					}
				}
			}
		case !errors.Is(err, unix.EBUSY):
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

func write(path, value string) error {
	return os.WriteFile(path, []byte(value), 0o644)
}

func single(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// keyed reads the value of key in a flat-keyed file ("key value" lines). A
// missing key reads as 0 (older kernels omit counters they never bumped).
func keyed(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}
