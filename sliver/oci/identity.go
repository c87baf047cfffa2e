//go:build linux

package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/atomicfile"
)

// identity is what makes a node's kernel objects its own: the cgroup parent
// its slivers live under and the host ID ranges they own. It is fixed when
// the state directory is first used (node.json) so that every later command
// on that directory, cleanup included, acts on the same objects, and two
// nodes on one host cannot be confused.
type identity struct {
	CgroupParent string `json:"cgroup_parent"`
	UIDBase      uint32 `json:"uid_base"`
	MaxSlivers   int    `json:"max_slivers"`
}

func identityPath(stateDir string) string { return filepath.Join(stateDir, "node.json") }

// withIdentity fills the identity fields cfg leaves zero from the state
// directory's node.json, and refuses values that contradict it.
func (c Config) withIdentity() (Config, error) {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	b, err := os.ReadFile(identityPath(c.StateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	} else if err != nil {
		return c, fmt.Errorf("read node identity: %w", err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return c, fmt.Errorf("read node identity %s: %w: %w", identityPath(c.StateDir), err, errdefs.ErrInvalid)
	}
	conflict := func(what string, have, want any) error {
		return fmt.Errorf("the node in %s has %s %v, not %v; pass the same value (or none), or use another --state-dir: %w",
			c.StateDir, what, have, want, errdefs.ErrConflict)
	}
	switch {
	case c.CgroupParent != "" && c.CgroupParent != id.CgroupParent:
		return c, conflict("cgroup parent", id.CgroupParent, c.CgroupParent)
	case c.UIDBase != 0 && c.UIDBase != id.UIDBase:
		return c, conflict("uid base", id.UIDBase, c.UIDBase)
	case c.MaxSlivers != 0 && c.MaxSlivers != id.MaxSlivers:
		return c, conflict("max slivers", id.MaxSlivers, c.MaxSlivers)
	}
	c.CgroupParent, c.UIDBase, c.MaxSlivers = id.CgroupParent, id.UIDBase, id.MaxSlivers
	return c, nil
}

// saveIdentity records cfg's identity in its state directory if none is
// recorded yet.
func saveIdentity(cfg Config) error {
	path := identityPath(cfg.StateDir)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := json.MarshalIndent(identity{cfg.CgroupParent, cfg.UIDBase, cfg.MaxSlivers}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	return nil
}
