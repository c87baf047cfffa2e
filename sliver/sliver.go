// Package sliver defines what a sliver is and the contract every sliver
// backend fulfils: the VMM layer of a plab node.
//
// A sliver is one slice's isolated lightweight VM on one node: its own user,
// PID, mount, UTS, IPC, network and cgroup namespaces, a copy-on-write root
// filesystem over a shared read-only image, and a share of the node's CPU,
// memory, processes and disk. Backends (sliver/oci drives runc) implement
// Backend; sliver/slivertest is the conformance suite they all pass.
package sliver

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"syscall"
	"time"

	"github.com/plab/plab/errdefs"
)

// Backend creates, runs and destroys slivers on one node.
//
// Every method that names a sliver returns an error wrapping
// errdefs.ErrNotFound when it does not exist. Methods are safe for
// concurrent use; operations on one sliver are serialized.
type Backend interface {
	// Create prepares a sliver (root filesystem, identity, limits) without
	// starting it. Nothing is left behind when it fails.
	Create(ctx context.Context, spec Spec) (Info, error)
	// Start runs the sliver's init; it returns when the sliver accepts Exec.
	// Starting a running sliver does nothing.
	Start(ctx context.Context, name string) error
	// Stop kills every process of the sliver and keeps its files. Stopping a
	// stopped sliver does nothing.
	Stop(ctx context.Context, name string) error
	// Destroy stops the sliver and removes every mount, cgroup, file and
	// process it had. Destroying a sliver that is half-created finishes the
	// job.
	Destroy(ctx context.Context, name string) error
	// Update changes the limits of a sliver, live if it runs.
	Update(ctx context.Context, name string, r Resources) error
	// Exec runs a process inside a running sliver and returns its exit status.
	Exec(ctx context.Context, name string, e ExecSpec) (int, error)
	// State reports one sliver.
	State(ctx context.Context, name string) (Info, error)
	// Stats reports one sliver's resource usage.
	Stats(ctx context.Context, name string) (Stats, error)
	// List reports every sliver, sorted by name.
	List(ctx context.Context) ([]Info, error)
	// Recover reconciles what is on disk with what runs after a restart of
	// the process (or the machine): it re-adopts running slivers, marks
	// slivers whose processes are gone as stopped, and rolls back slivers
	// whose creation was interrupted. It returns the slivers that remain.
	Recover(ctx context.Context) ([]Info, error)
	// Close releases the backend; slivers keep running.
	Close() error
}

// Spec is what a sliver is created from.
type Spec struct {
	// Name is the slice's name, which is also the sliver's hostname.
	Name string
	// Image names the reference root filesystem.
	Image string
	// Resources are the sliver's limits; zero fields take defaults.
	Resources Resources
}

// Info describes a sliver.
type Info struct {
	Name      string    `json:"name"`
	Image     string    `json:"image"`
	State     State     `json:"state"`
	Resources Resources `json:"resources"`
	// UIDBase is the first host UID (and GID) of the sliver's ID range; the
	// range holds IDRangeSize IDs and inside the sliver starts at 0.
	UIDBase uint32 `json:"uid_base"`
	// Pid is the host PID of the sliver's init while it runs.
	Pid     int       `json:"pid,omitempty"`
	Created time.Time `json:"created"`
	Started time.Time `json:"started,omitzero"`
}

// IDRangeSize is how many user and group IDs each sliver owns.
const IDRangeSize = 65536

// Stats is a sliver's resource usage.
type Stats struct {
	// CPUTime is the CPU time used by the sliver's processes since it started.
	CPUTime time.Duration `json:"cpu_time_ns"`
	// MemoryBytes is the memory charged to the sliver (what its limit caps).
	MemoryBytes int64 `json:"memory_bytes"`
	// OOMKills counts processes the kernel killed for exceeding the memory
	// limit.
	OOMKills int64 `json:"oom_kills"`
	// Processes counts the sliver's live tasks, init included.
	Processes int64 `json:"processes"`
	// DiskBytes is the space the sliver's writable layer uses (data and
	// metadata), as charged against its disk limit.
	DiskBytes int64 `json:"disk_bytes"`
}

// ExecSpec describes a process to run inside a sliver.
type ExecSpec struct {
	// Args is the command and its arguments; Args[0] is looked up in PATH.
	Args []string
	// User is a user name or numeric UID inside the sliver, optionally with
	// ":group"; empty means root.
	User string
	// Env adds or overrides environment variables (KEY=value); PATH, HOME,
	// USER and (with a TTY) TERM get defaults.
	Env []string
	// Dir is the working directory inside the sliver; empty means the user's
	// home.
	Dir string
	// TTY gives the process a pseudo-terminal; Stdout then carries both
	// output streams and Stderr is unused.
	TTY bool
	// Size is the terminal's initial size (TTY only).
	Size WinSize
	// Resize delivers window size changes (TTY only).
	Resize <-chan WinSize
	// Signals delivers signals to forward to the process.
	Signals <-chan syscall.Signal

	// Program, when set, is the executable run instead of looking Args[0]
	// up in the sliver: a file open on the host (the node's own static
	// helpers), handed to the runtime as a descriptor, so nothing is copied
	// into the sliver and the sliver cannot replace it. Args[0] is then only
	// the process's name.
	Program *os.File

	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// WinSize is a terminal size in characters.
type WinSize struct {
	Cols, Rows uint16
}

// ErrCommandNotFound is wrapped by Exec when the command does not exist in
// the sliver (a shell would exit 127).
var ErrCommandNotFound = fmt.Errorf("command not found: %w", errdefs.ErrNotFound)

// maxNameLen keeps names usable as Linux user names and hostnames.
const maxNameLen = 32

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// ValidateName checks a sliver name: 1 to 32 characters, lowercase letters,
// digits, '_' and '-', starting with a letter (a slice name such as
// "princeton_codeen").
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("sliver name is empty; give a slice name such as site_experiment: %w", errdefs.ErrInvalid)
	}
	if len(name) > maxNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("sliver name %q is invalid; use at most %d lowercase letters, digits, '_' or '-', starting with a letter (e.g. site_experiment): %w", name, maxNameLen, errdefs.ErrInvalid)
	}
	return nil
}
