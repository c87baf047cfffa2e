package sliver

import (
	"fmt"

	"github.com/plab/plab/errdefs"
)

// State is where a sliver is in its life.
//
//	           Create           Start
//	(none) ───────────► created ──────► running
//	                                    │    ▲
//	                     Stop, or init  │    │ Start
//	                     died (OOM, …)  ▼    │
//	                                    stopped
//
//	Destroy: any state ──► (none). A crash between Create's first write and
//	its last leaves "creating"; Recover rolls it back, Destroy finishes it.
type State string

// The sliver states.
const (
	Creating State = "creating"
	Created  State = "created"
	Running  State = "running"
	Stopped  State = "stopped"
)

// Transition checks that a sliver in state from may move to state to. Moving
// to the same state is allowed (Start of a running sliver does nothing).
func Transition(from, to State) error {
	if from == to {
		return nil
	}
	ok := false
	switch to {
	case Created:
		ok = from == Creating
	case Running:
		ok = from == Created || from == Stopped
	case Stopped:
		ok = from == Running || from == Created
	}
	if !ok {
		return fmt.Errorf("sliver is %s and cannot become %s: %w", from, to, errdefs.ErrConflict)
	}
	return nil
}
