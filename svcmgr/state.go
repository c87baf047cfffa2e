package svcmgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/atomicfile"
)

// SliceState is what the user's side knows of a slice: per node, its
// ticket and its lease. It is saved after every change, so an interrupted
// operation can be resumed (plab slice sync).
type SliceState struct {
	Name      string        `json:"name"`
	Resources api.Resources `json:"resources"`
	// Lease is the lease length asked of each node (0: what it grants).
	Lease time.Duration         `json:"lease,omitempty"`
	Nodes map[string]*NodeState `json:"nodes"`

	mu   sync.Mutex
	path string
}

// NodeState is one node of a slice.
type NodeState struct {
	Ticket         string    `json:"ticket,omitempty"`
	TicketID       string    `json:"ticket_id,omitempty"`
	TicketNotAfter time.Time `json:"ticket_not_after,omitzero"`
	Lease          string    `json:"lease,omitempty"`
	LeaseNotAfter  time.Time `json:"lease_not_after,omitzero"`
	// Error is the last failure at this node, until it succeeds.
	Error string `json:"error,omitempty"`
}

// loadState reads the state of slice name in dir; a slice never seen has
// an empty state.
func loadState(dir, name string) (*SliceState, error) {
	st := &SliceState{Name: name, Nodes: map[string]*NodeState{}, path: filepath.Join(dir, slicesDir, name+".json")}
	data, err := os.ReadFile(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("%s: %v; remove it to forget the slice's tickets and leases: %w", st.path, err, errdefs.ErrInvalid)
	}
	if st.Nodes == nil {
		st.Nodes = map[string]*NodeState{}
	}
	return st, nil
}

// update changes the state under its lock and saves it.
func (st *SliceState) update(fn func()) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	fn()
	if err := os.MkdirAll(filepath.Dir(st.path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(st.path, append(data, '\n'), 0o600)
}

// node returns a copy of host's state.
func (st *SliceState) node(host string) NodeState {
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := st.Nodes[host]; n != nil {
		return *n
	}
	return NodeState{}
}

// Hosts lists the slice's nodes, sorted.
func (st *SliceState) Hosts() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for h := range st.Nodes {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// remove forgets the slice's state.
func (st *SliceState) remove() error {
	err := os.Remove(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
