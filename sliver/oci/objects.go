//go:build linux

package oci

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plab/plab/sliver/cgroups"
)

// HostObjects lists the kernel objects and runtime state the backend
// configured by cfg holds on the host, one string each, sorted: mounts
// under its state dir, loop devices backed by its files, cgroups under its
// parent, the processes in them and runtime containers. After Cleanup it is
// empty; tests compare it before and after to find leaks.
func HostObjects(cfg Config) ([]string, error) {
	cfg, err := cfg.withIdentity()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var objs []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], cfg.StateDir) {
			objs = append(objs, "mount "+f[4])
		}
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		if b, _ := os.ReadFile(l); strings.HasPrefix(string(b), cfg.StateDir) {
			objs = append(objs, "loop "+strings.TrimSpace(string(b)))
		}
	}
	cg, err := cgroups.Detect()
	if err != nil {
		return nil, err
	}
	for _, d := range cg.Dirs(cfg.CgroupParent) {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				objs = append(objs, "cgroup "+p)
			}
			return nil
		})
	}
	procs, _ := cg.Procs(cfg.CgroupParent)
	for _, p := range procs {
		objs = append(objs, fmt.Sprintf("process %d", p))
	}
	ents, _ := os.ReadDir(filepath.Join(cfg.RunDir, "runc"))
	for _, e := range ents {
		objs = append(objs, "runtime container "+e.Name())
	}
	slices.Sort(objs)
	return objs, nil
}
