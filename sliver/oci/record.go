//go:build linux

package oci

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/plab/plab/sliver"
)

// record is what a node remembers about a sliver, in
// <state>/slivers/<name>/sliver.json. It is replaced atomically, so after a
// crash it holds either the old or the new version, never a mix.
type record struct {
	Name      string           `json:"name"`
	Image     string           `json:"image"`
	State     sliver.State     `json:"state"`
	Resources sliver.Resources `json:"resources"`
	Slot      int              `json:"slot"`
	UIDBase   uint32           `json:"uid_base"`
	// Pid and PidStart identify the running init: a PID alone could be
	// reused by another process after the init died.
	Pid      int       `json:"pid,omitempty"`
	PidStart uint64    `json:"pid_start,omitempty"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
}

func readRecord(path string) (record, error) {
	var r record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("parse %s: %w", path, err)
	}
	return r, nil
}

// procStart returns the start time (in clock ticks since boot) of process
// pid, or 0 if it does not exist.
func procStart(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses; fields resume after
	// the last ')'. starttime is field 22, the 20th after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}
